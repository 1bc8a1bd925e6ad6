"""The domain's ground floor: money and TVA as the seeds print them, identifiers as customers type
them, Babel formatting per locale, settings that never show a secret — and bad input refused with a
typed, translatable error."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.billers.base import InvoiceFilter
from core.billers.catalog import IAM, MARSAMAROC, PORTNET, make_query
from core.billers.registry import BillerRegistry
from core.config import Settings
from core.errors import (
    FatouraError,
    InvalidAmount,
    InvalidCustomerNumber,
    InvalidEmail,
    InvalidInput,
    InvalidPaymentCode,
    InvalidPhoneNumber,
    InvalidSubscriptionCode,
    UnknownBiller,
    UnknownService,
)
from core.i18n import translator
from core.identifiers import (
    contains_card_number,
    display_phone,
    normalize_customer_number,
    normalize_email,
    normalize_payment_code,
    normalize_phone,
    normalize_subscription_code,
)
from core.money import Amounts, Totals, parse_amount, tva_of

D = Decimal


def test_seed_002_marsa_maroc_totals_are_exact():
    """The portal printed 880.80000000000002; two invoices of 2202.00 HT are 880.80 TVA exactly."""
    invoices = [Amounts.from_ht(D("2202.00")), Amounts.from_ht(D("2202.00"))]
    totals = Totals.of(invoices)
    assert (totals.ht, totals.tva, totals.ttc) == (D("4404.00"), D("880.80"), D("5284.80"))
    assert str(totals.tva) == "880.80"


def test_tva_is_rounded_to_the_centime_half_up():
    assert tva_of(D("249.84")) == D("49.97")  # 49.968
    assert tva_of(D("0.025")) == D("0.01")  # 0.005 rounds up, not to even
    assert Amounts.from_ht_ttc("3000.00", "3600.00").tva == D("600.00")


@given(st.lists(st.decimals(min_value=0, max_value=10**6, places=2, allow_nan=False, allow_infinity=False),
                min_size=1, max_size=30))
def test_totals_of_any_selection_equal_the_sum_of_its_invoices(hts):
    invoices = [Amounts.from_ht(ht) for ht in hts]
    totals = Totals.of(invoices)
    assert totals.ttc == sum((i.ttc for i in invoices), D("0")) == totals.ht + totals.tva
    assert totals.ttc.as_tuple().exponent == -2


@pytest.mark.parametrize("bad", [-1, "-5", "abc", "", "1e3x", "12.345", "NaN", "Infinity", 1.5, True, None, "1,2,3"])
def test_bad_amounts_are_refused_with_a_typed_error(bad):
    with pytest.raises(InvalidAmount) as caught:
        parse_amount(bad)
    assert isinstance(caught.value, InvalidInput) and caught.value.msgid


def test_amounts_typed_by_customers():
    assert parse_amount("249,84") == D("249.84")
    assert parse_amount(" 3600 ") == D("3600.00")
    with pytest.raises(InvalidAmount):
        parse_amount("0")


@pytest.mark.parametrize("typed", ["0612345678", "+212 6 12 34 56 78", "212612345678", "00212612345678",
                                   "06-12-34-56-78", "(0)6 12.34.56.78"])
def test_one_phone_number_however_typed(typed):
    assert normalize_phone(typed) == "212612345678"
    assert display_phone(normalize_phone(typed)) == "06 12 34 56 78"


@pytest.mark.parametrize("bad", ["0612", "06123456789", "+33612345678", "abcdefghij", "", "0000000000", None, 612345678])
def test_malformed_phone_numbers_are_refused(bad):
    with pytest.raises(InvalidPhoneNumber):
        normalize_phone(bad)


def test_line_type_is_checked_for_mobile_and_landline():
    assert normalize_phone("0522363444", kind="fixe") == "212522363444"
    with pytest.raises(InvalidPhoneNumber):
        normalize_phone("0522363444", kind="mobile")
    with pytest.raises(InvalidPhoneNumber):
        normalize_phone("0623363444", kind="fixe")


def test_identifiers_and_secrets():
    assert normalize_subscription_code(" a7k2 ") == "A7K2"
    assert normalize_customer_number("1 5667 7143 760") == "156677143760"
    assert normalize_payment_code("528 605") == "528605"
    assert normalize_email("Contact@Atlas-Logistique.MA") == "Contact@atlas-logistique.ma"
    for function, bad, error in [
        (normalize_subscription_code, "A7K2X", InvalidSubscriptionCode),  # 5 characters
        (normalize_subscription_code, "A7K", InvalidSubscriptionCode),
        (normalize_subscription_code, "A7-2", InvalidSubscriptionCode),
        (normalize_customer_number, "15667A", InvalidCustomerNumber),
        (normalize_payment_code, "12ab", InvalidPaymentCode),
        (normalize_email, "not-an-email", InvalidEmail),
    ]:
        with pytest.raises(error):
            function(bad)


def test_card_numbers_are_recognised_in_free_text():
    assert contains_card_number("ma carte 4111 1111 1111 1111 merci")
    assert contains_card_number("4000-0000-0000-0002")
    assert not contains_card_number("mon numéro 0612345678, code 528605")
    assert not contains_card_number("facture 0000528605022017")  # not Luhn-valid


def test_unknown_biller_and_service_are_typed_errors(tmp_path):
    from core.db import Database

    registry = BillerRegistry.from_settings(Settings(sandbox=True), Database(f"sqlite+aiosqlite:///{tmp_path}/x.db"))
    with pytest.raises(UnknownBiller):
        registry.get("lydec")
    with pytest.raises(UnknownService):
        make_query(IAM, "satellite", "0612345678", "528605")
    with pytest.raises(InvalidSubscriptionCode):
        make_query(PORTNET, "portnet", "ABCDE")
    with pytest.raises(InvalidInput):
        InvoiceFilter(page=0)
    with pytest.raises(InvalidInput):
        InvoiceFilter(date_from=date(2017, 2, 1), date_to=date(2017, 1, 1))
    assert make_query(MARSAMAROC, "marsamaroc", "000236", terminal="CASABLANCA").terminal == "Casablanca"


@pytest.mark.parametrize("error", [InvalidPhoneNumber(), InvalidSubscriptionCode(), InvalidAmount(), UnknownBiller()])
def test_every_typed_error_reads_in_french_arabic_and_english(error: FatouraError):
    texts = {lang: translator(lang).error(error) for lang in ("fr", "ar", "en")}
    assert texts["en"] == error.msgid
    assert texts["fr"] != texts["en"] and texts["ar"] != texts["en"]
    assert any("\u0600" <= ch <= "\u06ff" for ch in texts["ar"])


def test_amounts_and_dates_per_locale():
    amount = D("1234.50")
    assert translator("fr").amount(amount) == "1\u202f234,50\xa0MAD"
    assert translator("ar").amount(amount) == "\u200f1.234,50\xa0د.م.\u200f"
    assert translator("en").amount(amount) == "MAD1,234.50"
    assert translator("fr").period("01/2017") == "janvier 2017"
    assert translator("ar").rtl and not translator("fr").rtl
    with pytest.raises(TypeError):
        translator("fr").amount(1234.5)  # money is Decimal, never float


def test_settings_never_show_secrets(monkeypatch):
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123456:VERY-SECRET-TOKEN")
    monkeypatch.setenv("CMI_STORE_KEY", "STORE-KEY-SECRET")
    settings = Settings()
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    assert "VERY-SECRET-TOKEN" not in shown and "STORE-KEY-SECRET" not in shown
    assert settings.telegram_bot_token.get_secret_value() == "123456:VERY-SECRET-TOKEN"
    assert Settings().database_url.startswith("sqlite")  # a file when DATABASE_URL is unset
