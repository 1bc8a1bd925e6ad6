"""Invoice PDFs in fr / ar / en: the figures are there, Arabic is shaped and in logical order,
the Arabic layout is mirrored, long content wraps onto more pages, and bad input is refused."""
from __future__ import annotations

import io
import logging
import re
import shutil
import subprocess
import unicodedata
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal as D
from pathlib import Path

import pytest
from pypdf import PdfReader

from core.billers.base import BillerInvoice
from core.documents.invoice_pdf import render_invoice_pdf
from core.errors import InvalidAmount

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
ARABIC_CLIENT = "شركة الأطلس للتجارة"
ARABIC_DESCRIPTION = "اشتراك سنوي في بوابة بورتنت"

# Seed 000: the Maroc Telecom invoice the guide prints.
IAM = BillerInvoice(
    number="0000528605022017", issuer="MAROC TELECOM", client_name="Amina El Idrissi",
    invoice_date=date(2017, 2, 5), due_date=date(2017, 2, 27),
    amount_ht=D("249.84"), amount_tva=D("49.97"), amount_ttc=D("299.81"), status="unpaid",
    call_number="212623363444", customer_number="156677143760", billing_period="01/2017",
    payment_means=("cmi",),
)

# Seed 002-like PortNet invoice, with an Arabic client and description to prove the Arabic path
# without depending on translated labels.
PORTNET = BillerInvoice(
    number="00069321", issuer="PORTNET", client_name=ARABIC_CLIENT,
    invoice_date=date(2017, 10, 31), due_date=date(2017, 12, 30),
    amount_ht=D("3000.00"), amount_tva=D("600.00"), amount_ttc=D("3600.00"), status="paid",
    payment_means=("amanpay", "cheque", "virement"),
    prestations=({"name": "Abonnement Portnet", "operation_type": "Abonnement PORTNET",
                  "reference": "Abonnement annuel IMP", "end_date": "2017-10-30T00:00:00"},),
    description=ARABIC_DESCRIPTION + ".",
)

_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹", "01234567890123456789")
_NUMBER = re.compile(r"\d(?:[\d.,\u066b\u066c \xa0\u202f]*\d)?")
_DECIMALS = re.compile(r"[.,\u066b]\d{2}$")


def pages_text(pdf: bytes) -> str:
    reader = PdfReader(io.BytesIO(pdf))
    # pypdf may hand back Arabic presentation forms; NFKC maps them to the base letters.
    return unicodedata.normalize("NFKC", "\n".join(page.extract_text() for page in reader.pages))


def figures(text: str) -> set[str]:
    """Every amount in the text as '1234.56', whatever the locale wrote: '3.600,00', '3 600,00',
    '3,600.00', '٣٬٦٠٠٫٠٠' (the decimal mark is the last separator followed by exactly 2 digits)."""
    found = set()
    for match in _NUMBER.finditer(text.translate(_DIGITS)):
        digits = re.sub(r"\D", "", match.group())
        found.add(f"{digits[:-2]}.{digits[-2:]}" if _DECIMALS.search(match.group()) else digits)
    return found


def x_of(pdf: bytes, needle: str) -> float:
    """Horizontal position (points) where the text drawing `needle` starts on page 1."""
    found: list[float] = []

    def visit(text, cm, tm, font, size):
        if needle in unicodedata.normalize("NFKC", text):
            found.append(tm[4] * cm[0] + cm[4])

    PdfReader(io.BytesIO(pdf)).pages[0].extract_text(visitor_text=visit)
    assert found, f"{needle!r} not drawn"
    return found[0]


@pytest.mark.parametrize("language", ["fr", "ar", "en"])
def test_maroc_telecom_invoice_shows_number_and_total(language):
    text = pages_text(render_invoice_pdf(IAM, biller_name="Maroc Telecom", language=language))
    assert "0000528605022017" in text
    assert "299.81" in figures(text)
    assert "249.84" in figures(text)
    assert "06 23 36 34 44" in text  # call number as Moroccans write it
    assert "Maroc Telecom" in text


def test_arabic_pdf_has_shaped_logical_arabic_and_no_stray_marks(caplog):
    with caplog.at_level(logging.WARNING):
        pdf = render_invoice_pdf(PORTNET, biller_name="PortNet", language="ar", customs_code="290240")
    assert not [r for r in caplog.records if "missing the following glyphs" in r.getMessage()]
    text = pages_text(pdf)
    assert ARABIC_CLIENT in text
    assert ARABIC_CLIENT[::-1] not in text  # not stored in visual (reversed) order
    assert ARABIC_DESCRIPTION in text
    assert "د.م" in text  # Babel's ar_MA currency sign
    assert "3600.00" in figures(text)
    assert "290240" in text and "00069321" in text
    assert not {"\u200f", "\u200e", "\u061c", "\ufffd"} & set(text)


def test_arabic_layout_is_mirrored():
    """Client block on the start side: left in French, right in Arabic; invoice details opposite."""
    fr = render_invoice_pdf(IAM, biller_name="Maroc Telecom", language="fr")
    ar = render_invoice_pdf(IAM, biller_name="Maroc Telecom", language="ar")
    middle = 595.28 / 2  # A4 width in points
    assert x_of(fr, "Amina") < middle < x_of(ar, "Amina")
    assert x_of(ar, "05/02/2017") < middle < x_of(fr, "05/02/2017")


def test_portnet_prestations_and_long_description_wrap_onto_pages():
    prestations = tuple(
        {"name": f"Manutention conteneurs lot {i}", "operation_type": "Import", "reference": "DUM-" + "7" * 60,
         "end_date": datetime(2017, 10, i % 28 + 1)}
        for i in range(40)
    )
    invoice = replace(PORTNET, prestations=prestations,
                      client_name="SOCIETE MAROCAINE D'IMPORTATION ET D'EXPORTATION DES PRODUITS AGRICOLES SARL",
                      description="Redevance sur marchandises importées. " * 120)
    for language in ("fr", "ar"):
        pdf = render_invoice_pdf(invoice, biller_name="PortNet", language=language, customs_code="290240")
        reader = PdfReader(io.BytesIO(pdf))
        assert len(reader.pages) > 1
        text = pages_text(pdf)
        assert "lot 0" in text and "lot 39" in text
        assert "3600.00" in figures(text)
        assert f"{len(reader.pages)}/{len(reader.pages)}" in text  # footer page numbers


def test_same_invoice_gives_same_bytes():
    first = render_invoice_pdf(PORTNET, biller_name="PortNet", language="ar")
    assert first == render_invoice_pdf(PORTNET, biller_name="PortNet", language="ar")
    assert first != render_invoice_pdf(PORTNET, biller_name="PortNet", language="fr")


def test_unknown_language_falls_back_to_french():
    fr = render_invoice_pdf(IAM, biller_name="Maroc Telecom", language="fr")
    assert render_invoice_pdf(IAM, biller_name="Maroc Telecom", language="de") == fr
    assert render_invoice_pdf(IAM, biller_name="Maroc Telecom", language="fr-FR") == fr


@pytest.mark.parametrize("field,value", [("amount_ttc", 299.81), ("amount_ht", "249.84"),
                                         ("amount_tva", None), ("tva_rate", D("NaN"))])
def test_non_decimal_amounts_are_refused(field, value):
    with pytest.raises(InvalidAmount):
        render_invoice_pdf(replace(IAM, **{field: value}), biller_name="Maroc Telecom")


def test_odd_but_harmless_fields_are_shown_as_given():
    invoice = replace(IAM, call_number="0522-ABC", billing_period="T1 2017", status="refunded",
                      payment_means=("cmi", "wafacash"), prestations=({"name": "Frais", "end_date": "bientôt"},))
    text = pages_text(render_invoice_pdf(invoice, biller_name="Maroc Telecom", language="en"))
    for shown in ("0522-ABC", "T1 2017", "refunded", "wafacash", "bientôt"):
        assert shown in text


def test_samples_render_to_artifacts():
    """One sample per language in artifacts/ (gitignored), page 1 as PNG for a human look."""
    ARTIFACTS.mkdir(exist_ok=True)
    for language in ("fr", "ar", "en"):
        for name, invoice, biller, customs_code in (("iam", IAM, "Maroc Telecom", None),
                                                    ("portnet", PORTNET, "PortNet", "290240")):
            path = ARTIFACTS / f"invoice_{name}_{language}.pdf"
            path.write_bytes(render_invoice_pdf(invoice, biller_name=biller, language=language,
                                                customs_code=customs_code))
            if shutil.which("pdftoppm"):
                subprocess.run(["pdftoppm", "-png", "-r", "90", "-singlefile", "-f", "1", "-l", "1",
                                str(path), str(path.with_suffix(""))], check=True)
                assert path.with_suffix(".png").stat().st_size > 10_000
