"""Delivery receipts (sent / delivered / read / failed) applied to the outbox row they are about.

Receipts arrive out of order and more than once, so a status only ever moves forward:
sent < delivered < read. `failed` replaces `sent` only: a later delivered/read receipt proves
the message arrived (it wins over failed), and a failed receipt after delivered/read is stale.
"""
from __future__ import annotations

from sqlalchemy import select

from core.db import Database
from core.models import OutboxMessage, utcnow

RANK = {"accepted": 0, "sent": 1, "failed": 2, "delivered": 3, "read": 4}


def moves_forward(current: str | None, new: str) -> bool:
    if new not in RANK:
        return False
    return current is None or RANK.get(current, -1) < RANK[new]


async def apply_status(db: Database, provider_message_id: str, status: str,
                       error: str | None = None) -> OutboxMessage | None:
    """Record `status` on the outbox row that sent `provider_message_id`; returns the row when it
    moved forward, None when no row matches or the receipt is stale."""
    async with db.transaction() as session:
        row = await session.scalar(select(OutboxMessage).where(
            OutboxMessage.provider_message_id == provider_message_id).with_for_update())
        if row is None or not moves_forward(row.provider_status, status):
            return None
        row.provider_status = status
        if status == "failed" and error:
            row.last_error = error[:500]
        return row


async def send_again_as_template(db: Database, outbox_id: int) -> None:
    """The platform refused a free-form message after accepting it (the window had closed while
    it was queued): queue it again, flagged so the sender uses its template this time."""
    async with db.transaction() as session:
        row = await session.get(OutboxMessage, outbox_id)
        if row is None or (row.payload or {}).get("template"):
            return  # already tried as a template: the failure stands
        row.payload = {**(row.payload or {}), "template": True}
        row.status, row.next_attempt_at, row.provider_status = "queued", utcnow(), None
