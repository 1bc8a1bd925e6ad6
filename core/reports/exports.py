"""The invoice table as the portals show it (seed 000 and 002 columns), as .xlsx and as PDF.

Both stream: the workbook is written with openpyxl's write-only mode row by row into a file, and
the PDF table is drawn page by page, so thousands of invoices never sit in memory twice.
"""
from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import IO, Iterable, Protocol

from core.errors import N_
from core.i18n import Translator
from core.identifiers import display_phone

COLUMNS = (  # (msgid, attribute)
    (N_("Invoice No."), "number"),
    (N_("Issuer"), "issuer"),
    (N_("Customer number"), "customer_number"),
    (N_("Phone number"), "call_number"),
    (N_("Billing period"), "billing_period"),
    (N_("Invoice date"), "invoice_date"),
    (N_("Due date"), "due_date"),
    (N_("Amount excl. tax (HT)"), "amount_ht"),
    (N_("VAT (TVA)"), "amount_tva"),
    (N_("Total incl. tax (TTC)"), "amount_ttc"),
    (N_("Status"), "status"),
)
STATUS = {"unpaid": N_("Unpaid"), "paid": N_("Paid"), "pending": N_("Payment in progress"), "cancelled": N_("Cancelled")}


class Row(Protocol):
    number: str
    issuer: str
    invoice_date: date
    due_date: date
    amount_ht: Decimal
    amount_tva: Decimal
    amount_ttc: Decimal
    status: str


def _value(t: Translator, row: Row, attribute: str):  # noqa: ANN202 - a cell value
    value = getattr(row, attribute, None)
    if attribute == "status":
        return t._(STATUS.get(value, value)) if value else ""
    return value


def write_xlsx(t: Translator, rows: Iterable[Row], out: IO[bytes] | Path, title: str) -> int:
    """Typed cells: amounts are numbers (2 decimals), dates are dates. Returns the row count."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    book = Workbook(write_only=True)
    sheet = book.create_sheet(title=title[:31] or "Invoices")
    if t.rtl:
        sheet.sheet_view.rightToLeft = True
    bold = Font(bold=True)
    header = []
    for msgid, _ in COLUMNS:
        cell = WriteOnlyCell(sheet, value=t._(msgid))
        cell.font = bold
        header.append(cell)
    sheet.append(header)
    count = 0
    for row in rows:
        cells = []
        for _, attribute in COLUMNS:
            value = _value(t, row, attribute)
            if isinstance(value, Decimal):
                cell = WriteOnlyCell(sheet, value=float(value))  # xlsx stores IEEE doubles
                cell.number_format = "#,##0.00"
            elif isinstance(value, date):
                cell = WriteOnlyCell(sheet, value=value)
                cell.number_format = "DD/MM/YYYY"
            else:
                cell = WriteOnlyCell(sheet, value=value)
            cells.append(cell)
        sheet.append(cells)
        count += 1
    book.save(out)
    return count


def write_pdf(t: Translator, rows: Iterable[Row], out: IO[bytes] | Path, title: str) -> int:
    """The same table as a landscape PDF (fpdf2 + HarfBuzz, as the invoices), page by page."""
    from core.documents.invoice_pdf import _InvoicePage

    page = _InvoicePage(t, title)
    pdf = page.pdf
    pdf.add_page(orientation="L")
    widths = (34, 30, 26, 26, 18, 20, 20, 24, 20, 24, 25)  # mm, 267 of the 277 between margins
    shown = [i for i in range(len(COLUMNS))]

    labels = [t._(COLUMNS[i][0]) for i in shown]
    page._font(7, bold=True)
    header_height = max(page._height(widths[i] - 1, label, h=3.5) for i, label in zip(shown, labels)) + 2

    def header(y: float) -> float:
        page._font(7, bold=True)
        x = 10.0
        for i, label in zip(shown, labels):
            page._text(x, y, widths[i] - 1, label, h=3.5)
            x += widths[i]
        return y + header_height

    page._font(13, bold=True)
    page._text(10, 10, 270, title)
    y = header(22)
    count = 0
    for row in rows:
        if y > pdf.h - 15:
            pdf.add_page(orientation="L")
            y = header(10)
        page._font(8)
        x = 10.0
        for i in shown:
            value = _value(t, row, COLUMNS[i][1])
            amount = isinstance(value, Decimal)
            if amount:
                value = t.number(value)
            elif isinstance(value, date):
                value = t.date(value)
            elif COLUMNS[i][1] == "call_number" and value:
                value = display_phone(value)
            page._line(x, y, widths[i], "" if value is None else str(value), end=amount)
            x += widths[i]
        y += 6
        count += 1
    pdf.output(out)
    return count
