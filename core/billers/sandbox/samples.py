"""The fixed sample accounts and invoices of the seeds, field for field.

Seed 000: Maroc Telecom N° client 156677143760, numéro d'appel 212623363444, échéance 01/2017,
249,84 HT, N° facture 0000528605022017, six months of bills (08/2016-01/2017).
Seed 002: PortNet invoice 00069321 (SATAA), ASKA 00028653, Marsa Maroc TMTA (23 unpaid).
Seed 004: DIAC keeps originals 2 years.
"""
from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal as D

SATAA_MESSAGES = [
    {"n": 1, "function": "Invoice (facture) (INV)", "name": "INV_115", "state": "Non Réglée",
     "date": "2017-11-01T11:49:00", "user": "", "receiver": "PortNet", "note": "Création de la Facture"},
    {"n": 2, "function": "Dans le processus de paiement (AMA)", "name": "", "state": "Non Réglée",
     "date": "2017-12-22T10:00:00", "user": "yary", "receiver": "Amanpay", "note": "Reglement des factures: 00069321"},
    {"n": 3, "function": "Dans le processus de paiement (AMA)", "name": "", "state": "Non Réglée",
     "date": "2017-12-22T10:04:00", "user": "yary", "receiver": "Amanpay", "note": "Reglement des factures: 00069321"},
    {"n": 4, "function": "Dans le processus de paiement (AMA)", "name": "", "state": "Non Réglée",
     "date": "2017-12-22T11:53:00", "user": "yary", "receiver": "Amanpay", "note": "Reglement des factures: 00069321"},
]


def _iam_invoices(customer_number: str, call_number: str, code: str, months: list[tuple[str, D, str]]):
    """Maroc Telecom's last invoices: N° facture = 0000 + code + 05 + MMYYYY of the issue month."""
    rows = []
    for period, ht, status in months:
        month, year = (int(p) for p in period.split("/"))
        issue_month, issue_year = (1, year + 1) if month == 12 else (month + 1, year)
        number = f"0000{code}05{issue_month:02d}{issue_year}"
        rows.append({
            "number": number,
            "issuer": "MAROC TELECOM",
            "call_number": call_number,
            "billing_period": period,
            "invoice_date": date(issue_year, issue_month, 5),
            "due_date": date(issue_year, issue_month, 27),
            "amount_ht": ht,
            "status": status,
            "payment_means": ["cmi"],
            "prestations": [],
            "description": None,
            "customer_number": customer_number,
        })
    return rows


# Seed 000: the six months of the bar chart; 01/2017 is the invoice row the guide prints.
IAM_MOBILE_MONTHS = [
    ("08/2016", D("160.00"), "paid"),
    ("09/2016", D("250.00"), "paid"),
    ("10/2016", D("190.00"), "paid"),
    ("11/2016", D("230.00"), "paid"),
    ("12/2016", D("220.00"), "unpaid"),
    ("01/2017", D("249.84"), "unpaid"),
]

MARSA_SEED_ROWS = [  # the 8 rows seed 002 shows, HT and TTC as printed
    ("02296945", date(1997, 2, 3), date(1997, 3, 5), D("2202.00"), D("2642.40")),
    ("02296947", date(1997, 2, 3), date(1997, 3, 5), D("2202.00"), D("2642.40")),
    ("02329290", date(1997, 3, 12), date(1997, 4, 11), D("10765.00"), D("12918.00")),
    ("02329291", date(1997, 3, 12), date(1997, 4, 11), D("46.35"), D("55.62")),
    ("02345680", date(1997, 3, 31), date(1997, 4, 30), D("291.90"), D("350.28")),
    ("02627517", date(1998, 3, 12), date(1998, 4, 11), D("216.60"), D("259.92")),
    ("03080456", date(1999, 8, 2), date(1999, 9, 1), D("862.53"), D("1035.04")),
    ("03080965", date(1999, 8, 3), date(1999, 9, 2), D("1282.22"), D("1538.66")),
]

# 15 more unpaid TMTA invoices so the account has the 23 the portal counts.
MARSA_MORE_HT = [D("512.40"), D("1830.00"), D("96.75"), D("2405.10"), D("318.00"), D("7420.55"),
                 D("150.00"), D("989.99"), D("4410.20"), D("63.30"), D("1207.80"), D("2202.00"),
                 D("745.45"), D("3333.33"), D("88.88")]


def _marsa_invoices():
    rows = []
    for number, issued, due, ht, ttc in MARSA_SEED_ROWS:
        rows.append({"number": number, "invoice_date": issued, "due_date": due, "amount_ht": ht, "amount_ttc": ttc})
    for index, ht in enumerate(MARSA_MORE_HT):
        year, month = 1999 + (index + 8) // 12, (index + 8) % 12 + 1
        issued = date(year, month, 10)
        due = date(year + (month == 12), month % 12 + 1, 9)
        rows.append({"number": f"0{3100000 + index * 7919:07d}", "invoice_date": issued, "due_date": due, "amount_ht": ht})
    for row in rows:
        row.update({
            "issuer": "MARSAMAROC CASA",
            "status": "unpaid",
            "payment_means": ["cmi"],
            "prestations": [{"name": "Manutention conteneurs", "operation_type": "Import", "reference": f"ESC-{row['number']}"}],
            "description": "Prestations portuaires",
        })
    return rows


def _portnet_row(number, issuer, issued, due, ht, ttc, means, prestation, description, messages=None, status="unpaid"):
    return {
        "number": number, "issuer": issuer, "invoice_date": issued, "due_date": due, "amount_ht": ht,
        "amount_ttc": ttc, "status": status, "payment_means": means, "prestations": [prestation],
        "description": description, "messages": messages or [],
    }


SAMPLE_ACCOUNTS = [
    {
        "ref": "iam-mobile-156677143760", "biller": "iam", "service": "mobile",
        "identifier": "212623363444", "secret": "528605", "holder_name": "Amina El Idrissi",
        "customer_number": "156677143760",
        "invoices": _iam_invoices("156677143760", "212623363444", "5286", IAM_MOBILE_MONTHS),
    },
    {
        "ref": "iam-fixe-156677143761", "biller": "iam", "service": "fixe",
        "identifier": "212522363444", "secret": "417302", "holder_name": "Amina El Idrissi",
        "customer_number": "156677143761",
        "invoices": _iam_invoices("156677143761", "212522363444", "4173", [
            ("10/2016", D("99.00"), "paid"), ("11/2016", D("99.00"), "paid"),
            ("12/2016", D("112.50"), "paid"), ("01/2017", D("99.00"), "unpaid"),
        ]),
    },
    {
        "ref": "iam-internet-156677143762", "biller": "iam", "service": "internet",
        "identifier": "156677143762", "secret": "903118", "holder_name": "Youssef Amrani",
        "customer_number": "156677143762",
        "invoices": _iam_invoices("156677143762", "212522778899", "9031", [
            ("12/2016", D("291.67"), "paid"), ("01/2017", D("291.67"), "unpaid"),
        ]),
    },
    {
        "ref": "portnet-A7K2", "biller": "portnet", "service": "portnet", "identifier": "A7K2",
        "secret": None, "holder_name": "SATAA IMPORT EXPORT SARL AU", "customs_code": "290240",
        "invoices": [
            _portnet_row("00069321", "PORTNET", date(2017, 10, 31), date(2017, 12, 30), D("3000.00"), D("3600.00"),
                         ["amanpay", "cheque", "virement"],
                         {"name": "Abonnement Portnet", "operation_type": "Abonnement PORTNET",
                          "reference": "Abonnement annuel IMP", "end_date": "2017-10-30T00:00:00"},
                         "[REN]Abonnement annuel IMP", SATAA_MESSAGES),
            _portnet_row("00071210", "ANP", date(2017, 11, 15), date(2018, 1, 14), D("1250.00"), D("1500.00"),
                         ["cmi", "amanpay"],
                         {"name": "Redevance marchandises", "operation_type": "Import", "reference": "DUM 2017-4471"},
                         "Redevance sur marchandises"),
            _portnet_row("00071388", "BUREAU VERITAS", date(2017, 11, 20), date(2018, 1, 19), D("800.00"), D("960.00"),
                         ["cmi", "amanpay", "virement"],
                         {"name": "Contrôle de conformité", "operation_type": "Import", "reference": "BV-CC-88412"},
                         "Contrôle technique à l'import"),
            _portnet_row("00071402", "TUV RHEINLAND", date(2017, 11, 21), date(2018, 1, 20), D("640.00"), D("768.00"),
                         ["cmi"],
                         {"name": "Certificat d'inspection", "operation_type": "Export", "reference": "TUV-7781"},
                         "Inspection avant expédition"),
        ],
    },
    {
        "ref": "portnet-K9AS", "biller": "portnet", "service": "portnet", "identifier": "K9AS",
        "secret": None, "holder_name": "ASKA IMPRT EXPORT", "customs_code": "93583",
        "invoices": [
            _portnet_row("00028653", "PORTNET", date(2016, 3, 26), date(2016, 5, 25), D("3000.00"), D("3600.00"),
                         ["cmi", "cheque", "amanpay"],
                         {"name": "Abonnement Portnet", "operation_type": "Abonnement PORTNET",
                          "reference": "Abonnement annuel IMP"},
                         "[REN]Abonnement annuel IMP"),
        ],
    },
    {
        "ref": "marsa-casablanca-000236", "biller": "marsamaroc", "service": "marsamaroc",
        "identifier": "000236", "terminal": "Casablanca", "secret": None, "holder_name": "TMTA TMTA",
        "customs_code": "1247", "invoices": _marsa_invoices(),
    },
    {
        "ref": "diac-40012345", "biller": "diac", "service": "efacture", "identifier": "40012345",
        "secret": "contact@atlas-logistique.ma", "holder_name": "ATLAS LOGISTIQUE SARL",
        "customer_number": "40012345", "invoices": [],  # filled relative to today: originals kept 2 years
    },
]

MARSA_TERMINALS = ("Casablanca", "Mohammedia", "Jorf Lasfar", "Safi", "Agadir", "Nador", "Laâyoune", "Dakhla")
PORTNET_ISSUERS = ("PORTNET", "ANP", "MARSAMAROC", "BUREAU VERITAS", "TUV RHEINLAND")


def diac_invoices(today: date) -> list[dict]:
    """Monthly leasing invoices over the last 24 months (DIAC keeps them 2 years, seed 004)."""
    rows = []
    for back in range(24, 0, -1):
        year, month = today.year, today.month - back
        while month <= 0:
            month += 12
            year -= 1
        rows.append({
            "number": f"DIAC{year}{month:02d}0412", "issuer": "DIAC", "billing_period": f"{month:02d}/{year}",
            "invoice_date": date(year, month, 1), "due_date": date(year, month, 10),
            "amount_ht": D("2450.00"), "status": "paid" if back > 1 else "unpaid",
            "payment_means": ["cmi", "virement"],
            "prestations": [{"name": "Location longue durée", "operation_type": "Loyer", "reference": "LLD-77120"}],
            "description": "Loyer mensuel véhicule", "customer_number": "40012345",
        })
    return rows


def try_these() -> list[dict[str, str]]:
    """Identifiers and secrets a newcomer can type in the demo (shown by the chat on sandbox data)."""
    return [
        {"biller": "iam", "service": "mobile", "identifier": "0623363444", "secret": "528605"},
        {"biller": "iam", "service": "fixe", "identifier": "0522363444", "secret": "417302"},
        {"biller": "iam", "service": "internet", "identifier": "156677143762", "secret": "903118"},
        {"biller": "portnet", "service": "portnet", "identifier": "A7K2", "secret": ""},
        {"biller": "marsamaroc", "service": "marsamaroc", "identifier": "Casablanca / 000236", "secret": ""},
        {"biller": "diac", "service": "efacture", "identifier": "40012345", "secret": "contact@atlas-logistique.ma"},
    ]


SANDBOX_PAID_AT = datetime(2017, 1, 1, tzinfo=timezone.utc)
