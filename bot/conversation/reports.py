"""Reports in the chat: the spending chart, exports of the invoice table, a year's PDFs as a ZIP."""
from __future__ import annotations

import asyncio
import tempfile
from datetime import date
from typing import TYPE_CHECKING

from bot.conversation import callbacks as cb
from bot.conversation import views
from bot.conversation.replies import Button, Document, Image
from core.reports.archive import zip_pdfs
from core.reports.exports import write_pdf, write_xlsx
from core.reports.spending import monthly, render_chart, summary
from core.services import invoices as invoice_service
from core.services.linking import get_link, list_links

if TYPE_CHECKING:
    from bot.conversation.engine import Conversation, Turn

MIME_XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


async def _links(conv: "Conversation", turn: "Turn", link_id: int) -> list:
    if link_id:
        link = await get_link(conv.db, turn.user.id, link_id)
        return [link] if link else []
    return await list_links(conv.db, turn.user.id)


async def _rows(conv: "Conversation", links: list) -> list[invoice_service.Listed]:
    page = await invoice_service.list_invoices(conv.billers, links, invoice_service.Filters(status=None),
                                               page=1, page_size=10_000)
    return list(page.items)


def _scope_name(turn: "Turn", links: list) -> str:
    return views.account_name(turn.t, links[0]) if len(links) == 1 else turn.t._("All my accounts")


async def menu(conv: "Conversation", turn: "Turn", args: list[str]) -> None:
    t, link_id = turn.t, _int(args)
    links = await _links(conv, turn, link_id)
    if not links:
        return await conv._stale(turn)
    year = conv.today().year
    turn.say(views.text(t, t._("Reports for {scope}", scope=_scope_name(turn, links)),
                        [Button(t._("Spending, 6 months"), cb.pack(cb.CHART, link_id, 6)),
                         Button(t._("12 months"), cb.pack(cb.CHART, link_id, 12))],
                        [Button(t._("Excel, last 12 months"), cb.pack(cb.EXPORT, link_id, "xlsx", "12m")),
                         Button(t._("PDF, last 12 months"), cb.pack(cb.EXPORT, link_id, "pdf", "12m"))],
                        [Button(t._("Excel {year}", year=y), cb.pack(cb.EXPORT, link_id, "xlsx", y)) for y in (year, year - 1)],
                        [Button(t._("All PDFs of {year} (ZIP)", year=y), cb.pack(cb.ARCHIVE, link_id, y))
                         for y in (year, year - 1)],
                        [views.menu_button(t)]))


async def chart(conv: "Conversation", turn: "Turn", args: list[str]) -> None:
    t = turn.t
    links = await _links(conv, turn, _int(args))
    months = _int(args[1:]) if len(args) > 1 else 6
    if not links or months not in (6, 12):
        return await conv._stale(turn)
    spending = monthly([row.invoice for row in await _rows(conv, links)], months)
    text = summary(t, spending)
    if spending.periods:
        turn.say(Image(render_chart(t, spending, _scope_name(turn, links)), filename="spending.png",
                       caption=t._("Amounts billed per month (HT)")))
    turn.say(views.text(t, text, [Button(t._("Reports"), cb.pack(cb.REPORTS, _int(args))), views.menu_button(t)]))


def _in_period(invoice, period: str, today: date) -> bool:  # noqa: ANN001
    if period == "12m":
        start = date(today.year - 1, today.month, 1)
        return invoice.invoice_date >= start
    return invoice.invoice_date.year == int(period)


async def export(conv: "Conversation", turn: "Turn", args: list[str]) -> None:
    t = turn.t
    links = await _links(conv, turn, _int(args))
    if not links or len(args) < 3 or args[1] not in ("xlsx", "pdf") or not (args[2] == "12m" or args[2].isdigit()):
        return await conv._stale(turn)
    fmt, period = args[1], args[2]
    rows = [row.invoice for row in await _rows(conv, links) if _in_period(row.invoice, period, conv.today())]
    rows.sort(key=lambda invoice: (invoice.invoice_date, invoice.number))
    turn.say(views.text(t, t.ngettext("Preparing the export of {n} invoice…", "Preparing the export of {n} invoices…",
                                      len(rows))))
    await turn.flush()
    if fmt == "xlsx":
        content = await _render(write_xlsx, t, rows, t._("Invoices"))
        turn.say(Document(f"factures-{period}.xlsx", content, MIME_XLSX))
    else:
        content = await _render(write_pdf, t, rows, t._("Invoices") + " · " + _scope_name(turn, links))
        turn.say(Document(f"factures-{period}.pdf", content))


async def _render(write, t, rows: list, title: str) -> bytes:  # noqa: ANN001 - write_xlsx / write_pdf
    """Write the export off the event loop (thousands of rows take seconds) into a spooled file,
    then read it once: the file is held in memory a single time, and on disk when large."""

    def run() -> bytes:
        with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as spool:
            write(t, rows, spool, title)
            spool.seek(0)
            return spool.read()

    return await asyncio.to_thread(run)


async def archive(conv: "Conversation", turn: "Turn", args: list[str]) -> None:
    t = turn.t
    links = await _links(conv, turn, _int(args))
    year = _int(args[1:]) if len(args) > 1 else 0
    if not links or year < 2000:
        return await conv._stale(turn)
    rows = [row for row in await _rows(conv, links) if row.invoice.invoice_date.year == year]
    turn.say(views.text(t, t.ngettext("Preparing {n} invoice PDF…", "Preparing {n} invoice PDFs…", len(rows))))
    if not rows:
        return
    await turn.flush()
    by_number = {row.invoice.number: row.link for row in rows}

    async def fetch(number: str) -> bytes:
        return await invoice_service.invoice_pdf(conv.billers, by_number[number], number, t.language)

    content = await zip_pdfs(((views.account_name(t, row.link), row.invoice.number) for row in rows), fetch)
    turn.say(Document(f"factures-{year}.zip", content, "application/zip", caption=t._(
        "Originals are kept 2 years by the billers: save these PDFs to keep them longer.")))


def _int(args: list[str]) -> int:
    try:
        return int(args[0]) if args else 0
    except ValueError:
        return -1
