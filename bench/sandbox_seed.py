"""How long loading generated sandbox accounts takes (issue 2: 100,000 well under a minute).

    .venv/bin/python bench/sandbox_seed.py [--accounts 100000] [--database-url URL]

Without --database-url a temporary SQLite file is used. Prints accounts, invoices, seconds, rate.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select, text  # noqa: E402

from core.billers.sandbox.store import seed_generated  # noqa: E402
from core.db import Database, upgrade  # noqa: E402
from core.models import SandboxInvoice  # noqa: E402


async def run(url: str, accounts: int) -> None:
    db = Database(url)
    if db.dialect == "postgresql":  # start from empty sandbox tables
        async with db.engine.begin() as conn:
            await conn.execute(text("TRUNCATE sandbox_invoices, sandbox_accounts RESTART IDENTITY CASCADE"))
    started = time.perf_counter()
    added = await seed_generated(db, accounts, seed=2017)
    seconds = time.perf_counter() - started
    async with db.session() as session:
        invoices = await session.scalar(select(func.count()).select_from(SandboxInvoice))
    await db.dispose()
    print(f"{db.dialect}: {added:,} accounts, {invoices:,} invoices in {seconds:.1f} s "
          f"({added / seconds:,.0f} accounts/s)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{tmp}/bench.db"
        upgrade(url)
        asyncio.run(run(url, args.accounts))


if __name__ == "__main__":
    main()
