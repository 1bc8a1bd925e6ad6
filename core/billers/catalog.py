"""What each biller asks for and offers, as its portal shows it (seeds 000-004)."""
from __future__ import annotations

from core import identifiers
from core.billers.base import (
    IDENTIFIER_CUSTOMER_NUMBER,
    IDENTIFIER_MARSA_ID,
    IDENTIFIER_PHONE,
    IDENTIFIER_SUBSCRIPTION_CODE,
    SECRET_EMAIL,
    SECRET_PAYMENT_CODE,
    AccountQuery,
    BillerInfo,
    Service,
)
from core.billers.sandbox.samples import MARSA_TERMINALS, PORTNET_ISSUERS

IAM = BillerInfo(
    code="iam",
    name="Maroc Telecom",
    services=(
        Service("mobile", "Mobile", IDENTIFIER_PHONE, SECRET_PAYMENT_CODE, phone_kind="mobile"),
        Service("fixe", "Landline", IDENTIFIER_PHONE, SECRET_PAYMENT_CODE, phone_kind="fixe"),
        Service("internet", "Internet", IDENTIFIER_CUSTOMER_NUMBER, SECRET_PAYMENT_CODE),
    ),
    issuers=("MAROC TELECOM",),
)

PORTNET = BillerInfo(
    code="portnet",
    name="PortNet",
    services=(Service("portnet", "PortNet invoices (subscription code)", IDENTIFIER_SUBSCRIPTION_CODE),),
    issuers=PORTNET_ISSUERS,
)

MARSAMAROC = BillerInfo(
    code="marsamaroc",
    name="Marsa Maroc",
    services=(
        Service("marsamaroc", "Marsa Maroc invoices (terminal + identifier)", IDENTIFIER_MARSA_ID, needs_terminal=True),
    ),
    issuers=("MARSAMAROC CASA",),
    terminals=MARSA_TERMINALS,
)

DIAC = BillerInfo(
    code="diac",
    name="DIAC",
    services=(Service("efacture", "DIAC e-invoice", IDENTIFIER_CUSTOMER_NUMBER, SECRET_EMAIL),),
    issuers=("DIAC",),
    archive_years=2,
)

SANDBOX_BILLERS = (IAM, PORTNET, MARSAMAROC, DIAC)


def make_query(info: BillerInfo, service_code: str, identifier: str, secret: str | None = None,
               terminal: str | None = None) -> AccountQuery:
    """Normalise what the customer typed into the query the biller expects, or raise a typed error."""
    from core.errors import UnknownTerminal

    service = info.service(service_code)
    value = normalize_identifier(info, service_code, identifier)
    if service.secret == SECRET_PAYMENT_CODE:
        secret = identifiers.normalize_payment_code(secret or "")
    elif service.secret == SECRET_EMAIL:
        secret = identifiers.normalize_email(secret or "")
    else:
        secret = None
    if service.needs_terminal:
        wanted = (terminal or "").strip().casefold()
        matches = [t for t in info.terminals if t.casefold() == wanted]
        if not matches:
            raise UnknownTerminal(f"{info.code} has no terminal {terminal!r}")
        terminal = matches[0]
    else:
        terminal = None
    return AccountQuery(service=service.code, identifier=value, secret=secret, terminal=terminal)


def normalize_identifier(info: BillerInfo, service_code: str, raw: str) -> str:
    """The identifier alone, checked and normalised for this service (the conversation asks it first)."""
    service = info.service(service_code)
    if service.identifier == IDENTIFIER_PHONE:
        # Maroc Telecom also accepts the N° client in place of the phone number (seed 000).
        digits = "".join(ch for ch in raw if ch.isdigit()) if isinstance(raw, str) else ""
        if len(digits) >= 12 and not digits.startswith("212") and not digits.startswith("00"):
            return identifiers.normalize_customer_number(raw)
        return identifiers.normalize_phone(raw, kind=service.phone_kind)
    if service.identifier == IDENTIFIER_CUSTOMER_NUMBER:
        return identifiers.normalize_customer_number(raw)
    if service.identifier == IDENTIFIER_SUBSCRIPTION_CODE:
        return identifiers.normalize_subscription_code(raw)
    return identifiers.normalize_marsa_identifier(raw)
