"""Time and peak memory to export N invoices (issue 8: 10,000) as .xlsx and as PDF.

    .venv/bin/python bench/exports.py [--invoices 10000] [--language fr]

Rows are generated one at a time and the writers stream, so the peak memory printed (tracemalloc,
Python allocations) is what the writer itself holds.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.i18n import translator  # noqa: E402
from core.reports.exports import write_pdf, write_xlsx  # noqa: E402


def rows(count: int):  # noqa: ANN201 - a generator of invoice-like rows
    start = date(2024, 1, 1)
    for i in range(count):
        ht = Decimal(100 + i % 900) + Decimal(i % 100) / 100
        tva = (ht * Decimal("0.20")).quantize(Decimal("0.01"))
        yield SimpleNamespace(number=f"{i:016d}", issuer=("MAROC TELECOM", "PORTNET", "ANP")[i % 3],
                              customer_number="156677143760", call_number="212623363444",
                              billing_period=f"{(i % 12) + 1:02d}/2024", invoice_date=start + timedelta(days=i % 365),
                              due_date=start + timedelta(days=i % 365 + 22), amount_ht=ht, amount_tva=tva,
                              amount_ttc=ht + tva, status=("unpaid", "paid")[i % 2])


def measure(name: str, write, count: int, language: str) -> None:  # noqa: ANN001
    t = translator(language)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"export.{name}"
        tracemalloc.start()
        started = time.perf_counter()
        written = write(t, rows(count), path, "Invoices")
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"{name:>4}: {written:,} invoices in {seconds:.1f} s, peak {peak / 2**20:.1f} MiB, "
              f"file {path.stat().st_size / 2**20:.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--invoices", type=int, default=10_000)
    parser.add_argument("--language", default="fr")
    args = parser.parse_args()
    measure("xlsx", write_xlsx, args.invoices, args.language)
    measure("pdf", write_pdf, args.invoices, args.language)


if __name__ == "__main__":
    main()
