"""Invoices across a chat's linked accounts: the unpaid list with filters and pages, history, PDFs."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from core.billers.base import BillerInvoice, InvoiceFilter
from core.billers.registry import BillerRegistry
from core.errors import BillerUnavailable, InvoiceNotFound
from core.models import LinkedAccount
from core.money import ZERO

PAGE_SIZE = 10
HISTORY_SIZE = 6  # Maroc Telecom shows the last 6 invoices (seed 000)
_FETCH_PAGE = 100
_FETCH_CAP = 500  # invoices read per account for one list; the pages say how many there are


@dataclass(frozen=True)
class Listed:
    link: LinkedAccount
    invoice: BillerInvoice


@dataclass(frozen=True)
class Filters:
    """The 4 filters of PortNet's list (seed 003), each optional. Status None = every status."""

    status: str | None = "unpaid"
    issuer: str | None = None
    number: str | None = None
    date_from: date | None = None
    date_to: date | None = None

    def to_biller(self, page: int = 1, page_size: int = _FETCH_PAGE) -> InvoiceFilter:
        return InvoiceFilter(status=self.status, issuer=self.issuer, number=self.number, date_from=self.date_from,
                             date_to=self.date_to, page=page, page_size=page_size)

    @property
    def active(self) -> int:
        return sum(1 for v in (self.issuer, self.number, self.date_from or self.date_to, self.status != "unpaid") if v)


@dataclass(frozen=True)
class ListPage:
    items: tuple[Listed, ...]
    total: int
    page: int
    pages: int
    total_ttc: Decimal
    unavailable: tuple[LinkedAccount, ...] = field(default=())
    issuers: tuple[str, ...] = ()


async def _all_of(billers: BillerRegistry, link: LinkedAccount, filters: Filters) -> list[BillerInvoice]:
    connector = billers.get(link.biller)
    first = await connector.list_invoices(link.account_ref, filters.to_biller())
    items = list(first.items)
    for page in range(2, min(first.pages, _FETCH_CAP // _FETCH_PAGE) + 1):
        items += (await connector.list_invoices(link.account_ref, filters.to_biller(page))).items
    return items


async def list_invoices(billers: BillerRegistry, links: list[LinkedAccount], filters: Filters, page: int = 1,
                        page_size: int = PAGE_SIZE) -> ListPage:
    """One list over every given account, oldest due date first (what to pay first), paged."""
    results = await asyncio.gather(*(_all_of(billers, link, filters) for link in links), return_exceptions=True)
    rows: list[Listed] = []
    unavailable = []
    for link, result in zip(links, results):
        if isinstance(result, BaseException):
            if not isinstance(result, (BillerUnavailable, OSError, asyncio.TimeoutError)):
                raise result
            unavailable.append(link)
            continue
        rows += [Listed(link, invoice) for invoice in result]
    rows.sort(key=lambda r: (r.invoice.due_date, r.invoice.issuer, r.invoice.number))
    pages = max(1, -(-len(rows) // page_size))
    page = min(max(1, page), pages)
    start = (page - 1) * page_size
    return ListPage(
        items=tuple(rows[start:start + page_size]), total=len(rows), page=page, pages=pages,
        total_ttc=sum((r.invoice.amount_ttc for r in rows), ZERO), unavailable=tuple(unavailable),
        issuers=tuple(sorted({r.invoice.issuer for r in rows})),
    )


async def history(billers: BillerRegistry, links: list[LinkedAccount]) -> list[Listed]:
    """The last paid invoices of each account, newest first."""
    async def paid(link: LinkedAccount) -> list[Listed]:
        page = await billers.get(link.biller).list_invoices(
            link.account_ref, InvoiceFilter(status="paid", page_size=HISTORY_SIZE))
        return [Listed(link, invoice) for invoice in page.items]

    results = await asyncio.gather(*(paid(link) for link in links), return_exceptions=True)
    rows = [row for result in results if not isinstance(result, BaseException) for row in result]
    rows.sort(key=lambda r: r.invoice.invoice_date, reverse=True)
    return rows


async def get_invoice(billers: BillerRegistry, link: LinkedAccount, number: str) -> BillerInvoice:
    page = await billers.get(link.biller).list_invoices(link.account_ref, InvoiceFilter(status=None, number=number))
    if not page.items:
        raise InvoiceNotFound(f"{link.account_ref} has no invoice {number!r}")
    return page.items[0]


async def invoice_pdf(billers: BillerRegistry, link: LinkedAccount, number: str, language: str) -> bytes:
    return await billers.get(link.biller).fetch_pdf(link.account_ref, number, language)
