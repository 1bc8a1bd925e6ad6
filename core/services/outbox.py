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
"""
from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import Database
from core.models import OutboxMessage, utcnow

MAX_ATTEMPTS = 8
CLAIM_TIMEOUT = timedelta(minutes=5)  # a claim older than this belonged to a worker that died


def worker_id() -> str:
    import os

    return f"{socket.gethostname()}:{os.getpid()}"


def enqueue(session: AsyncSession, *, channel: str, chat_id: str, kind: str, payload: dict[str, Any],
            dedupe_key: str | None = None) -> OutboxMessage:
    """Add a message in the caller's transaction; `dedupe_key` makes a second enqueue a no-op."""
    message = OutboxMessage(channel=channel, chat_id=chat_id, kind=kind, payload=payload, dedupe_key=dedupe_key)
    session.add(message)
    return message


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


class RetryLater(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


async def claim_due(db: Database, worker: str, limit: int = 20, now: datetime | None = None,
                    channels: list[str] | None = None) -> list[Claimed]:
    """Claim due messages, only of `channels` when given (a worker claims what it can send)."""
    now = now or utcnow()
    async with db.transaction() as session:
        conditions = [or_(OutboxMessage.status == "queued",
                          (OutboxMessage.status == "sending") & (OutboxMessage.claimed_at < now - CLAIM_TIMEOUT)),
                      OutboxMessage.next_attempt_at <= now]
        if channels is not None:
            conditions.append(OutboxMessage.channel.in_(channels))
        query = (select(OutboxMessage)
                 .where(*conditions)
                 .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id).limit(limit))
        if db.dialect == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = (await session.scalars(query)).all()
        claimed = []
        for row in rows:
            if db.dialect != "postgresql":
                # SQLite has one writer at a time; the conditional update still refuses a row taken meanwhile.
                result = await session.execute(update(OutboxMessage).where(
                    OutboxMessage.id == row.id, OutboxMessage.status == row.status,
                    OutboxMessage.attempts == row.attempts).values(status="sending", claimed_by=worker, claimed_at=now))
                if result.rowcount != 1:
                    continue
            else:
                row.status, row.claimed_by, row.claimed_at = "sending", worker, now
            claimed.append(Claimed(row.id, row.channel, row.chat_id, row.kind, dict(row.payload or {}), row.attempts))
    return claimed


async def mark_delivered(db: Database, message_id: int, provider_message_id: str | None = None) -> None:
    async with db.transaction() as session:
        await session.execute(update(OutboxMessage).where(OutboxMessage.id == message_id).values(
            status="delivered", delivered_at=utcnow(), provider_message_id=provider_message_id, last_error=None))


async def mark_failed(db: Database, message_id: int, error: str, *, permanent: bool = False,
                      retry_after: float | None = None) -> None:
    """Retry later with exponential backoff (or the platform's retry_after); dead after MAX_ATTEMPTS."""
    async with db.transaction() as session:
        row = await session.get(OutboxMessage, message_id)
        if row is None:
            return
        row.attempts += 1
        row.last_error = error[:500]
        row.claimed_by = row.claimed_at = None
        if permanent or row.attempts >= MAX_ATTEMPTS:
            row.status = "dead"
            return
        delay = retry_after if retry_after is not None else min(3600, 5 * 2 ** row.attempts)
        row.status = "queued"
        row.next_attempt_at = utcnow() + timedelta(seconds=delay)
