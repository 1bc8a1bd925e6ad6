"""Handoff to a support agent: the queue, claims, replies, handovers, closing and the rating.

`HandoffTicket.status` is the one field everyone reads: pending (in the queue), open (an agent
holds it), resolved (closed or cancelled). Every state change is a conditional UPDATE whose
WHERE says what must still be true (a pending ticket, held by this agent), so two agents racing
on SQLite or PostgreSQL can't both win, and an agent who lost the ticket changes nothing.

What the customer is told goes through the outbox (kind "agent_reply", payload params
{agent, text}) in the same transaction as the transcript entry. When the agents work in a
Telegram supergroup (SUPPORT_CHAT_ID), the ticket's messages are also queued on channel
"support" (chat_id "ticket-<id>") for the topic relay: kinds "topic_open" {ticket_id, title,
text}, "topic_message" {ticket_id, text}, "topic_close" {ticket_id}, "topic_delete" {thread_id}.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import Database
from core.errors import N_, FatouraError
from core.i18n import Translator, translator
from core.models import Agent, ChatUser, ConversationStatus, HandoffTicket, LinkedAccount, TranscriptEntry, utcnow
from core.services import outbox

PENDING, OPEN, RESOLVED = (ConversationStatus.PENDING.value, ConversationStatus.OPEN.value,
                           ConversationStatus.RESOLVED.value)
LIVE = (PENDING, OPEN)
AGENT_REPLY = "agent_reply"
SUPPORT_CHANNEL = "support"
MAX_TEXT = 3000  # fits one Telegram message with the agent's name in front
MAX_REASON = 300
RATINGS = range(1, 6)
CANCELLED = N_("The customer cancelled the request.")


class HandoffError(FatouraError):
    msgid = N_("This action is not allowed.")


class AlreadyClaimed(HandoffError):
    msgid = N_("{agent} already took this conversation.")


class NotYours(HandoffError):
    msgid = N_("You do not hold this conversation.")


class TicketClosed(HandoffError, LookupError):
    msgid = N_("This conversation is closed or no longer exists.")


class UnknownAgent(HandoffError, LookupError):
    msgid = N_("This agent does not exist or is disabled.")


class EmptyMessage(HandoffError, ValueError):
    msgid = N_("Write a message first (at most {limit} characters).")


class NotTheirs(HandoffError, LookupError):
    msgid = N_("This account is not one of the customer's.")


def support_thread(ticket_id: int) -> str:
    return f"ticket-{ticket_id}"


def clean_text(text: str | None, limit: int = MAX_TEXT) -> str:
    cleaned = (text or "").strip()
    if not cleaned or len(cleaned) > limit:
        raise EmptyMessage("empty or too long", limit=limit)
    return cleaned


@dataclass(frozen=True)
class QueueItem:
    ticket: HandoffTicket
    user: ChatUser
    agent: Agent | None


@dataclass(frozen=True)
class Details:
    ticket: HandoffTicket
    user: ChatUser
    agent: Agent | None
    links: list[LinkedAccount]
    entries: list[TranscriptEntry]


class Desk:
    """The support desk of one deployment; `topics` says whether a Telegram supergroup relays it."""

    def __init__(self, db: Database, *, topics: bool = False, minutes_per_customer: int = 4) -> None:
        self.db = db
        self.topics = topics
        self.minutes_per_customer = minutes_per_customer

    # --- the customer's side --------------------------------------------------------------------

    async def live_ticket(self, user_id: int) -> HandoffTicket | None:
        async with self.db.session() as session:
            return await session.scalar(select(HandoffTicket).where(HandoffTicket.user_id == user_id,
                                                                    HandoffTicket.status.in_(LIVE)))

    async def request(self, user: ChatUser, reason: str | None, name: str | None = None) -> tuple[HandoffTicket, bool]:
        """Queue the customer (once: a live ticket is returned as is). Returns (ticket, created).
        `name` is what the chat calls the customer (Telegram's first name), shown to agents."""
        existing = await self.live_ticket(user.id)
        if existing is not None:
            return existing, False
        reason = (reason or "").strip()[:MAX_REASON] or None
        now = utcnow()
        try:
            async with self.db.transaction() as session:
                if name and not user.display_name:
                    await session.execute(update(ChatUser).where(ChatUser.id == user.id)
                                          .values(display_name=name.strip()[:128]))
                    user.display_name = name.strip()[:128]
                ticket = HandoffTicket(user_id=user.id, status=PENDING, reason=reason, created_at=now, updated_at=now)
                session.add(ticket)
                await session.flush()
                if reason:
                    session.add(TranscriptEntry(ticket_id=ticket.id, author="customer", text=reason, created_at=now))
                if self.topics:
                    title = f"#{ticket.id} {user.display_name or user.channel}"[:128]
                    text = reason or "—"
                    self._to_topic(session, ticket.id, "topic_open", {"title": title, "text": text})
        except IntegrityError:  # a twin press queued it first (one live ticket per chat)
            existing = await self.live_ticket(user.id)
            if existing is None:
                raise
            return existing, False
        return ticket, True

    async def position(self, ticket: HandoffTicket) -> tuple[int, int]:
        """(place in the queue, rough wait in minutes) of a pending ticket."""
        async with self.db.session() as session:
            ahead = await session.scalar(select(func.count()).select_from(HandoffTicket).where(
                HandoffTicket.status == PENDING, HandoffTicket.id < ticket.id)) or 0
            busy = await session.scalar(select(func.count(func.distinct(HandoffTicket.agent_id))).where(
                HandoffTicket.status == OPEN)) or 0
            recent = (await session.execute(
                select(HandoffTicket.claimed_at, HandoffTicket.closed_at)
                .where(HandoffTicket.claimed_at.is_not(None), HandoffTicket.closed_at.is_not(None))
                .order_by(HandoffTicket.id.desc()).limit(20))).all()
        place = ahead + 1
        minutes = float(self.minutes_per_customer)
        if recent:  # how long agents take per customer lately, shared by those at work
            spent = [(closed - claimed).total_seconds() / 60 for claimed, closed in recent]
            minutes = max(1.0, sum(spent) / len(spent)) / max(1, busy)
        return place, max(1, math.ceil(place * minutes))

    async def customer_said(self, ticket_id: int, user: ChatUser, text: str) -> bool:
        """Keep what the customer wrote for the agent; False when the ticket is no longer live."""
        now = utcnow()
        async with self.db.transaction() as session:
            ticket = await session.get(HandoffTicket, ticket_id)
            if ticket is None or ticket.status not in LIVE or ticket.user_id != user.id:
                return False
            ticket.updated_at = now
            session.add(TranscriptEntry(ticket_id=ticket_id, author="customer", text=text[:4000], created_at=now))
            self._to_topic(session, ticket_id, "topic_message", {"text": f"👤 {user.display_name or '…'}: {text[:3500]}"})
        return True

    async def bot_said(self, ticket_id: int, text: str) -> None:
        """Keep what the bot told the customer during the handoff (the queue's answers)."""
        async with self.db.transaction() as session:
            session.add(TranscriptEntry(ticket_id=ticket_id, author="bot", text=text[:4000], created_at=utcnow()))

    async def cancel(self, user: ChatUser) -> HandoffTicket | None:
        """The customer withdraws the request (or leaves the agent): the bot takes the chat back."""
        now = utcnow()
        async with self.db.transaction() as session:
            ticket = await session.scalar(select(HandoffTicket).where(HandoffTicket.user_id == user.id,
                                                                      HandoffTicket.status.in_(LIVE)))
            if ticket is None:
                return None
            ticket.status, ticket.closed_at, ticket.updated_at = RESOLVED, now, now
            # Kept as the msgid: the console shows it in the agent's language.
            session.add(TranscriptEntry(ticket_id=ticket.id, author="bot", text=CANCELLED, created_at=now))
            self._to_topic(session, ticket.id, "topic_message", {"text": "✖ " + translator(None)._(CANCELLED)})
            self._to_topic(session, ticket.id, "topic_close", {})
        return ticket

    async def rate(self, user: ChatUser, ticket_id: int, rating: int) -> bool:
        """Record the customer's 1-5 for a conversation an agent closed; once, and only their own."""
        if rating not in RATINGS:
            return False
        async with self.db.transaction() as session:
            result = await session.execute(update(HandoffTicket).where(
                HandoffTicket.id == ticket_id, HandoffTicket.user_id == user.id, HandoffTicket.status == RESOLVED,
                HandoffTicket.rating.is_(None), HandoffTicket.agent_id.is_not(None),
            ).values(rating=rating, rated_at=utcnow(), updated_at=utcnow()))
        return result.rowcount == 1

    # --- the agents' side -----------------------------------------------------------------------

    async def queue(self) -> list[QueueItem]:
        """Live tickets: the waiting ones first, oldest first, then those held by an agent."""
        async with self.db.session() as session:
            rows = (await session.execute(
                select(HandoffTicket, ChatUser, Agent).join(ChatUser, ChatUser.id == HandoffTicket.user_id)
                .outerjoin(Agent, Agent.id == HandoffTicket.agent_id)
                .where(HandoffTicket.status.in_(LIVE))
                .order_by((HandoffTicket.status == OPEN), HandoffTicket.created_at, HandoffTicket.id))).all()
        return [QueueItem(ticket, user, agent) for ticket, user, agent in rows]

    async def details(self, ticket_id: int) -> Details | None:
        async with self.db.session() as session:
            ticket = await session.get(HandoffTicket, ticket_id)
            if ticket is None:
                return None
            user = await session.get(ChatUser, ticket.user_id)
            agent = await session.get(Agent, ticket.agent_id) if ticket.agent_id else None
            links = list((await session.scalars(select(LinkedAccount).where(LinkedAccount.user_id == ticket.user_id)
                                                .order_by(LinkedAccount.id))).all())
            entries = list((await session.scalars(select(TranscriptEntry).where(TranscriptEntry.ticket_id == ticket_id)
                                                  .order_by(TranscriptEntry.id))).all())
        return Details(ticket, user, agent, links, entries)

    async def version(self, ticket_id: int | None) -> tuple[Any, ...]:
        """Changes when anything the console shows changes: the live queue, or one ticket."""
        async with self.db.session() as session:
            queue = (await session.execute(select(func.count(), func.max(HandoffTicket.updated_at)).where(
                HandoffTicket.status.in_(LIVE)))).one()
            ticket: tuple[Any, ...] = ()
            if ticket_id:
                last = await session.scalar(select(func.max(TranscriptEntry.id)).where(
                    TranscriptEntry.ticket_id == ticket_id))
                changed = await session.scalar(select(HandoffTicket.updated_at).where(HandoffTicket.id == ticket_id))
                ticket = (last, changed)
        return (tuple(queue), ticket)

    async def claim(self, ticket_id: int, agent: Agent) -> HandoffTicket:
        """Take a waiting conversation. Of two agents claiming at once exactly one wins; the other
        gets AlreadyClaimed with the winner's name."""
        now = utcnow()
        async with self.db.transaction() as session:
            result = await session.execute(update(HandoffTicket).where(
                HandoffTicket.id == ticket_id, HandoffTicket.status == PENDING,
            ).values(status=OPEN, agent_id=agent.id, claimed_at=now, updated_at=now))
            if result.rowcount != 1:
                ticket = await session.get(HandoffTicket, ticket_id)
                holder = await session.get(Agent, ticket.agent_id) if ticket is not None and ticket.agent_id else None
                if ticket is not None and ticket.status == OPEN and holder is not None:
                    raise AlreadyClaimed(f"ticket {ticket_id} is held", agent=holder.name)
                raise TicketClosed(f"ticket {ticket_id} is not waiting")
            ticket, user = await self._ticket_and_user(session, ticket_id)
            await self._tell(session, ticket, user, agent, lambda t: t._(
                "{agent} has joined the conversation. Write your messages here.", agent=agent.name), now)
        return ticket

    async def reply(self, ticket_id: int, agent: Agent, text: str, *, from_topic: bool = False) -> None:
        text = clean_text(text)
        now = utcnow()
        async with self.db.transaction() as session:
            ticket, user = await self._hold(session, ticket_id, agent, now)
            self._agent_entry(session, ticket_id, agent, text, now, to_topic=not from_topic)
            self._customer(session, user, translator(user.locale), f"{agent.name}: {text}", agent, text)

    async def note(self, ticket_id: int, agent: Agent, text: str) -> None:
        """An internal note: kept in the transcript for agents, never sent to the customer."""
        text = clean_text(text)
        now = utcnow()
        async with self.db.transaction() as session:
            await self._hold(session, ticket_id, agent, now)
            session.add(TranscriptEntry(ticket_id=ticket_id, author="note", agent_id=agent.id, text=text,
                                        internal=True, created_at=now))

    async def send_invoice(self, ticket_id: int, agent: Agent, link_id: int, number: str) -> None:
        """Send one of the customer's invoice PDFs (rendered when delivered, like receipts)."""
        now = utcnow()
        async with self.db.transaction() as session:
            ticket, user = await self._hold(session, ticket_id, agent, now)
            await self._their_link(session, user, link_id)
            t = translator(user.locale)
            caption = t._("Invoice No. {number}", number=number)
            document = {"kind": "invoice", "link_id": link_id, "number": number, "language": t.language,
                        "filename": f"facture-{number}.pdf", "caption": caption}
            said = t._("{agent} sent you an invoice: {number}", agent=agent.name, number=number)
            self._agent_entry(session, ticket_id, agent, f"[PDF] facture-{number}.pdf", now)
            self._customer(session, user, t, said, agent, said, document=document)

    async def send_payment_link(self, ticket_id: int, agent: Agent, link_id: int) -> None:
        """A "Pay" button that opens the payment of that account's unpaid invoices in the chat."""
        now = utcnow()
        async with self.db.transaction() as session:
            ticket, user = await self._hold(session, ticket_id, agent, now)
            link = await self._their_link(session, user, link_id)
            t = translator(user.locale)
            name = link.nickname or link.identifier
            said = t._("{agent}: you can pay the invoices of {account} here.", agent=agent.name, account=name)
            self._agent_entry(session, ticket_id, agent, "[" + t._("Pay") + "] " + name, now)
            self._customer(session, user, t, said, agent, said,
                           buttons=[[{"label": t._("Pay"), "data": f"$|{link_id}"}]])

    async def release(self, ticket_id: int, agent: Agent) -> None:
        """Put a held conversation back in the queue (its place is its first request)."""
        now = utcnow()
        async with self.db.transaction() as session:
            ticket, user = await self._hold(session, ticket_id, agent, now)
            ticket.status, ticket.agent_id = PENDING, None
            session.add(TranscriptEntry(ticket_id=ticket_id, author="note", agent_id=agent.id, internal=True,
                                        text=f"{agent.name} → …", created_at=now))
            t = translator(user.locale)
            said = t._("Your request is back in the queue: the next available agent will answer here.")
            session.add(TranscriptEntry(ticket_id=ticket_id, author="bot", text=said, created_at=now))
            self._customer(session, user, t, said, agent, said)

    async def hand_over(self, ticket_id: int, agent: Agent, to_agent_id: int) -> Agent | None:
        """Pass a held conversation to another agent (`to_agent_id` 0: back to the queue)."""
        if to_agent_id == 0:
            await self.release(ticket_id, agent)
            return None
        now = utcnow()
        async with self.db.transaction() as session:
            other = await session.get(Agent, to_agent_id)
            if other is None or not other.active or other.id == agent.id:
                raise UnknownAgent(f"agent {to_agent_id}")
            ticket, user = await self._hold(session, ticket_id, agent, now)
            ticket.agent_id = other.id
            session.add(TranscriptEntry(ticket_id=ticket_id, author="note", agent_id=agent.id, internal=True,
                                        text=f"{agent.name} → {other.name}", created_at=now))
            await self._tell(session, ticket, user, other, lambda t: t._(
                "{agent} is now taking care of your request.", agent=other.name), now)
        return other

    async def close(self, ticket_id: int, agent: Agent) -> None:
        """Give the conversation back to the bot and ask the customer to rate the help."""
        now = utcnow()
        async with self.db.transaction() as session:
            ticket, user = await self._hold(session, ticket_id, agent, now)
            ticket.status, ticket.closed_at = RESOLVED, now
            t = translator(user.locale)
            said = t._("{agent} closed the conversation; the assistant is back (/menu). How would you rate the help?",
                       agent=agent.name)
            session.add(TranscriptEntry(ticket_id=ticket_id, author="bot", text=said, created_at=now))
            stars = [{"label": "★" * n, "data": f"Tr|{ticket_id}|{n}"} for n in RATINGS]
            self._customer(session, user, t, said, agent, said, buttons=[stars[:3], stars[3:]])
            self._to_topic(session, ticket_id, "topic_close", {})

    # --- internals ------------------------------------------------------------------------------

    @staticmethod
    async def _ticket_and_user(session: AsyncSession, ticket_id: int) -> tuple[HandoffTicket, ChatUser]:
        ticket = await session.get(HandoffTicket, ticket_id, populate_existing=True)
        user = await session.get(ChatUser, ticket.user_id)
        return ticket, user

    async def _hold(self, session: AsyncSession, ticket_id: int, agent: Agent,
                    now: datetime) -> tuple[HandoffTicket, ChatUser]:
        """Check, and lock for this transaction, that `agent` holds the open ticket."""
        result = await session.execute(update(HandoffTicket).where(
            HandoffTicket.id == ticket_id, HandoffTicket.status == OPEN, HandoffTicket.agent_id == agent.id,
        ).values(updated_at=now))
        if result.rowcount != 1:
            ticket = await session.get(HandoffTicket, ticket_id)
            if ticket is None or ticket.status == RESOLVED:
                raise TicketClosed(f"ticket {ticket_id} is closed")
            raise NotYours(f"agent {agent.id} does not hold ticket {ticket_id}")
        return await self._ticket_and_user(session, ticket_id)

    @staticmethod
    async def _their_link(session: AsyncSession, user: ChatUser, link_id: int) -> LinkedAccount:
        link = await session.scalar(select(LinkedAccount).where(LinkedAccount.id == link_id,
                                                                LinkedAccount.user_id == user.id))
        if link is None:
            raise NotTheirs(f"link {link_id} is not user {user.id}'s")
        return link

    async def _tell(self, session: AsyncSession, ticket: HandoffTicket, user: ChatUser, agent: Agent,
                    render: Any, now: datetime) -> None:
        t = translator(user.locale)
        said = render(t)
        session.add(TranscriptEntry(ticket_id=ticket.id, author="bot", text=said, created_at=now))
        self._customer(session, user, t, said, agent, said)
        self._to_topic(session, ticket.id, "topic_message", {"text": f"ℹ {said}"})

    def _agent_entry(self, session: AsyncSession, ticket_id: int, agent: Agent, text: str, now: datetime,
                     to_topic: bool = True) -> None:
        """What the agent sent, in the transcript and (unless it came from there) the support topic."""
        session.add(TranscriptEntry(ticket_id=ticket_id, author="agent", agent_id=agent.id, text=text, created_at=now))
        if to_topic:
            self._to_topic(session, ticket_id, "topic_message", {"text": f"🎧 {agent.name}: {text}"})

    @staticmethod
    def _customer(session: AsyncSession, user: ChatUser, t: Translator, text: str, agent: Agent, plain: str,
                  buttons: list[list[dict[str, str]]] | None = None, document: dict[str, Any] | None = None) -> None:
        payload: dict[str, Any] = {"text": text, "rtl": t.rtl, "language": t.language,
                                   "params": {"agent": agent.name, "text": plain}}
        if buttons:
            payload["buttons"] = buttons
        if document:
            payload["document"] = document
        outbox.enqueue(session, channel=user.channel, chat_id=user.chat_id, kind=AGENT_REPLY, payload=payload)

    def _to_topic(self, session: AsyncSession, ticket_id: int, kind: str, payload: dict[str, Any]) -> None:
        if self.topics:
            outbox.enqueue(session, channel=SUPPORT_CHANNEL, chat_id=support_thread(ticket_id), kind=kind,
                           payload={"ticket_id": ticket_id, **payload})

    # --- the Telegram topic's side --------------------------------------------------------------

    async def set_thread(self, ticket_id: int, thread_id: int) -> None:
        async with self.db.transaction() as session:
            await session.execute(update(HandoffTicket).where(HandoffTicket.id == ticket_id)
                                  .values(support_thread_id=str(thread_id)))

    async def ticket_of_thread(self, thread_id: int) -> HandoffTicket | None:
        async with self.db.session() as session:
            return await session.scalar(select(HandoffTicket).where(HandoffTicket.support_thread_id == str(thread_id))
                                        .order_by(HandoffTicket.id.desc()))
