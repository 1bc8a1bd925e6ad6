"""Validation and normalisation of what customers type to identify an account.

Each function returns the canonical form or raises a typed InvalidInput; the formats come from
the portals' guides (seeds 000-004).
"""
from __future__ import annotations

import re

import phonenumbers

from core.errors import (
    InvalidCustomerNumber,
    InvalidEmail,
    InvalidPaymentCode,
    InvalidPhoneNumber,
    InvalidSubscriptionCode,
)

_SPACES = re.compile(r"[\s\-.()/]+")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")

MOBILE_TYPES = {phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE}
FIXED_TYPES = {
    phonenumbers.PhoneNumberType.FIXED_LINE,
    phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    phonenumbers.PhoneNumberType.VOIP,
}


def normalize_phone(raw: str, *, kind: str | None = None) -> str:
    """'0612345678', '+212 6 12 34 56 78', '212612345678', '00212612345678' -> '212612345678'.

    `kind` is "mobile" or "fixe" to also check the line type (Maroc Telecom Mobile vs Fixe).
    """
    if not isinstance(raw, str):
        raise InvalidPhoneNumber(f"not text: {raw!r}")
    text = _SPACES.sub("", raw.strip())
    if text.startswith("00"):
        text = "+" + text[2:]
    elif text.startswith("212") and len(text) == 12:
        text = "+" + text
    if not re.fullmatch(r"\+?\d{9,15}", text):
        raise InvalidPhoneNumber(f"not a phone number: {raw!r}")
    try:
        number = phonenumbers.parse(text, "MA")
    except phonenumbers.NumberParseException:
        raise InvalidPhoneNumber(f"not a phone number: {raw!r}") from None
    if number.country_code != 212 or not phonenumbers.is_valid_number(number):
        raise InvalidPhoneNumber(f"not a valid Moroccan number: {raw!r}")
    line_type = phonenumbers.number_type(number)
    if kind == "mobile" and line_type not in MOBILE_TYPES:
        raise InvalidPhoneNumber(f"not a mobile number: {raw!r}")
    if kind == "fixe" and line_type not in FIXED_TYPES:
        raise InvalidPhoneNumber(f"not a fixed-line number: {raw!r}")
    return f"212{number.national_number}"


def display_phone(canonical: str) -> str:
    """'212612345678' -> '06 12 34 56 78', the way Moroccans write it."""
    national = "0" + canonical[3:]
    return " ".join([national[:2]] + [national[i : i + 2] for i in range(2, len(national), 2)])


def normalize_customer_number(raw: str) -> str:
    """Maroc Telecom / DIAC 'N° client': digits only (the portal shows it as '1.5667714371')."""
    if not isinstance(raw, str):
        raise InvalidCustomerNumber(f"not text: {raw!r}")
    text = _SPACES.sub("", raw.strip())
    if not re.fullmatch(r"\d{6,16}", text):
        raise InvalidCustomerNumber(f"not a customer number: {raw!r}")
    return text


def normalize_subscription_code(raw: str) -> str:
    """PortNet 'code d'abonnement': exactly 4 letters or digits, case-insensitive."""
    if not isinstance(raw, str):
        raise InvalidSubscriptionCode(f"not text: {raw!r}")
    text = raw.strip().upper()
    if not re.fullmatch(r"[A-Z0-9]{4}", text):
        raise InvalidSubscriptionCode(f"not a 4-character code: {raw!r}")
    return text


def normalize_payment_code(raw: str) -> str:
    """Maroc Telecom 'code de paiement' printed on the invoice: 4 to 12 digits."""
    if not isinstance(raw, str):
        raise InvalidPaymentCode(f"not text: {raw!r}")
    text = _SPACES.sub("", raw.strip())
    if not re.fullmatch(r"\d{4,12}", text):
        raise InvalidPaymentCode(f"not a payment code: {raw!r}")
    return text


def normalize_email(raw: str) -> str:
    if not isinstance(raw, str):
        raise InvalidEmail(f"not text: {raw!r}")
    text = raw.strip()
    if len(text) > 254 or not _EMAIL.fullmatch(text):
        raise InvalidEmail(f"not an e-mail: {raw!r}")
    local, domain = text.rsplit("@", 1)
    return f"{local}@{domain.lower()}"


def normalize_marsa_identifier(raw: str) -> str:
    """Marsa Maroc customer identifier (seed 002 shows '000236'): 3 to 16 letters or digits."""
    from core.errors import InvalidCustomerNumber

    text = _SPACES.sub("", raw.strip()).upper() if isinstance(raw, str) else ""
    if not re.fullmatch(r"[A-Z0-9]{3,16}", text):
        raise InvalidCustomerNumber(f"not a Marsa Maroc identifier: {raw!r}")
    return text


def normalize_invoice_number(raw: str) -> str:
    text = raw.strip() if isinstance(raw, str) else ""
    if not re.fullmatch(r"[A-Za-z0-9\-/]{1,32}", text):
        from core.errors import InvoiceNotFound

        raise InvoiceNotFound(f"not an invoice number: {raw!r}")
    return text


def luhn_check_digit(digits: str) -> str:
    """The Luhn digit to append to `digits` (card numbers, our payment references)."""
    total = 0
    for i, char in enumerate(reversed(digits)):
        n = int(char)
        if i % 2 == 0:  # these positions are doubled once the check digit is appended
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    return number.isascii() and number.isdigit() and len(number) >= 2 and \
        luhn_check_digit(number[:-1]) == number[-1]


_CARD_CANDIDATE = re.compile(r"(?<!\d)(?:\d[ \-]?){12,18}\d(?!\d)")


def contains_card_number(text: str) -> bool:
    """True when the text holds a Luhn-valid 13-19 digit sequence (spaces or dashes allowed)."""
    for match in _CARD_CANDIDATE.finditer(text or ""):
        digits = re.sub(r"\D", "", match.group())
        if 13 <= len(digits) <= 19 and luhn_valid(digits) and len(set(digits)) > 1:
            return True
    return False
