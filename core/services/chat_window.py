"""The customer-service window of a chat and its consent to notifications outside it.

WhatsApp lets a business write freely only within 24 hours of the customer's last message; after
that only an approved template goes, and Fatoura sends one only to a customer who said yes to
notifications. `last_inbound_at` is recorded on every customer message, which also clears
`blocked_at`: a customer who writes again can be written to again.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update

from core.db import Database
from core.models import ChatUser, OutboxMessage, utcnow

WINDOW = timedelta(hours=24)


async def record_inbound(db: Database, channel: str, chat_id: str, *, at: datetime | None = None,
                         address: str | None = None, name: str | None = None) -> None:
    values: dict = {"last_inbound_at": at or utcnow(), "blocked_at": None}
    if address:
        values["whatsapp_address"] = address
    if name:
        values["display_name"] = name[:128]
    async with db.transaction() as session:
        await session.execute(update(ChatUser).where(ChatUser.channel == channel, ChatUser.chat_id == chat_id)
                              .values(**values))


def in_window(user: ChatUser, now: datetime | None = None) -> bool:
    return user.last_inbound_at is not None and (now or utcnow()) - user.last_inbound_at < WINDOW


async def find_user(db: Database, channel: str, chat_id: str) -> ChatUser | None:
    async with db.session() as session:
        return await session.scalar(select(ChatUser).where(ChatUser.channel == channel, ChatUser.chat_id == chat_id))


async def mark_asked(db: Database, user_id: int) -> None:
    async with db.transaction() as session:
        await session.execute(update(ChatUser).where(ChatUser.id == user_id).values(whatsapp_opt_in_asked_at=utcnow()))


async def set_opt_in(db: Database, user_id: int, consent: bool) -> None:
    async with db.transaction() as session:
        await session.execute(update(ChatUser).where(ChatUser.id == user_id).values(
            whatsapp_opt_in=consent, whatsapp_opt_in_at=utcnow()))


async def mark_blocked(db: Database, channel: str, chat_id: str, *, or_address: bool = False) -> None:
    """The platform says this chat can't be reached: stop sending until the customer writes.
    `or_address`: `chat_id` may also be the chat's WhatsApp address (a status names the phone)."""
    match = ChatUser.chat_id == chat_id
    if or_address:
        match = match | (ChatUser.whatsapp_address == chat_id)
    async with db.transaction() as session:
        await session.execute(update(ChatUser).where(ChatUser.channel == channel, match).values(blocked_at=utcnow()))


async def adopt_business_id(db: Database, channel: str, phone: str, user_id: str) -> bool:
    """A chat first keyed on its phone number now comes with a business-scoped user id (Meta adds
    them to webhooks since 2026): re-key that chat, its queued messages with it, so the customer
    keeps their accounts. True when a chat was re-keyed."""
    async with db.transaction() as session:
        if await session.scalar(select(ChatUser.id).where(ChatUser.channel == channel, ChatUser.chat_id == user_id)):
            return False
        old = await session.scalar(select(ChatUser).where(ChatUser.channel == channel, ChatUser.chat_id == phone))
        if old is None:
            return False
        old.chat_id, old.whatsapp_address = user_id, phone
        await session.execute(update(OutboxMessage).where(
            OutboxMessage.channel == channel, OutboxMessage.chat_id == phone,
            OutboxMessage.status.in_(("queued", "sending"))).values(chat_id=user_id))
        return True
