"""The sandbox billers: the seeds' portals answered from the sandbox tables, by the same rules.

Nothing here is special-cased downstream: the conversation sees a BillerConnector like any other.
"""
from __future__ import annotations

import asyncio
import hmac
from datetime import timezone
from decimal import Decimal

from sqlalchemy import func, select

from core.billers.base import AccountQuery, BillerAccount, BillerInfo, BillerInvoice, InvoiceFilter, InvoicePage, PaidNotice
from core.db import Database
from core.errors import InvalidAmount, InvoiceNotFound, UnknownAccount, WrongEmail, WrongPaymentCode
from core.models import InvoiceStatus, SandboxAccount, SandboxInvoice
from core.money import ZERO, quantize

IAM_LAST_INVOICES = 6  # Maroc Telecom shows the last 6 invoices (seed 000)


def _invoice(account: SandboxAccount, row: SandboxInvoice) -> BillerInvoice:
    ht, ttc = quantize(row.amount_ht), quantize(row.amount_ttc)
    return BillerInvoice(
        number=row.number,
        issuer=row.issuer,
        client_name=account.holder_name,
        invoice_date=row.invoice_date,
        due_date=row.due_date,
        amount_ht=ht,
        amount_tva=ttc - ht,
        amount_ttc=ttc,
        status=row.status,
        invoice_type=row.invoice_type,
        call_number=row.call_number,
        customer_number=account.customer_number,
        billing_period=row.billing_period,
        payment_means=tuple(row.payment_means or ()),
        prestations=tuple(row.prestations or ()),
        messages=tuple(row.messages or ()),
        description=row.description,
        paid_at=row.paid_at,
        transaction_id=row.transaction_id,
    )


def _account(row: SandboxAccount) -> BillerAccount:
    return BillerAccount(
        biller=row.biller, service=row.service, account_ref=row.ref, identifier=row.identifier,
        holder_name=row.holder_name, customer_number=row.customer_number, customs_code=row.customs_code,
        terminal=row.terminal or None,
    )


class SandboxBiller:
    """One sandbox biller (Maroc Telecom, PortNet, Marsa Maroc, DIAC) over the sandbox tables."""

    def __init__(self, info: BillerInfo, db: Database) -> None:
        self.info = info
        self.db = db

    async def _load_account(self, session, account_ref: str) -> SandboxAccount:  # noqa: ANN001
        account = await session.scalar(
            select(SandboxAccount).where(SandboxAccount.ref == account_ref, SandboxAccount.biller == self.info.code)
        )
        if account is None:
            raise UnknownAccount(f"{self.info.code} has no account {account_ref!r}")
        return account

    async def find_account(self, query: AccountQuery) -> BillerAccount:
        service = self.info.service(query.service)
        conditions = [SandboxAccount.biller == self.info.code, SandboxAccount.service == service.code,
                      SandboxAccount.terminal == (query.terminal or "")]
        async with self.db.session() as session:
            account = await session.scalar(select(SandboxAccount).where(*conditions, SandboxAccount.identifier == query.identifier))
            if account is None and self.info.code == "iam":
                # N° client works in place of the phone number (seed 000).
                account = await session.scalar(
                    select(SandboxAccount).where(*conditions, SandboxAccount.customer_number == query.identifier)
                )
        if account is None:
            raise UnknownAccount(f"no {self.info.code}/{service.code} account {query.identifier!r}")
        if service.secret is not None:
            expected = (account.secret or "").casefold()
            given = (query.secret or "").casefold()
            if not hmac.compare_digest(expected.encode(), given.encode()):
                raise WrongEmail() if service.secret == "email" else WrongPaymentCode()
        return _account(account)

    async def list_invoices(self, account_ref: str, filters: InvoiceFilter) -> InvoicePage:
        async with self.db.session() as session:
            account = await self._load_account(session, account_ref)
            where = [SandboxInvoice.account_id == account.id]
            if self.info.code == "iam":
                recent = (select(SandboxInvoice.id).where(SandboxInvoice.account_id == account.id)
                          .order_by(SandboxInvoice.invoice_date.desc()).limit(IAM_LAST_INVOICES))
                where.append(SandboxInvoice.id.in_(recent.scalar_subquery()))
            if filters.status:
                where.append(SandboxInvoice.status == filters.status)
            if filters.issuer:
                where.append(func.upper(SandboxInvoice.issuer) == filters.issuer.upper())
            if filters.number:
                where.append(SandboxInvoice.number == filters.number)
            if filters.date_from:
                where.append(SandboxInvoice.invoice_date >= filters.date_from)
            if filters.date_to:
                where.append(SandboxInvoice.invoice_date <= filters.date_to)
            if filters.billing_period:
                where.append(SandboxInvoice.billing_period == filters.billing_period)
            total, total_ttc = (await session.execute(
                select(func.count(), func.coalesce(func.sum(SandboxInvoice.amount_ttc), 0)).where(*where)
            )).one()
            rows = (await session.scalars(
                select(SandboxInvoice).where(*where)
                .order_by(SandboxInvoice.due_date.desc(), SandboxInvoice.number.desc())
                .offset((filters.page - 1) * filters.page_size).limit(filters.page_size)
            )).all()
        return InvoicePage(
            items=tuple(_invoice(account, row) for row in rows), total=total, page=filters.page,
            page_size=filters.page_size, totals_ttc=quantize(Decimal(total_ttc or ZERO)),
        )

    async def _get_invoice(self, account_ref: str, number: str) -> tuple[SandboxAccount, SandboxInvoice]:
        async with self.db.session() as session:
            account = await self._load_account(session, account_ref)
            row = await session.scalar(
                select(SandboxInvoice).where(SandboxInvoice.account_id == account.id, SandboxInvoice.number == number)
            )
        if row is None:
            raise InvoiceNotFound(f"{account_ref} has no invoice {number!r}")
        return account, row

    async def get_invoice(self, account_ref: str, number: str) -> BillerInvoice:
        account, row = await self._get_invoice(account_ref, number)
        return _invoice(account, row)

    async def fetch_pdf(self, account_ref: str, number: str, language: str = "fr") -> bytes:
        from core.documents.invoice_pdf import render_invoice_pdf

        account, row = await self._get_invoice(account_ref, number)
        # Rendering takes ~0.1 s of CPU: keep it off the event loop so other chats go on.
        return await asyncio.to_thread(render_invoice_pdf, _invoice(account, row), biller_name=self.info.name,
                                       language=language, customs_code=account.customs_code)

    async def notify_paid(self, account_ref: str, notice: PaidNotice) -> None:
        """Mark the invoices paid. Replaying the same notice is a no-op; a wrong amount changes nothing."""
        if not notice.invoice_numbers:
            raise InvoiceNotFound("a paid notice names no invoice")
        async with self.db.transaction() as session:
            account = await self._load_account(session, account_ref)
            rows = (await session.scalars(
                select(SandboxInvoice).where(SandboxInvoice.account_id == account.id,
                                             SandboxInvoice.number.in_(notice.invoice_numbers))
                .with_for_update()
            )).all()
            found = {row.number for row in rows}
            missing = sorted(set(notice.invoice_numbers) - found)
            if missing:
                raise InvoiceNotFound(f"{account_ref} has no invoice {', '.join(missing)}")
            if all(row.transaction_id == notice.transaction_id for row in rows):
                return
            due = sum((row.amount_ttc for row in rows if row.status != InvoiceStatus.PAID.value), ZERO)
            if quantize(notice.amount) != quantize(due):
                raise InvalidAmount(f"paid {notice.amount} for {due} due")
            paid_at = notice.paid_at if notice.paid_at.tzinfo else notice.paid_at.replace(tzinfo=timezone.utc)
            for row in rows:
                if row.status != InvoiceStatus.PAID.value:
                    row.status = InvoiceStatus.PAID.value
                    row.paid_at = paid_at
                    row.transaction_id = notice.transaction_id
                    row.messages = [*(row.messages or []), {
                        "n": len(row.messages or []) + 1, "function": "Paiement", "state": "Réglée",
                        "date": paid_at.astimezone(timezone.utc).isoformat(timespec="seconds"),
                        "receiver": notice.channel, "note": f"Transaction {notice.transaction_id}",
                    }]
