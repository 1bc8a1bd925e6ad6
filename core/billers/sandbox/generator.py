"""Deterministic generated sandbox accounts: account i of seed s is always the same account.

Used to test at scale (`fatoura sandbox seed --accounts 100000`). Dates are laid out around an
anchor month so that due dates fall in the future as well as in the past.
"""
from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from core.billers.sandbox.samples import MARSA_TERMINALS, PORTNET_ISSUERS, SAMPLE_ACCOUNTS

CODE_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
CODE_SPACE = 36**4
_CODE_STEP = 1_000_003  # prime, coprime with 36**4: i -> (i * step) mod 36**4 is a bijection
_TAKEN_CODES = {a["identifier"] for a in SAMPLE_ACCOUNTS if a["biller"] == "portnet"}
KINDS = ("iam-mobile", "iam-fixe", "iam-internet", "portnet", "marsamaroc", "diac")
FIRST_NAMES = ("Amina", "Youssef", "Fatima", "Omar", "Khadija", "Mehdi", "Salma", "Hamza", "Nadia", "Karim")
LAST_NAMES = ("Alaoui", "Bennani", "Tazi", "El Fassi", "Berrada", "Chraibi", "Idrissi", "Ouazzani", "Lahlou")
COMPANY_WORDS = ("ATLAS", "SAHARA", "RIF", "OCEAN", "MEDINA", "ARGANE", "SOUSS", "TANGER", "ZAGORA")


def subscription_code(index: int) -> str:
    value = (index * _CODE_STEP + 7) % CODE_SPACE
    chars = []
    for _ in range(4):
        value, digit = divmod(value, 36)
        chars.append(CODE_ALPHABET[digit])
    code = "".join(reversed(chars))
    return code if code not in _TAKEN_CODES else subscription_code(index + CODE_SPACE // 2)


class _SplitMix:
    """A tiny deterministic generator (splitmix64): seeding it costs nothing, unlike random.Random."""

    __slots__ = ("state",)
    MASK = (1 << 64) - 1

    def __init__(self, seed: int) -> None:
        self.state = seed & self.MASK

    def next(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & self.MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & self.MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & self.MASK
        return z ^ (z >> 31)

    def randint(self, low: int, high: int) -> int:
        return low + self.next() % (high - low + 1)

    def choice(self, items):  # noqa: ANN001, ANN201 - any sequence
        return items[self.next() % len(items)]


def _months_back(anchor: date, back: int) -> tuple[int, int]:
    month = anchor.month - back
    year = anchor.year
    while month <= 0:
        month += 12
        year -= 1
    return year, month


def _money(rng: _SplitMix, low: int, high: int) -> Decimal:
    return Decimal(rng.randint(low * 100, high * 100)) / 100


def generated_account(index: int, seed: int, anchor: date) -> dict:
    """The index-th generated account (1-based) with its invoices, as plain data."""
    rng = _SplitMix(seed * 100_000_007 + index)
    kind = KINDS[index % len(KINDS)]
    person = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
    company = f"{rng.choice(COMPANY_WORDS)} {rng.choice(COMPANY_WORDS)} SARL"
    account: dict = {"ref": f"gen-{seed}-{index}", "terminal": "", "customer_number": None, "customs_code": None}
    invoices: list[dict] = []
    if kind.startswith("iam"):
        service = kind.split("-")[1]
        customer_number = f"{300000000000 + index:012d}"
        phone = f"2126{10000000 + index:08d}" if service == "mobile" else f"2125{22000000 + index:08d}"
        account.update(biller="iam", service=service, holder_name=person, customer_number=customer_number,
                       identifier=customer_number if service == "internet" else phone,
                       secret=f"{rng.randint(0, 999999):06d}")
        unpaid = rng.randint(0, 2)
        for back in range(6, 0, -1):
            year, month = _months_back(anchor, back)
            issue_year, issue_month = _months_back(date(year, month, 1), -1)
            invoices.append({
                "number": f"0000{index % 10000:04d}05{issue_month:02d}{issue_year}{index // 10000:02d}",
                "issuer": "MAROC TELECOM", "call_number": phone, "billing_period": f"{month:02d}/{year}",
                "customer_number": customer_number, "invoice_date": date(issue_year, issue_month, 5),
                "due_date": date(issue_year, issue_month, 27), "amount_ht": _money(rng, 49, 600),
                "status": "unpaid" if back <= unpaid else "paid", "payment_means": ["cmi"],
            })
    elif kind == "portnet":
        account.update(biller="portnet", service="portnet", identifier=subscription_code(index), secret=None,
                       holder_name=company, customs_code=str(rng.randint(1000, 999999)))
        for n in range(rng.randint(1, 4)):
            issued = anchor - timedelta(days=rng.randint(5, 120))
            invoices.append({
                "number": f"{10_000_000 + index * 8 + n:08d}"[-8:] if index < 10_000_000 else f"G{index}{n}",
                "issuer": rng.choice(PORTNET_ISSUERS), "invoice_date": issued, "due_date": issued + timedelta(days=60),
                "amount_ht": _money(rng, 100, 9000), "status": "unpaid",
                "payment_means": rng.choice([["cmi"], ["cmi", "amanpay"], ["amanpay", "cheque", "virement"]]),
                "prestations": [{"name": "Abonnement Portnet", "operation_type": "Abonnement PORTNET",
                                 "reference": f"REF-{index}-{n}"}],
            })
    elif kind == "marsamaroc":
        account.update(biller="marsamaroc", service="marsamaroc", identifier=f"{index:06d}"[-6:] if index < 10**6 else str(index),
                       terminal=MARSA_TERMINALS[index % len(MARSA_TERMINALS)], secret=None,
                       holder_name=company, customs_code=str(rng.randint(1000, 99999)))
        issuer = "MARSAMAROC " + account["terminal"].upper()[:4]
        for n in range(rng.randint(1, 5)):
            issued = anchor - timedelta(days=rng.randint(5, 90))
            invoices.append({
                "number": f"M{index:07d}{n}", "issuer": issuer, "invoice_date": issued,
                "due_date": issued + timedelta(days=30), "amount_ht": _money(rng, 40, 12000),
                "status": "unpaid", "payment_means": ["cmi"],
            })
    else:
        customer_number = f"{50000000 + index:08d}"
        account.update(biller="diac", service="efacture", identifier=customer_number, customer_number=customer_number,
                       secret=f"client{index}@example.ma", holder_name=person)
        for back in range(3, 0, -1):
            year, month = _months_back(anchor, back - 1)
            invoices.append({
                "number": f"DIAC{year}{month:02d}{index:07d}", "issuer": "DIAC", "billing_period": f"{month:02d}/{year}",
                "customer_number": customer_number, "invoice_date": date(year, month, 1),
                "due_date": date(year, month, 1) + timedelta(days=rng.choice([9, 20, 30])),
                "amount_ht": _money(rng, 900, 4000), "status": "unpaid" if back == 1 else "paid",
                "payment_means": ["cmi", "virement"],
            })
    account["invoices"] = invoices
    return account
