"""The outbox: messages to deliver to a chat, written in the same transaction as what caused them,
delivered by workers that claim due rows (SKIP LOCKED on PostgreSQL) and retry with backoff.

Payload of a chat message (`channel` = the chat's channel, `chat_id` = its chat), JSON:

    {
      "text": str,                      # already translated into the user's language
      "rtl": bool,                      # optional: the text reads right-to-left (ar)
      "language": "fr" | "ar" | "en",   # optional: the language it was written in
      "buttons": [[{"label": str, "data": str} | {"label": str, "url": str}, ...], ...],  # optional rows
      "document": {"kind": "receipt", "payment_id": int, "language": str, "filename": str}  # optional
                | {"kind": "invoice", "link_id": int, "number": str, "language": str, "filename": str, "caption": str},
      "params": {name: str}             # new kinds: the plain values a WhatsApp template needs
    }

A document is not stored in the row: it is rendered when delivered (a receipt from its payment
id). `bot.conversation.outbox_replies.payload_to_replies(payload, db)` turns a payload into the
conversation's Text / Document replies, so each channel sender reuses its reply renderer.

Kinds written so far: "payment_paid", "payment_declined", "payment_mismatch", "payment_held"
(core.services.confirmations); "agent_reply" (core.services.handoff: what a support agent says,
params {agent, text}; rating buttons "Tr|<ticket>|<1-5>", payment button "$|<link_id>").
Channel "support" (chat_id "ticket-<id>"): the support agents' Telegram topics, see handoff. Button data "Pc|<checkout_id>" (retry with the same channel) and
"Pn|<checkout_id>" (choose another channel) are routed by the conversation.

Channel "biller" (chat_id = the biller code), kind "biller_notice": a paid notice for a biller
connector, payload {"biller", "account_ref", "invoice_numbers", "transaction_id", "amount" ("123.45"),
"paid_at" (ISO 8601), "channel", "checkout_id"}; delivered by
`core.services.confirmations.biller_notice_sender(billers)` registered as the worker's "biller" sender.

Kinds written by the push (core.services.notifications): "invoice_new" (an invoice the biller just
issued; buttons "P|<link_id>|<number>" PDF and "$|<link_id>|#<number>" pay) and "invoice_reminder" (due in N
days). Their payload also holds "params" (the WhatsApp template values, formatted for the user's
locale: issuer, number, amount, due_date) and "invoice": {"biller", "account_ref", "number"} so the
worker checks at send time that a reminder's invoice is still unpaid.

Statuses: queued -> sending (claimed by one worker) -> delivered | dead (refused for good, or out of
attempts; `last_error` says why) | skipped (no longer worth sending: the invoice was paid, the chat
turned the notification off). `batch` groups one announcement's rows for `fatoura outbox status`.

Delivery guarantee: at least once, and at most once for every message the platform had not
accepted yet. A worker marks each message delivered right after the platform's answer (marks that
finish while one is being written go together in the next statement: a group commit, no timer); a worker
killed between that answer and the mark leaves the row `sending`, and another worker takes it back
once `OUTBOX_CLAIM_TIMEOUT` has passed and sends it again. Only those rows -- at most
`WORKER_CONCURRENCY` per killed worker -- can reach the chat twice: no chat API offers a way to ask
whether a message went through.
"""
from __future__ import annotations

import asyncio
import os
import socket
import weakref
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import Database
from core.models import ChatUser, OutboxMessage, utcnow

MAX_ATTEMPTS = 8
CLAIM_TIMEOUT = timedelta(minutes=5)  # a claim older than this belonged to a worker that died
QUEUED, SENDING, DELIVERED, DEAD, SKIPPED = "queued", "sending", "delivered", "dead", "skipped"


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def enqueue(session: AsyncSession, *, channel: str, chat_id: str, kind: str, payload: dict[str, Any],
            dedupe_key: str | None = None) -> OutboxMessage:
    """Add a message in the caller's transaction (the caller makes sure `dedupe_key` is new)."""
    message = OutboxMessage(channel=channel, chat_id=chat_id, kind=kind, payload=payload, dedupe_key=dedupe_key)
    session.add(message)
    return message


async def enqueue_once(session: AsyncSession, *, channel: str, chat_id: str, kind: str, payload: dict[str, Any],
                       dedupe_key: str, next_attempt_at: datetime | None = None, batch: str | None = None) -> bool:
    """Add a message unless one with `dedupe_key` exists (committed or not, from any process);
    True when this call added it. INSERT ... ON CONFLICT DO NOTHING on SQLite and PostgreSQL."""
    dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
    now = utcnow()
    statement = dialect.insert(OutboxMessage).values(
        channel=channel, chat_id=chat_id, kind=kind, payload=payload, dedupe_key=dedupe_key, status=QUEUED,
        attempts=0, next_attempt_at=next_attempt_at or now, created_at=now, batch=batch,
    ).on_conflict_do_nothing(index_elements=["dedupe_key"])
    return (await session.execute(statement)).rowcount == 1


@dataclass(frozen=True)
class Claimed:
    id: int
    channel: str
    chat_id: str
    kind: str
    payload: dict[str, Any]
    attempts: int


class PermanentFailure(Exception):
    """The platform refused for good (the chat blocked the bot, the chat is gone): no retry."""


class ChatUnreachable(PermanentFailure):
    """The chat blocked the bot or no longer exists: the chat is marked blocked and not sent to."""


class RetryLater(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _claimed(row: OutboxMessage) -> Claimed:
    return Claimed(row.id, row.channel, row.chat_id, row.kind, dict(row.payload or {}), row.attempts)


async def claim_due(db: Database, worker: str, limit: int = 20, now: datetime | None = None,
                    channels: list[str] | None = None, claim_timeout: timedelta = CLAIM_TIMEOUT,
                    chat_ids: Collection[str] | None = None) -> list[Claimed]:
    """Claim due messages, only of `channels` when given (a worker claims what it can send), and
    only for `chat_ids` when given (a web process claims what its open pages can show).
    Claims older than `claim_timeout` (their worker died) are taken back first."""
    if chat_ids is not None and not chat_ids:
        return []
    now = now or utcnow()
    wheres = [(OutboxMessage.status == SENDING, OutboxMessage.claimed_at < now - claim_timeout),
              (OutboxMessage.status == QUEUED, OutboxMessage.next_attempt_at <= now)]
    claimed: list[Claimed] = []
    async with db.transaction() as session:
        for where in wheres:
            if len(claimed) >= limit:
                break
            query = select(OutboxMessage.id).where(*where).order_by(OutboxMessage.next_attempt_at)
            if channels is not None:
                query = query.where(OutboxMessage.channel.in_(channels))
            if chat_ids is not None:
                query = query.where(OutboxMessage.chat_id.in_(list(chat_ids)))
            query = query.limit(limit - len(claimed))
            if db.dialect == "postgresql":
                claimed += await _claim_postgresql(session, query, worker, now)
            else:
                claimed += await _claim_sqlite(session, query, worker, now)
    return claimed


async def _claim_postgresql(session: AsyncSession, due, worker: str, now: datetime) -> list[Claimed]:  # noqa: ANN001
    # One statement: lock the due rows other workers have not locked, mark them, return them.
    rows = await session.execute(
        update(OutboxMessage).where(OutboxMessage.id.in_(due.with_for_update(skip_locked=True).scalar_subquery()))
        .values(status=SENDING, claimed_by=worker, claimed_at=now)
        .returning(OutboxMessage.id, OutboxMessage.channel, OutboxMessage.chat_id, OutboxMessage.kind,
                   OutboxMessage.payload, OutboxMessage.attempts))
    return sorted((Claimed(r.id, r.channel, r.chat_id, r.kind, dict(r.payload or {}), r.attempts) for r in rows),
                  key=lambda c: c.id)


async def _claim_sqlite(session: AsyncSession, due, worker: str, now: datetime) -> list[Claimed]:  # noqa: ANN001
    # SQLite has one writer at a time; the conditional update still refuses a row taken meanwhile.
    claimed = []
    for row in (await session.scalars(select(OutboxMessage).where(OutboxMessage.id.in_(due.scalar_subquery()))
                                      .order_by(OutboxMessage.next_attempt_at))).all():
        result = await session.execute(update(OutboxMessage).where(
            OutboxMessage.id == row.id, OutboxMessage.status == row.status,
            OutboxMessage.attempts == row.attempts).values(status=SENDING, claimed_by=worker, claimed_at=now))
        if result.rowcount == 1:
            claimed.append(_claimed(row))
    return claimed


_autocommit: "weakref.WeakKeyDictionary[Database, Any]" = weakref.WeakKeyDictionary()

# --- Waking idle workers: PostgreSQL NOTIFY across processes, an event within one process ---------

WAKE_CHANNEL = "fatoura_outbox"
_local_listeners: "weakref.WeakSet[asyncio.Event]" = weakref.WeakSet()


def _autocommit_engine(db: Database) -> Any:
    engine = _autocommit.get(db)
    if engine is None:
        engine = _autocommit[db] = db.engine.execution_options(isolation_level="AUTOCOMMIT")
    return engine


async def wake(db: Database) -> None:
    """Tell idle workers that messages are due now (call it after the commit that queued them),
    so a new invoice goes out without waiting for the next look at the outbox."""
    for event in list(_local_listeners):
        event.set()
    if db.dialect == "postgresql":
        async with _autocommit_engine(db).connect() as conn:
            await conn.execute(select(func.pg_notify(WAKE_CHANNEL, "")))


class Listener:
    """What an idle worker waits on: `event` is set by `wake` (from any process on PostgreSQL)."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self._conn: Any = None
        self._driver: Any = None

    async def start(self, db: Database) -> "Listener":
        _local_listeners.add(self.event)
        if db.dialect == "postgresql":
            try:
                self._conn = await db.engine.connect()
                self._driver = (await self._conn.get_raw_connection()).driver_connection
                await self._driver.add_listener(WAKE_CHANNEL, self._notified)
            except Exception:  # noqa: BLE001 - without LISTEN the worker still polls
                await self.close()
        return self

    def _notified(self, *args: Any) -> None:
        self.event.set()

    async def close(self) -> None:
        _local_listeners.discard(self.event)
        if self._conn is not None:
            try:
                if self._driver is not None:
                    await self._driver.remove_listener(WAKE_CHANNEL, self._notified)
            finally:
                await self._conn.close()
                self._conn = self._driver = None


async def mark_delivered(db: Database, message_id: int, provider_message_id: str | None = None) -> None:
    await mark_delivered_many(db, [(message_id, provider_message_id)])


async def mark_delivered_many(db: Database, delivered: list[tuple[int, str | None]]) -> None:
    """Mark sent messages delivered: one autocommitted statement (no BEGIN/COMMIT round trips)
    for the lot; it runs right after the platform's answers, so a crash can re-send as little as
    possible."""
    engine = _autocommit_engine(db)
    now = utcnow()
    statement = update(OutboxMessage).where(OutboxMessage.id == bindparam("message_id")).values(
        status=DELIVERED, delivered_at=now, provider_message_id=bindparam("provider_id"), last_error=None,
        claimed_by=None)
    async with engine.connect() as conn:
        await conn.execute(statement, [{"message_id": m, "provider_id": p} for m, p in delivered])


async def mark_failed(db: Database, message_id: int, error: str, *, permanent: bool = False,
                      retry_after: float | None = None, max_attempts: int = MAX_ATTEMPTS) -> None:
    """Retry later with exponential backoff (or the platform's retry_after); dead after `max_attempts`."""
    async with db.transaction() as session:
        row = await session.get(OutboxMessage, message_id)
        if row is None or row.status != SENDING:  # ended meanwhile (its chat blocked the bot)
            return
        row.attempts += 1
        row.last_error = error[:500]
        row.claimed_by = row.claimed_at = None
        if permanent or row.attempts >= max_attempts:
            row.status = DEAD
            return
        delay = retry_after if retry_after is not None else min(3600, 5 * 2 ** row.attempts)
        row.status = QUEUED
        row.next_attempt_at = utcnow() + timedelta(seconds=delay)


async def defer(db: Database, message_id: int, until: datetime, reason: str | None = None) -> None:
    """Put a claimed message back, untried (a rate limit said "later"): no attempt is counted."""
    async with db.transaction() as session:
        await session.execute(update(OutboxMessage).where(OutboxMessage.id == message_id,
                                                          OutboxMessage.status == SENDING).values(
            status=QUEUED, next_attempt_at=until, claimed_by=None, claimed_at=None,
            **({"last_error": reason[:500]} if reason else {})))


async def mark_skipped(db: Database, message_id: int, reason: str) -> None:
    async with db.transaction() as session:
        await session.execute(update(OutboxMessage).where(OutboxMessage.id == message_id).values(
            status=SKIPPED, last_error=reason[:500], claimed_by=None, claimed_at=None))


async def mark_unreachable(db: Database, message_id: int, channel: str, chat_id: str, reason: str) -> int:
    """The chat blocked the bot: the message and every other one queued or in flight for that chat
    are dead, and the chat user is marked blocked (no push until the customer writes again).
    Returns the rows ended."""
    now = utcnow()
    async with db.transaction() as session:
        await session.execute(update(ChatUser).where(ChatUser.channel == channel, ChatUser.chat_id == chat_id,
                                                     ChatUser.blocked_at.is_(None)).values(blocked_at=now))
        result = await session.execute(update(OutboxMessage).where(
            OutboxMessage.channel == channel, OutboxMessage.chat_id == chat_id,
            (OutboxMessage.id == message_id) | OutboxMessage.status.in_([QUEUED, SENDING]),
        ).values(status=DEAD, last_error=reason[:500], claimed_by=None, claimed_at=None))
    return result.rowcount
