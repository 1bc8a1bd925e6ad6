"""Loading the sandbox billers' back office: the seeds' samples and generated accounts."""
from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Iterable

import json

from sqlalchemy import func, select, text

from core.billers.sandbox.generator import generated_account
from core.billers.sandbox.samples import SAMPLE_ACCOUNTS, diac_invoices
from core.db import Database
from core.money import tva_of
from core.models import SandboxAccount, SandboxInvoice

ACCOUNT_COLUMNS = ("ref", "biller", "service", "identifier", "terminal", "secret", "holder_name",
                   "customer_number", "customs_code")
CHUNK = 5000
_to_json = json.JSONEncoder(ensure_ascii=False).encode


def _invoice_row(account_id: int, row: dict) -> dict:
    ttc = row.get("amount_ttc") or row["amount_ht"] + tva_of(row["amount_ht"])
    return {
        "account_id": account_id,
        "number": row["number"],
        "invoice_type": row.get("invoice_type", "Principale"),
        "issuer": row["issuer"],
        "call_number": row.get("call_number"),
        "billing_period": row.get("billing_period"),
        "invoice_date": row["invoice_date"],
        "due_date": row["due_date"],
        "amount_ht": row["amount_ht"],
        "amount_ttc": ttc,
        "status": row["status"],
        "payment_means": row.get("payment_means", []),
        "prestations": row.get("prestations", []),
        "messages": row.get("messages", []),
        "description": row.get("description"),
    }


INVOICE_COLUMNS = ("account_id", "number", "invoice_type", "issuer", "call_number", "billing_period", "invoice_date",
                   "due_date", "amount_ht", "amount_ttc", "status", "payment_means", "prestations", "messages",
                   "description")


async def _insert_accounts(db: Database, accounts: Iterable[dict]) -> int:
    """Bulk-load accounts and invoices through the driver (COPY on PostgreSQL, executemany on
    SQLite): the ORM path managed ~3,000 rows/s, far too slow for 100,000 accounts.

    Ids are allocated under a table lock so invoices can reference their account without a
    RETURNING round trip per row.
    """
    written = 0
    batch: list[dict] = []

    async def flush() -> None:
        nonlocal written
        if not batch:
            return
        async with db.transaction() as session:
            connection = await session.connection()
            postgres = connection.dialect.name == "postgresql"
            if postgres:
                await session.execute(text("LOCK TABLE sandbox_accounts IN EXCLUSIVE MODE"))
            first_id = (await session.scalar(select(func.coalesce(func.max(SandboxAccount.id), 0)))) + 1
            account_rows, invoice_rows = [], []
            for offset, account in enumerate(batch):
                account_id = first_id + offset
                account_rows.append((account_id, *(account.get(col) or ("" if col == "terminal" else None) for col in ACCOUNT_COLUMNS)))
                for invoice in account["invoices"]:
                    row = _invoice_row(account_id, invoice)
                    for key in ("payment_means", "prestations", "messages"):
                        row[key] = _to_json(row[key]) if row[key] else "[]"
                    if not postgres:
                        row["amount_ht"], row["amount_ttc"] = str(row["amount_ht"]), str(row["amount_ttc"])
                    invoice_rows.append(tuple(row[col] for col in INVOICE_COLUMNS))
            raw = (await connection.get_raw_connection()).driver_connection
            if postgres:
                await raw.copy_records_to_table("sandbox_accounts", records=account_rows, columns=("id", *ACCOUNT_COLUMNS))
                await raw.copy_records_to_table("sandbox_invoices", records=invoice_rows, columns=INVOICE_COLUMNS)
                await session.execute(text(
                    "SELECT setval(pg_get_serial_sequence('sandbox_accounts', 'id'), (SELECT max(id) FROM sandbox_accounts))"
                ))
            else:
                marks = ", ".join("?" * (len(ACCOUNT_COLUMNS) + 1))
                await raw.executemany(f"INSERT INTO sandbox_accounts (id, {', '.join(ACCOUNT_COLUMNS)}) VALUES ({marks})", account_rows)
                marks = ", ".join("?" * len(INVOICE_COLUMNS))
                await raw.executemany(f"INSERT INTO sandbox_invoices ({', '.join(INVOICE_COLUMNS)}) VALUES ({marks})", invoice_rows)
        written += len(batch)
        batch.clear()

    for account in accounts:
        batch.append(account)
        if len(batch) >= CHUNK:
            await flush()
    await flush()
    return written


async def seed_samples(db: Database, today: date | None = None) -> int:
    """Load the seeds' sample accounts once; returns how many were added."""
    today = today or date.today()
    async with db.session() as session:
        existing = set((await session.scalars(select(SandboxAccount.ref).where(~SandboxAccount.ref.like("gen-%")))).all())
    missing = []
    for sample in SAMPLE_ACCOUNTS:
        if sample["ref"] in existing:
            continue
        account = dict(sample)
        if account["biller"] == "diac":
            account["invoices"] = diac_invoices(today)
        missing.append(account)
    return await _insert_accounts(db, missing)


async def seed_generated(db: Database, count: int, *, seed: int = 2017, anchor: date | None = None) -> int:
    """Make sure generated accounts 1..count exist (idempotent); returns how many were added."""
    anchor = (anchor or date.today()).replace(day=1)
    prefix = f"gen-{seed}-"
    async with db.session() as session:
        have = await session.scalar(select(func.count()).select_from(SandboxAccount).where(SandboxAccount.ref.like(prefix + "%")))
    start = (have or 0) + 1
    return await _insert_accounts(db, (generated_account(i, seed, anchor) for i in range(start, count + 1)))


async def issue_invoice(db: Database, account: str, amount_ht: Decimal, *, due_in_days: int = 15,
                        today: date | None = None, number: str | None = None) -> tuple[SandboxAccount, SandboxInvoice]:
    """The sandbox biller issues a new unpaid invoice to an account (its ref, or its identifier):
    dated today, due in `due_in_days`, same issuer and payment means as the account's latest
    invoice. Raises UnknownAccount."""
    from core.errors import UnknownAccount

    today = today or date.today()
    async with db.transaction() as session:
        row = await session.scalar(select(SandboxAccount).where(SandboxAccount.ref == account))
        row = row or await session.scalar(select(SandboxAccount).where(SandboxAccount.identifier == account)
                                          .order_by(SandboxAccount.id).limit(1))
        if row is None:
            raise UnknownAccount(f"no sandbox account {account!r}")
        latest = await session.scalar(select(SandboxInvoice).where(SandboxInvoice.account_id == row.id)
                                      .order_by(SandboxInvoice.invoice_date.desc()).limit(1))
        if number is None:
            count = await session.scalar(select(func.count()).select_from(SandboxInvoice)
                                         .where(SandboxInvoice.account_id == row.id))
            number = f"N{today:%y%m%d}{row.id % 10000:04d}{(count or 0) + 1:03d}"
        invoice = SandboxInvoice(
            account_id=row.id, number=number, issuer=latest.issuer if latest else row.biller.upper(),
            invoice_type="Principale", call_number=latest.call_number if latest else None,
            billing_period=f"{today:%m/%Y}", invoice_date=today, due_date=today + timedelta(days=due_in_days),
            amount_ht=amount_ht, amount_ttc=amount_ht + tva_of(amount_ht), status="unpaid",
            payment_means=list(latest.payment_means) if latest else [], prestations=[], messages=[])
        session.add(invoice)
    return row, invoice
