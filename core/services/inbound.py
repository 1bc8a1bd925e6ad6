"""Inbound webhooks of the chat platforms: the raw body log and the ids already handled.

A platform delivers at least once (WhatsApp retries for days when it gets no 200), so the body is
written here before anything parses it, and a message id is claimed once: the first claim wins,
every redelivery after it is a no-op, however many arrive at the same time.
"""
from __future__ import annotations

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from core.db import Database
from core.models import InboundMessageId, InboundWebhook

HANDLED, UNHANDLED, ERROR, REFUSED = "handled", "unhandled", "error", "refused"


async def store_body(db: Database, channel: str, body: bytes) -> int:
    """Keep the raw body, byte for byte (garbage too); returns its id."""
    async with db.transaction() as session:
        row = InboundWebhook(channel=channel, body=body)
        session.add(row)
        await session.flush()
        return row.id


async def set_outcome(db: Database, webhook_id: int, outcome: str, detail: str | None = None) -> None:
    async with db.transaction() as session:
        await session.execute(update(InboundWebhook).where(InboundWebhook.id == webhook_id).values(
            outcome=outcome, detail=detail[:2000] if detail else None))


async def claim_message(db: Database, channel: str, message_id: str) -> bool:
    """True the first time this message id is seen on this channel, False on every redelivery."""
    try:
        async with db.transaction() as session:
            session.add(InboundMessageId(channel=channel, message_id=message_id[:191]))
        return True
    except IntegrityError:
        return False


async def release_message(db: Database, channel: str, message_id: str) -> None:
    """Handling failed: the id may be claimed again (by a replay of the stored body)."""
    async with db.transaction() as session:
        await session.execute(delete(InboundMessageId).where(InboundMessageId.channel == channel,
                                                             InboundMessageId.message_id == message_id[:191]))


async def stored_bodies(db: Database, channel: str, outcomes: tuple[str | None, ...],
                        webhook_id: int | None = None) -> list[InboundWebhook]:
    """The kept bodies of a channel with one of `outcomes` (None: handling never finished), or the
    one `webhook_id`, oldest first."""
    async with db.session() as session:
        query = select(InboundWebhook).where(InboundWebhook.channel == channel).order_by(InboundWebhook.id)
        if webhook_id is not None:
            query = query.where(InboundWebhook.id == webhook_id)
        else:
            wanted = [o for o in outcomes if o is not None]
            condition = InboundWebhook.outcome.in_(wanted)
            if None in outcomes:
                condition = condition | InboundWebhook.outcome.is_(None)
            query = query.where(condition)
        return list((await session.scalars(query)).all())
