"""Notification preferences: new invoices and reminders, on or off, for a whole chat or one account."""
from __future__ import annotations

from core.db import Database
from core.models import ChatUser, LinkedAccount

NEW_INVOICES, REMINDERS = "n", "r"
_FIELDS = {NEW_INVOICES: "notify_new_invoices", REMINDERS: "notify_reminders"}


async def toggle(db: Database, user_id: int, link_id: int, kind: str) -> bool | None:
    """Flip one preference of the chat (link_id 0) or of one of its accounts; returns the new
    value, or None when the account is not this chat's or the kind is unknown."""
    field = _FIELDS.get(kind)
    if field is None:
        return None
    async with db.transaction() as session:
        if link_id == 0:
            target = await session.get(ChatUser, user_id)
        else:
            target = await session.get(LinkedAccount, link_id)
            if target is not None and target.user_id != user_id:
                target = None
        if target is None:
            return None
        value = not getattr(target, field)
        setattr(target, field, value)
    return value


async def chat_user(db: Database, user_id: int) -> ChatUser | None:
    """The chat user as stored now (its preferences just changed, maybe)."""
    async with db.session() as session:
        return await session.get(ChatUser, user_id)
