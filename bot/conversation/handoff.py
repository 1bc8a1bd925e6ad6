"""Asking for a person: the reason, the place in the queue, cancelling, the relay while an agent
holds the chat, and the 1-5 rating once the agent closes it (core.services.handoff does the rest).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from bot.conversation import callbacks as cb
from bot.conversation import views
from bot.conversation.replies import Button
from core.models import HandoffTicket
from core.services.handoff import MAX_REASON, PENDING

if TYPE_CHECKING:
    from bot.conversation.engine import Conversation, Turn


async def ask(conv: "Conversation", turn: "Turn") -> None:
    """From the menu or an error: ask for an optional reason (a live request just shows its state)."""
    ticket = await conv.desk.live_ticket(turn.user.id)
    if ticket is not None:
        return await _status(conv, turn, ticket)
    t = turn.t
    turn.state["flow"] = "handoff_reason"
    turn.say(views.text(t, t._("An agent will join this chat. In a few words, what do you need help with? "
                               "(or press “Skip”)"),
                        [Button(t._("Skip"), cb.pack(cb.HANDOFF_SKIP)), Button(t._("Cancel"), cb.pack(cb.CANCEL))]))


async def queue(conv: "Conversation", turn: "Turn", reason: str | None) -> None:
    turn.state.pop("flow", None)
    if reason and len(reason) > MAX_REASON:
        reason = reason[:MAX_REASON]
    ticket, _ = await conv.desk.request(turn.user, reason, name=turn.event.user_name)
    await _status(conv, turn, ticket)


async def _status(conv: "Conversation", turn: "Turn", ticket: HandoffTicket) -> None:
    t = turn.t
    cancel = [Button(t._("Cancel my request"), cb.pack(cb.HANDOFF_CANCEL)), views.menu_button(t)]
    if ticket.status == PENDING:
        place, minutes = await conv.desk.position(ticket)
        body = "\n".join([
            t._("You are in the queue for an agent: number {place}.", place=place),
            t.ngettext("Rough wait: about {n} minute.", "Rough wait: about {n} minutes.", minutes),
            t._("You can write here in the meantime: the agent will read it."),
        ])
    else:
        body = t._("An agent is with you in this chat: write your message here.")
    await conv.desk.bot_said(ticket.id, body)
    turn.say(views.text(t, body, cancel))


async def cancel(conv: "Conversation", turn: "Turn") -> None:
    ticket = await conv.desk.cancel(turn.user)
    note = turn.t._("Your request is cancelled; the assistant is back.") if ticket else turn.t._(
        "You have no request for an agent in progress.")
    await conv._menu(turn, note)


async def relay(conv: "Conversation", turn: "Turn", ticket: HandoffTicket, text: str) -> None:
    """What the customer types goes to the agent; the bot only speaks while they wait."""
    if not await conv.desk.customer_said(ticket.id, turn.user, text):
        return
    if ticket.status == PENDING:
        place, _ = await conv.desk.position(ticket)
        said = turn.t._("Kept for the agent. You are number {place} in the queue.", place=place)
        await conv.desk.bot_said(ticket.id, said)
        turn.say(views.text(turn.t, said, [Button(turn.t._("Cancel my request"), cb.pack(cb.HANDOFF_CANCEL))]))


async def rate(conv: "Conversation", turn: "Turn", args: list[str]) -> None:
    try:
        ticket_id, rating = int(args[0]), int(args[1])
    except (IndexError, ValueError):
        return await conv._stale(turn)
    if not await conv.desk.rate(turn.user, ticket_id, rating):
        return await conv._stale(turn)
    await conv._menu(turn, turn.t._("Thank you for your rating!"), replace=True)
