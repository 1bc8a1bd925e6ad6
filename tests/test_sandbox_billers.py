"""The seeds' sample accounts, retrieved through the connector protocol, on SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from core.billers.base import BillerConnector, InvoiceFilter, PaidNotice
from core.billers.catalog import DIAC, IAM, MARSAMAROC, PORTNET, make_query
from core.billers.registry import BillerRegistry
from core.billers.sandbox.connector import SandboxBiller
from core.config import Settings
from core.errors import (
    InvalidAmount,
    InvalidPhoneNumber,
    InvalidSubscriptionCode,
    InvoiceNotFound,
    UnknownAccount,
    UnknownBiller,
    UnknownTerminal,
    WrongEmail,
    WrongPaymentCode,
)
from core.models import SandboxInvoice


async def test_seed_000_maroc_telecom_sample(seeded_db):
    iam = SandboxBiller(IAM, seeded_db)
    assert isinstance(iam, BillerConnector)
    account = await iam.find_account(make_query(IAM, "mobile", "06 23 36 34 44", "528605"))
    assert account.customer_number == "156677143760"
    page = await iam.list_invoices(account.account_ref, InvoiceFilter(status=None))
    assert page.total == 6  # the last 6 invoices
    latest = page.items[0]
    assert latest.number == "0000528605022017"
    assert latest.billing_period == "01/2017"
    assert latest.call_number == "212623363444"
    assert latest.customer_number == "156677143760"
    assert latest.amount_ht == Decimal("249.84")
    assert latest.amount_ttc == Decimal("299.81") and latest.amount_tva == Decimal("49.97")


async def test_maroc_telecom_accepts_customer_number_instead_of_phone(seeded_db):
    iam = SandboxBiller(IAM, seeded_db)
    account = await iam.find_account(make_query(IAM, "mobile", "156677143760", "528605"))
    assert account.identifier == "212623363444"


async def test_wrong_payment_code_points_to_the_invoice(seeded_db):
    iam = SandboxBiller(IAM, seeded_db)
    with pytest.raises(WrongPaymentCode) as caught:
        await iam.find_account(make_query(IAM, "mobile", "0623363444", "111111"))
    assert "Code de paiement" in caught.value.msgid


async def test_unknown_phone_is_unknown_account(seeded_db):
    iam = SandboxBiller(IAM, seeded_db)
    with pytest.raises(UnknownAccount):
        await iam.find_account(make_query(IAM, "mobile", "0661000000", "528605"))


def test_malformed_identifiers_are_refused_before_any_lookup():
    with pytest.raises(InvalidPhoneNumber):
        make_query(IAM, "mobile", "06123", "528605")
    with pytest.raises(InvalidPhoneNumber):  # a landline given for Mobile
        make_query(IAM, "mobile", "0522363444", "528605")
    with pytest.raises(InvalidSubscriptionCode):
        make_query(PORTNET, "portnet", "A7K2X")
    with pytest.raises(UnknownTerminal):
        make_query(MARSAMAROC, "marsamaroc", "000236", terminal="Atlantis")


async def test_portnet_sataa_invoice_field_for_field(seeded_db):
    portnet = SandboxBiller(PORTNET, seeded_db)
    account = await portnet.find_account(make_query(PORTNET, "portnet", "a7k2"))
    assert account.holder_name == "SATAA IMPORT EXPORT SARL AU"
    page = await portnet.list_invoices(account.account_ref, InvoiceFilter(number="00069321"))
    (invoice,) = page.items
    assert (invoice.amount_ht, invoice.amount_ttc) == (Decimal("3000.00"), Decimal("3600.00"))
    assert invoice.payment_means == ("amanpay", "cheque", "virement")
    assert invoice.issuer == "PORTNET" and invoice.invoice_type == "Principale"
    assert len(invoice.messages) == 4 and invoice.prestations[0]["reference"] == "Abonnement annuel IMP"
    by_issuer = await portnet.list_invoices(account.account_ref, InvoiceFilter(issuer="anp"))
    assert [i.number for i in by_issuer.items] == ["00071210"]


async def test_portnet_aska_payable_by_cmi(seeded_db):
    portnet = SandboxBiller(PORTNET, seeded_db)
    account = await portnet.find_account(make_query(PORTNET, "portnet", "K9AS"))
    (invoice,) = (await portnet.list_invoices(account.account_ref, InvoiceFilter())).items
    assert invoice.number == "00028653" and "cmi" in invoice.payment_means


async def test_marsa_maroc_tmta_has_23_unpaid_in_pages(seeded_db):
    marsa = SandboxBiller(MARSAMAROC, seeded_db)
    account = await marsa.find_account(make_query(MARSAMAROC, "marsamaroc", "000236", terminal="casablanca"))
    assert account.holder_name == "TMTA TMTA"
    first = await marsa.list_invoices(account.account_ref, InvoiceFilter())
    assert first.total == 23 and first.pages == 3 and len(first.items) == 10
    numbers = set()
    for page in (1, 2, 3):
        numbers |= {i.number for i in (await marsa.list_invoices(account.account_ref, InvoiceFilter(page=page))).items}
    assert len(numbers) == 23
    assert {"02296945", "02296947", "02329290", "02329291", "02345680", "02627517", "03080456", "03080965"} <= numbers


async def test_diac_needs_the_registered_email_and_keeps_two_years(seeded_db):
    diac = SandboxBiller(DIAC, seeded_db)
    with pytest.raises(WrongEmail):
        await diac.find_account(make_query(DIAC, "efacture", "40012345", "someone@else.ma"))
    account = await diac.find_account(make_query(DIAC, "efacture", "40012345", "Contact@Atlas-Logistique.ma"))
    page = await diac.list_invoices(account.account_ref, InvoiceFilter(status=None, page_size=50))
    assert page.total == 24


async def test_paid_notice_marks_paid_once_and_refuses_wrong_amount(seeded_db):
    portnet = SandboxBiller(PORTNET, seeded_db)
    ref = "portnet-K9AS"
    now = datetime(2026, 11, 24, 10, 0, tzinfo=timezone.utc)
    with pytest.raises(InvalidAmount):
        await portnet.notify_paid(ref, PaidNotice(("00028653",), "T-1", Decimal("3599.99"), now, "cmi"))
    assert (await portnet.get_invoice(ref, "00028653")).status == "unpaid"
    notice = PaidNotice(("00028653",), "T-1", Decimal("3600.00"), now, "cmi")
    await portnet.notify_paid(ref, notice)
    await portnet.notify_paid(ref, notice)  # replay: no second effect
    invoice = await portnet.get_invoice(ref, "00028653")
    assert invoice.status == "paid" and invoice.transaction_id == "T-1"
    assert len(invoice.messages) == 1
    with pytest.raises(InvoiceNotFound):
        await portnet.notify_paid(ref, PaidNotice(("99999999",), "T-2", Decimal("1.00"), now, "cmi"))


async def test_registry_refuses_unknown_biller(db):
    registry = BillerRegistry.from_settings(Settings(sandbox=True), db)
    assert {i.code for i in registry.infos()} == {"iam", "portnet", "marsamaroc", "diac"}
    with pytest.raises(UnknownBiller):
        registry.get("lydec")


async def test_generated_accounts_are_deterministic_and_reachable(db):
    from core.billers.sandbox.generator import generated_account
    from core.billers.sandbox.store import seed_generated
    from datetime import date

    anchor = date(2026, 11, 1)
    assert generated_account(7, 2017, anchor) == generated_account(7, 2017, anchor)
    assert await seed_generated(db, 60, anchor=anchor) == 60
    assert await seed_generated(db, 60, anchor=anchor) == 0  # idempotent
    async with db.session() as session:
        assert await session.scalar(select(func.count()).select_from(SandboxInvoice)) > 60
