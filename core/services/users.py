"""Chat users: who is on the other end of a chat, their language, and forgetting them."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, select, update

from core.db import Database
from core.i18n import LANGUAGES, pick_language
from core.models import ChatUser, HandoffTicket, LinkedAccount, OutboxMessage, TranscriptEntry, utcnow


async def get_or_create_user(db: Database, channel: str, chat_id: str, language: str | None = None) -> tuple[ChatUser, bool]:
    """The chat's user, created on first contact in the client's language. Returns (user, created)."""
    async with db.session() as session:
        user = await session.scalar(select(ChatUser).where(ChatUser.channel == channel, ChatUser.chat_id == chat_id))
    if user is not None:
        return await _came_back(db, user), False
    try:
        async with db.transaction() as session:
            user = ChatUser(channel=channel, chat_id=chat_id, locale=pick_language(language), last_inbound_at=utcnow())
            session.add(user)
        return user, True
    except Exception:  # noqa: BLE001 - a concurrent first contact created it: read it back
        async with db.session() as session:
            user = await session.scalar(select(ChatUser).where(ChatUser.channel == channel, ChatUser.chat_id == chat_id))
        if user is None:
            raise
        return user, False


INBOUND_RESOLUTION = timedelta(minutes=1)  # last_inbound_at is kept to the minute: not a write per message


async def _came_back(db: Database, user: ChatUser) -> ChatUser:
    """The customer wrote: a chat marked blocked is reachable again (push resumes), and
    last_inbound_at moves on."""
    now = utcnow()
    if user.blocked_at is None and user.last_inbound_at is not None and now - user.last_inbound_at < INBOUND_RESOLUTION:
        return user
    async with db.transaction() as session:
        await session.execute(update(ChatUser).where(ChatUser.id == user.id).values(blocked_at=None, last_inbound_at=now))
    user.blocked_at, user.last_inbound_at = None, now
    return user


async def set_language(db: Database, user_id: int, language: str) -> str:
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}")
    async with db.transaction() as session:
        user = await session.get(ChatUser, user_id)
        user.locale = language
    return language


@dataclass(frozen=True)
class Forgotten:
    accounts: int
    tickets: int
    messages: int


async def forget_user(db: Database, user_id: int) -> Forgotten:
    """Delete the chat user and everything attached (accounts, tickets and transcripts, queued messages)."""
    async with db.transaction() as session:
        user = await session.get(ChatUser, user_id)
        if user is None:
            return Forgotten(0, 0, 0)
        accounts = await session.scalar(select(func.count()).select_from(LinkedAccount).where(LinkedAccount.user_id == user_id))
        tickets = await session.scalar(select(func.count()).select_from(HandoffTicket).where(HandoffTicket.user_id == user_id))
        messages = (await session.execute(
            delete(OutboxMessage).where(OutboxMessage.channel == user.channel, OutboxMessage.chat_id == user.chat_id)
        )).rowcount
        await session.execute(delete(LinkedAccount).where(LinkedAccount.user_id == user_id))
        await _forget_tickets(session, user_id)
        await session.delete(user)
    return Forgotten(accounts or 0, tickets or 0, messages or 0)


async def _forget_tickets(session, user_id: int) -> None:  # noqa: ANN001 - an AsyncSession
    """Tickets, their transcripts, the support-topic messages not yet relayed, and the topics."""
    from core.services.handoff import SUPPORT_CHANNEL, support_thread

    tickets = (await session.execute(select(HandoffTicket.id, HandoffTicket.support_thread_id)
                                     .where(HandoffTicket.user_id == user_id))).all()
    ids = [ticket_id for ticket_id, _ in tickets]
    if not ids:
        return
    await session.execute(delete(OutboxMessage).where(OutboxMessage.channel == SUPPORT_CHANNEL,
                                                      OutboxMessage.chat_id.in_([support_thread(i) for i in ids])))
    for ticket_id, thread_id in tickets:
        if thread_id:  # the agents' copy goes too
            session.add(OutboxMessage(channel=SUPPORT_CHANNEL, chat_id=support_thread(ticket_id), kind="topic_delete",
                                      payload={"ticket_id": ticket_id, "thread_id": int(thread_id)}))
    await session.execute(delete(TranscriptEntry).where(TranscriptEntry.ticket_id.in_(ids)))
    await session.execute(delete(HandoffTicket).where(HandoffTicket.id.in_(ids)))
