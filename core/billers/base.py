"""The biller connector protocol: find an account, list invoices, fetch a PDF, accept a paid notice.

Every connector (sandbox, generic HTTP, a biller's own class) returns these plain records; the
rest of Fatoura never knows which kind it talks to.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from core.errors import N_

# What a service asks the customer for, in order. The conversation turns each into one prompt.
IDENTIFIER_PHONE = "phone"
IDENTIFIER_CUSTOMER_NUMBER = "customer_number"
IDENTIFIER_SUBSCRIPTION_CODE = "subscription_code"
IDENTIFIER_MARSA_ID = "marsa_identifier"
SECRET_PAYMENT_CODE = "payment_code"
SECRET_EMAIL = "email"

PAGE_SIZE = 10  # PortNet pages beyond 10 invoices (seed 003)


@dataclass(frozen=True)
class Service:
    """A biller's service as its portal names it (Mobile, Fixe, Internet, ...)."""

    code: str
    label: str  # msgid
    identifier: str  # one of IDENTIFIER_*
    secret: str | None = None  # one of SECRET_*, or None when the identifier alone suffices
    needs_terminal: bool = False
    phone_kind: str | None = None  # "mobile" / "fixe" when identifier is a phone


@dataclass(frozen=True)
class BillerInfo:
    code: str
    name: str
    services: tuple[Service, ...]
    issuers: tuple[str, ...] = ()
    terminals: tuple[str, ...] = ()
    archive_years: int | None = None  # DIAC keeps originals 2 years (seed 004)

    def service(self, code: str) -> Service:
        from core.errors import UnknownService

        for service in self.services:
            if service.code == code:
                return service
        raise UnknownService(f"{self.code} has no service {code!r}")


@dataclass(frozen=True)
class AccountQuery:
    """What the customer typed, already normalised by core.identifiers."""

    service: str
    identifier: str
    secret: str | None = None
    terminal: str | None = None


@dataclass(frozen=True)
class BillerAccount:
    biller: str
    service: str
    account_ref: str  # opaque, stable handle the biller gives back; never the secret
    identifier: str
    holder_name: str
    customer_number: str | None = None
    customs_code: str | None = None
    terminal: str | None = None


@dataclass(frozen=True)
class Prestation:
    name: str
    operation_type: str | None = None
    reference: str | None = None
    end_date: datetime | None = None


@dataclass(frozen=True)
class BillerInvoice:
    """One invoice with every column the portals show (seeds 000, 002, 003)."""

    number: str
    issuer: str
    client_name: str
    invoice_date: date
    due_date: date
    amount_ht: Decimal
    amount_tva: Decimal
    amount_ttc: Decimal
    status: str  # InvoiceStatus value
    invoice_type: str = "Principale"
    call_number: str | None = None
    customer_number: str | None = None
    billing_period: str | None = None  # MM/YYYY
    tva_rate: Decimal = Decimal("0.20")
    currency: str = "MAD"
    payment_means: tuple[str, ...] = ()
    prestations: tuple[dict[str, Any], ...] = ()
    messages: tuple[dict[str, Any], ...] = ()
    description: str | None = None
    paid_at: datetime | None = None
    transaction_id: str | None = None

    def is_overdue(self, today: date) -> bool:
        return self.status == "unpaid" and self.due_date < today


@dataclass(frozen=True)
class InvoiceFilter:
    """Up to 4 filters at once, as PortNet allows (seed 003)."""

    status: str | None = "unpaid"  # None = all
    issuer: str | None = None
    number: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    billing_period: str | None = None
    page: int = 1
    page_size: int = PAGE_SIZE

    def __post_init__(self) -> None:
        from core.errors import InvalidInput

        if self.page < 1 or not 1 <= self.page_size <= 100:
            raise InvalidInput(f"bad page {self.page} / size {self.page_size}")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise InvalidInput("date_from after date_to")
        active = [self.issuer, self.number, self.date_from or self.date_to, self.billing_period]
        if sum(1 for value in active if value) > 4:
            raise InvalidInput("at most 4 filters")


@dataclass(frozen=True)
class InvoicePage:
    items: tuple[BillerInvoice, ...]
    total: int
    page: int
    page_size: int
    totals_ttc: Decimal = field(default=Decimal("0.00"))

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


@dataclass(frozen=True)
class PaidNotice:
    invoice_numbers: tuple[str, ...]
    transaction_id: str
    amount: Decimal
    paid_at: datetime
    channel: str


@runtime_checkable
class BillerConnector(Protocol):
    info: BillerInfo

    async def find_account(self, query: AccountQuery) -> BillerAccount: ...

    async def list_invoices(self, account_ref: str, filters: InvoiceFilter) -> InvoicePage: ...

    async def fetch_pdf(self, account_ref: str, number: str, language: str = "fr") -> bytes: ...

    async def notify_paid(self, account_ref: str, notice: PaidNotice) -> None: ...


SERVICE_LABELS = {
    "mobile": N_("Mobile"),
    "fixe": N_("Landline"),
    "internet": N_("Internet"),
    "portnet": N_("PortNet invoices (subscription code)"),
    "marsamaroc": N_("Marsa Maroc invoices (terminal + identifier)"),
    "efacture": N_("DIAC e-invoice"),
}
