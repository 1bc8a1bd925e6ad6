"""Push: new invoices announced to every chat linked to the account, and due-date reminders.

Where new invoices come from: a signed biller event (core.services.biller_events) names one
invoice; the periodic sync (`sync_round`, run by `fatoura worker`) lists each linked account's
unpaid invoices and announces those issued since the chat linked the account. Both queue through
the outbox with a dedupe key per chat and invoice, so one invoice is announced once per chat
however many events or syncs report it.

Reminders: REMINDER_DAYS before the due date (3 and 1 by default), for unpaid invoices only (the
worker checks again just before sending: `unwanted`). A reminder is never sent between the
quiet hours (QUIET_HOURS, 21:00-08:00 Africa/Casablanca): it is queued for the end of them, and the worker
holds one that comes up at night anyway (`quiet_hold`).
A sync that missed a reminder day sends the nearest one due, never one per missed day.

Preferences: a chat (ChatUser) and each of its accounts (LinkedAccount) can turn new invoices
and reminders off; a chat that blocked the bot (`blocked_at`) gets nothing until it writes again.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select

from core.billers.base import BillerInvoice, InvoiceFilter
from core.billers.registry import BillerRegistry
from core.config import Settings
from core.db import Database
from core.i18n import TIMEZONE, Translator, translator
from core.models import ChatUser, LinkedAccount, utcnow
from core.services import outbox

log = logging.getLogger("fatoura.push")

INVOICE_NEW = "invoice_new"
INVOICE_REMINDER = "invoice_reminder"
PDF, PAY = "P", "$"  # the conversation's callbacks (bot.conversation.callbacks.PDF / PAY)
SYNC_CONCURRENCY = 8  # accounts listed at once during a sync
_SYNC_PAGE = 100


# --- Quiet hours ----------------------------------------------------------------------------


@dataclass(frozen=True)
class QuietHours:
    """A nightly window in Morocco's time, e.g. 21:00-08:00 (it may cross midnight)."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> "QuietHours":
        try:
            start, end = (datetime.strptime(part.strip(), "%H:%M").time() for part in text.split("-"))
        except ValueError:
            raise ValueError(f"QUIET_HOURS must look like 21:00-08:00, got {text!r}") from None
        return cls(start, end)

    def contains(self, moment: time) -> bool:
        if self.start <= self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end

    def next_allowed(self, now: datetime) -> datetime:
        """`now` when outside the quiet hours, else the moment they end (UTC)."""
        local = now.astimezone(TIMEZONE)
        if self.start == self.end or not self.contains(local.time()):
            return now
        day = local.date() if local.time() < self.end else local.date() + timedelta(days=1)
        return datetime.combine(day, self.end, tzinfo=TIMEZONE).astimezone(now.tzinfo)


# --- Texts ----------------------------------------------------------------------------------


def _params(t: Translator, invoice: BillerInvoice) -> dict[str, str]:
    return {"issuer": invoice.issuer, "number": invoice.number, "amount": t.amount(invoice.amount_ttc),
            "due_date": t.date(invoice.due_date)}


def _buttons(t: Translator, link: LinkedAccount, invoice: BillerInvoice) -> list[list[dict[str, str]]]:
    return [[{"label": t._("See the PDF"), "data": f"{PDF}|{link.id}|{invoice.number}"},
             {"label": t._("Pay"), "data": f"{PAY}|{link.id}|#{invoice.number}"}]]


def new_invoice_text(t: Translator, invoice: BillerInvoice) -> str:
    p = _params(t, invoice)
    return "\n".join([
        t._("New invoice from {issuer}", issuer=p["issuer"]),
        t._("Invoice No. {number}", number=p["number"]),
        t._("Amount due (TTC): {amount}", amount=p["amount"]),
        t._("Due date: {due_date}", due_date=p["due_date"]),
    ])


def reminder_text(t: Translator, invoice: BillerInvoice, days_left: int) -> str:
    p = _params(t, invoice)
    if days_left <= 0:
        head = t._("Reminder: your {issuer} invoice is due today.", issuer=p["issuer"])
    else:
        head = t.ngettext("Reminder: your {issuer} invoice is due in {n} day.",
                          "Reminder: your {issuer} invoice is due in {n} days.", days_left, issuer=p["issuer"])
    return "\n".join([
        head,
        t._("Invoice No. {number}", number=p["number"]),
        t._("Amount due (TTC): {amount}", amount=p["amount"]),
        t._("Due date: {due_date}", due_date=p["due_date"]),
    ])


def _payload(t: Translator, link: LinkedAccount, invoice: BillerInvoice, text: str, **extra: Any) -> dict[str, Any]:
    return {"text": text, "rtl": t.rtl, "language": t.language, "buttons": _buttons(t, link, invoice),
            "params": _params(t, invoice), "link_id": link.id,
            "invoice": {"biller": link.biller, "account_ref": link.account_ref, "number": invoice.number}, **extra}


def dedupe_key(kind: str, user_id: int, biller: str, account_ref: str, number: str) -> str:
    """Short and fixed-length whatever the account ref: `new:<user>:<digest>`, `rem3:<user>:<digest>`."""
    digest = hashlib.sha256(f"{biller}\x1f{account_ref}\x1f{number}".encode()).hexdigest()[:32]
    return f"{kind}:{user_id}:{digest}"


# --- Who hears about an account -------------------------------------------------------------


async def _listeners(session, biller: str, account_ref: str) -> list[tuple[LinkedAccount, ChatUser]]:  # noqa: ANN001
    rows = await session.execute(
        select(LinkedAccount, ChatUser).join(ChatUser, ChatUser.id == LinkedAccount.user_id)
        .where(LinkedAccount.biller == biller, LinkedAccount.account_ref == account_ref)
        .order_by(LinkedAccount.id))
    return [(link, user) for link, user in rows.all()]


def _wants_new(link: LinkedAccount, user: ChatUser) -> bool:
    return user.blocked_at is None and user.notify_new_invoices and link.notify_new_invoices


def _wants_reminders(link: LinkedAccount, user: ChatUser) -> bool:
    return user.blocked_at is None and user.notify_reminders and link.notify_reminders


async def _audience(session, biller: str, account_ref: str, wants) -> list[tuple[LinkedAccount, ChatUser, Translator]]:  # noqa: ANN001
    """The chats linked to the account that want this kind of message, each with its translator."""
    return [(link, user, translator(user.locale)) for link, user in await _listeners(session, biller, account_ref)
            if wants(link, user)]


def _linked_on(link: LinkedAccount) -> date:
    return link.verified_at.astimezone(TIMEZONE).date()


async def announce(db: Database, biller: str, account_ref: str, invoices: Iterable[BillerInvoice], *,
                   since_link: bool = False, batch: str | None = None) -> int:
    """Queue "new invoice" messages to every chat linked to the account that wants them; returns
    how many were queued now (an invoice already announced to a chat is not queued again).
    `since_link`: only invoices issued on or after the day the chat linked the account (a sync
    must not announce what the customer saw when linking)."""
    invoices = [i for i in invoices if i.status == "unpaid"]
    if not invoices:
        return 0
    queued = 0
    async with db.transaction() as session:
        for link, user, t in await _audience(session, biller, account_ref, _wants_new):
            for invoice in invoices:
                if since_link and invoice.invoice_date < _linked_on(link):
                    continue
                queued += await outbox.enqueue_once(
                    session, channel=user.channel, chat_id=user.chat_id, kind=INVOICE_NEW,
                    payload=_payload(t, link, invoice, new_invoice_text(t, invoice)),
                    dedupe_key=dedupe_key("new", user.id, biller, account_ref, invoice.number), batch=batch)
    if queued:
        await outbox.wake(db)
    return queued


def reminder_due(due_date: date, today: date, offsets: Sequence[int]) -> int | None:
    """The reminder offset (days before the due date) to send today, or None. With offsets (3, 1):
    3 days left -> 3, 2 days left -> 3 (late but not missed), 1 or 0 days left -> 1, overdue -> None."""
    days_left = (due_date - today).days
    if days_left < 0:
        return None
    candidates = [d for d in offsets if d >= days_left]
    return min(candidates) if candidates else None


async def remind(db: Database, biller: str, account_ref: str, invoices: Iterable[BillerInvoice], *,
                 now: datetime, offsets: Sequence[int], quiet: QuietHours, batch: str | None = None) -> int:
    """Queue the reminders due today for these invoices (unpaid ones), each once per chat and
    offset, after the quiet hours. Returns how many were queued now."""
    send_at = quiet.next_allowed(now)
    # Counted from the day it goes out: one queued at 22:30 for the morning says the days left then.
    today = send_at.astimezone(TIMEZONE).date()
    due = [(i, d) for i in invoices if i.status == "unpaid" and (d := reminder_due(i.due_date, today, offsets)) is not None]
    if not due:
        return 0
    queued = 0
    async with db.transaction() as session:
        for link, user, t in await _audience(session, biller, account_ref, _wants_reminders):
            for invoice, offset in due:
                days_left = (invoice.due_date - today).days
                queued += await outbox.enqueue_once(
                    session, channel=user.channel, chat_id=user.chat_id, kind=INVOICE_REMINDER,
                    payload=_payload(t, link, invoice, reminder_text(t, invoice, days_left), days_before=offset),
                    dedupe_key=dedupe_key(f"rem{offset}", user.id, biller, account_ref, invoice.number),
                    next_attempt_at=send_at, batch=batch)
    return queued


# --- The periodic sync ----------------------------------------------------------------------


async def _unpaid(billers: BillerRegistry, biller: str, account_ref: str) -> list[BillerInvoice]:
    connector = billers.get(biller)
    first = await connector.list_invoices(account_ref, InvoiceFilter(status="unpaid", page_size=_SYNC_PAGE))
    items = list(first.items)
    for page in range(2, min(first.pages, 5) + 1):
        items += (await connector.list_invoices(account_ref, InvoiceFilter(status="unpaid", page=page,
                                                                           page_size=_SYNC_PAGE))).items
    return items


@dataclass
class SyncReport:
    accounts: int = 0
    announced: int = 0
    reminders: int = 0
    failed: int = 0


async def sync_accounts(db: Database, billers: BillerRegistry, *, now: datetime | None = None,
                        offsets: Sequence[int] = (3, 1), quiet: QuietHours = QuietHours(time(21), time(8))) -> SyncReport:
    """List every linked account's unpaid invoices once; announce the new ones, queue the reminders."""
    now = now or utcnow()
    async with db.session() as session:
        accounts = (await session.execute(select(LinkedAccount.biller, LinkedAccount.account_ref).distinct())).all()
    report = SyncReport(accounts=len(accounts))
    gate = asyncio.Semaphore(SYNC_CONCURRENCY)
    stamp = f"{now.astimezone(TIMEZONE):%Y-%m-%d %H:%M}"  # one sync's messages, for `fatoura outbox status`

    async def one(biller: str, account_ref: str) -> None:
        async with gate:
            try:
                invoices = await _unpaid(billers, biller, account_ref)
            except Exception as error:  # noqa: BLE001 - one biller down must not stop the others
                log.warning("push sync: %s %s: %s", biller, account_ref[:8], type(error).__name__)
                report.failed += 1
                return
            report.announced += await announce(db, biller, account_ref, invoices, since_link=True,
                                               batch=f"sync {stamp}: new invoices")
            report.reminders += await remind(db, biller, account_ref, invoices, now=now, offsets=offsets, quiet=quiet,
                                             batch=f"sync {stamp}: reminders")

    await asyncio.gather(*(one(biller, ref) for biller, ref in accounts))
    return report


async def sync_round(settings: Settings, db: Database, state, billers: BillerRegistry,  # noqa: ANN001
                     now: datetime | None = None) -> SyncReport | None:
    """One sync per PUSH_SYNC_MINUTES across all workers: the worker that books the period runs it."""
    now = now or utcnow()
    period = max(60.0, settings.push_sync_minutes * 60)
    slot = int(now.timestamp() // period)
    if not await state.add_once(f"push:sync:{slot}", ttl=period * 2):
        return None
    report = await sync_accounts(db, billers, now=now, offsets=settings.reminder_offsets,
                                 quiet=QuietHours.parse(settings.quiet_hours))
    log.info("push sync: %s accounts, %s new invoices, %s reminders queued, %s failed",
             report.accounts, report.announced, report.reminders, report.failed)
    return report


# --- The worker's last look -----------------------------------------------------------------


async def unwanted(db: Database, billers: BillerRegistry, messages: Sequence[outbox.Claimed]) -> dict[int, str]:
    """Why each push message among `messages` should not go any more (absent: send it): the chat
    is gone, blocked or turned this notification off, or a reminder's invoice is no longer
    unpaid. One query for the whole batch, plus one biller look-up per reminder."""
    push = [m for m in messages if m.kind in (INVOICE_NEW, INVOICE_REMINDER)]
    if not push:
        return {}
    link_ids = {int(m.payload.get("link_id") or 0) for m in push}
    async with db.session() as session:
        rows = (await session.execute(
            select(LinkedAccount, ChatUser).join(ChatUser, ChatUser.id == LinkedAccount.user_id)
            .where(LinkedAccount.id.in_(link_ids)))).all()
    found = {link.id: (link, user) for link, user in rows}
    reasons: dict[int, str] = {}
    for message in push:
        link, user = found.get(int(message.payload.get("link_id") or 0), (None, None))
        if link is None or (user.channel, user.chat_id) != (message.channel, message.chat_id):
            reasons[message.id] = "the chat or the account is no longer linked"
        elif user.blocked_at is not None:
            reasons[message.id] = "the chat blocked the bot"
        elif not (_wants_new if message.kind == INVOICE_NEW else _wants_reminders)(link, user):
            reasons[message.id] = "the chat turned this notification off"
        elif message.kind == INVOICE_REMINDER and (status := await _invoice_status(billers, message)) != "unpaid":
            if status is not None:
                reasons[message.id] = f"the invoice is {status}"
    return reasons


async def _invoice_status(billers: BillerRegistry, message: outbox.Claimed) -> str | None:
    ref = message.payload.get("invoice") or {}
    try:
        page = await billers.get(ref["biller"]).list_invoices(
            ref["account_ref"], InvoiceFilter(status=None, number=ref["number"]))
    except Exception as error:  # noqa: BLE001 - biller down: a reminder too many beats one missed
        log.info("reminder %s: status unknown (%s); sending", message.id, type(error).__name__)
        return None
    return page.items[0].status if page.items else None


def quiet_hold(quiet: QuietHours, clock=utcnow):  # noqa: ANN001, ANN201 - the worker's Hold
    """For the worker: a reminder that comes up during the quiet hours (a queue that was long,
    a retry) waits for their end instead of going out at night."""
    def hold(message: outbox.Claimed) -> datetime | None:
        if message.kind != INVOICE_REMINDER:
            return None
        now = clock()
        later = quiet.next_allowed(now)
        return later if later > now else None

    return hold


async def still_wanted(db: Database, billers: BillerRegistry, message: outbox.Claimed) -> str | None:
    """`unwanted` for one message: the reason not to send it, or None."""
    return (await unwanted(db, billers, [message])).get(message.id)
