"""A customer asks for a person, waits in the queue, an agent claims, answers and closes; on
SQLite and PostgreSQL. Races and refusals change nothing they should not."""
from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from bot.conversation.engine import Conversation
from core.billers.registry import BillerRegistry
from core.config import Settings
from core.models import HandoffTicket, OutboxMessage, TranscriptEntry
from core.services import agents as agent_service
from core.services.handoff import AlreadyClaimed, Desk, NotTheirs, NotYours, TicketClosed
from core.state import MemoryState
from tests.chat import Chat
from tests.test_conversation import link_iam


@pytest.fixture
def conversation(seeded_db):
    settings = Settings(_env_file=None, sandbox=True)
    return Conversation(settings, seeded_db, MemoryState(), BillerRegistry.from_settings(settings, seeded_db))


async def make_agent(db, username: str, name: str | None = None):
    return await agent_service.add_agent(db, username, "correct horse battery", display_name=name)


async def outbox_of(db, chat_id: str) -> list[OutboxMessage]:
    async with db.session() as session:
        return list((await session.scalars(select(OutboxMessage).where(OutboxMessage.chat_id == chat_id)
                                           .order_by(OutboxMessage.id))).all())


async def ask_for_help(chat: Chat, reason: str | None = "My invoice amount looks wrong") -> None:
    await chat.start()
    await chat.press("Talk to an agent")
    if reason is None:
        await chat.press("Skip")
    else:
        await chat.say(reason)


async def test_amina_asks_for_an_agent_waits_is_answered_then_rates_the_help(conversation):
    db = conversation.db
    amina = Chat(conversation, chat_id="amina", language="en")
    await ask_for_help(amina)
    assert "number 1" in amina.text and "minute" in amina.text
    await amina.say("It is invoice 0000528605022017")
    assert "Kept for the agent" in amina.text

    karim = await make_agent(db, "karim", "Karim")
    desk = conversation.desk
    (item,) = await desk.queue()
    assert item.ticket.reason == "My invoice amount looks wrong"
    await desk.claim(item.ticket.id, karim)
    await amina.say("Hello?")
    assert amina.replies == []  # the agent holds the chat: the bot says nothing by itself
    await desk.reply(item.ticket.id, karim, "Hello Amina, I am looking at it.")
    await desk.note(item.ticket.id, karim, "customer seems upset; check the TVA line")
    sent = [m.payload for m in await outbox_of(db, "amina")]
    assert [p["params"]["agent"] for p in sent] == ["Karim", "Karim"]
    assert "Hello Amina, I am looking at it." in sent[1]["text"]
    assert not any("TVA line" in p["text"] for p in sent)  # the internal note never reaches her

    await amina.command("menu")  # /menu still works while the agent holds the chat
    assert "Link your first account" in amina.text

    await desk.close(item.ticket.id, karim)
    closing = (await outbox_of(db, "amina"))[-1].payload
    stars = [b["data"] for row in closing["buttons"] for b in row]
    assert len(stars) == 5
    await amina.press_data(stars[3])
    assert "Thank you for your rating" in amina.text
    await amina.press_data(stars[0])  # a second rating changes nothing
    async with db.session() as session:
        ticket = await session.get(HandoffTicket, item.ticket.id)
        authors = (await session.scalars(select(TranscriptEntry.author).where(
            TranscriptEntry.ticket_id == ticket.id).order_by(TranscriptEntry.id))).all()
    assert ticket.rating == 4 and ticket.status == "resolved"
    # Who wrote what, in order: her reason, the queue's answers, her words, Karim's (the note is his too).
    assert authors[:5] == ["customer", "bot", "customer", "bot", "bot"] and "agent" in authors and "note" in authors
    await amina.say("hello")  # the bot has the chat back
    assert "did not understand" in amina.text


async def test_the_queue_is_oldest_first_and_a_customer_can_cancel(conversation):
    first, second = Chat(conversation, "c-first", language="en"), Chat(conversation, "c-second", language="en")
    await ask_for_help(first, None)
    await ask_for_help(second, "help")
    assert "number 2" in second.text
    await second.press_data("T")  # asking again shows the same request, not a new one
    assert "number 2" in second.text
    queue = await conversation.desk.queue()
    assert [q.user.chat_id for q in queue] == ["c-first", "c-second"]
    await first.press("Cancel my request")
    assert "cancelled" in first.text
    await second.press_data("T")
    assert "number 1" in second.text
    assert [q.user.chat_id for q in await conversation.desk.queue()] == ["c-second"]


async def test_two_agents_claiming_at_once_exactly_one_wins(conversation):
    db = conversation.db
    chat = Chat(conversation, "c-race", language="en")
    await ask_for_help(chat, None)
    karim, salma = await make_agent(db, "karim", "Karim"), await make_agent(db, "salma", "Salma")
    (item,) = await conversation.desk.queue()
    # Two web processes: two desks on two engines over the same database.
    from core.db import Database

    other_db = Database(db.url)
    try:
        results = await asyncio.gather(conversation.desk.claim(item.ticket.id, karim),
                                       Desk(other_db).claim(item.ticket.id, salma), return_exceptions=True)
    finally:
        await other_db.dispose()
    won = [r for r in results if isinstance(r, HandoffTicket)]
    lost = [r for r in results if isinstance(r, AlreadyClaimed)]
    assert len(won) == 1 and len(lost) == 1, results
    winner = karim if won[0].agent_id == karim.id else salma
    assert lost[0].params["agent"] == winner.name
    joined = [m for m in await outbox_of(db, "c-race") if "joined" in m.payload["text"]]
    assert len(joined) == 1


async def test_an_agent_who_does_not_hold_the_conversation_changes_nothing(conversation):
    db = conversation.db
    amina, omar = Chat(conversation, "c-amina", language="en"), Chat(conversation, "c-omar", language="en")
    await ask_for_help(amina, None)
    await ask_for_help(omar, None)
    karim, salma = await make_agent(db, "karim"), await make_agent(db, "salma")
    desk = conversation.desk
    ticket_a, ticket_o = [q.ticket.id for q in await desk.queue()]
    await desk.claim(ticket_a, karim)
    before = len(await outbox_of(db, "c-amina")), len(await outbox_of(db, "c-omar"))
    refused = (lambda: desk.reply(ticket_a, salma, "hi"), lambda: desk.note(ticket_a, salma, "x"),
               lambda: desk.close(ticket_a, salma), lambda: desk.hand_over(ticket_a, salma, karim.id),
               lambda: desk.reply(ticket_o, karim, "not claimed yet"), lambda: desk.close(ticket_o, karim))
    for action in refused:
        with pytest.raises(NotYours):
            await action()
    with pytest.raises(AlreadyClaimed):
        await desk.claim(ticket_a, salma)
    async with db.session() as session:
        tickets = (await session.scalars(select(HandoffTicket).order_by(HandoffTicket.id))).all()
        notes = await session.scalar(select(func.count()).select_from(TranscriptEntry).where(
            TranscriptEntry.author == "note"))
    assert [(t.status, t.agent_id) for t in tickets] == [("open", karim.id), ("pending", None)]
    assert notes == 0
    assert (len(await outbox_of(db, "c-amina")), len(await outbox_of(db, "c-omar"))) == before
    await desk.close(ticket_a, karim)
    with pytest.raises(TicketClosed):
        await desk.reply(ticket_a, karim, "too late")


async def test_an_agent_can_only_send_the_customer_their_own_accounts(conversation):
    from core.services import linking, users

    db = conversation.db
    amina = Chat(conversation, "c-amina", language="en")
    await link_iam(amina)
    omar = Chat(conversation, "c-omar", language="en")
    await ask_for_help(omar, None)
    karim = await make_agent(db, "karim")
    desk = conversation.desk
    (item,) = await desk.queue()
    await desk.claim(item.ticket.id, karim)
    amina_user, _ = await users.get_or_create_user(db, "webchat", "c-amina")
    (amina_link,) = await linking.list_links(db, amina_user.id)
    before = len(await outbox_of(db, "c-omar"))
    with pytest.raises(NotTheirs):
        await desk.send_invoice(item.ticket.id, karim, amina_link.id, "0000528605022017")
    with pytest.raises(NotTheirs):
        await desk.send_payment_link(item.ticket.id, karim, amina_link.id)
    assert len(await outbox_of(db, "c-omar")) == before


async def test_forget_removes_tickets_and_transcripts(conversation):
    db = conversation.db
    chat = Chat(conversation, "c-forget", language="en")
    await ask_for_help(chat, "please call me")
    await chat.say("my number is in my profile")
    await chat.command("forget")
    await chat.press("Yes, delete everything")
    assert "1 support conversation" in chat.text
    async with db.session() as session:
        assert await session.scalar(select(func.count()).select_from(TranscriptEntry)) == 0
        assert await session.scalar(select(func.count()).select_from(HandoffTicket)) == 0


async def test_error_messages_offer_an_agent(conversation):
    chat = Chat(conversation, "c-err", language="en")
    await chat.start()
    assert chat.button("Talk to an agent")  # in the main menu
    await chat.press_data("L")
    await chat.press("Marsa Maroc")
    await chat.press_data("Lt|99")  # no such terminal: a typed error
    assert "terminal is not known" in chat.text
    assert chat.button("Talk to an agent")
    await chat.press_data("L")
    await chat.press("Maroc Telecom")
    await chat.press("Mobile")
    await chat.say("0699999999")
    await chat.say("111111")  # a line the biller does not know: asked again, with a way to a person
    assert "No account was found" in chat.text
    await chat.press("Talk to an agent")
    assert "what do you need help with" in chat.text


async def test_karim_hands_over_to_salma_who_answers_and_karim_no_longer_can(conversation):
    db = conversation.db
    amina = Chat(conversation, "c-amina", language="fr")
    await amina.start()
    await amina.press("Parler à un conseiller")
    await amina.press("Passer")
    karim, salma = await make_agent(db, "karim", "Karim"), await make_agent(db, "salma", "Salma")
    desk = conversation.desk
    (item,) = await desk.queue()
    await desk.claim(item.ticket.id, karim)
    assert (await desk.hand_over(item.ticket.id, karim, salma.id)).id == salma.id
    await desk.reply(item.ticket.id, salma, "Je prends le relais.")
    with pytest.raises(NotYours):
        await desk.reply(item.ticket.id, karim, "moi aussi")
    texts = [m.payload["text"] for m in await outbox_of(db, "c-amina")]
    assert texts[-2:] == ["Salma prend maintenant en charge votre demande.", "Salma: Je prends le relais."]
    details = await desk.details(item.ticket.id)
    assert [e.text for e in details.entries if e.internal] == ["Karim → Salma"]


async def test_a_customer_can_never_reach_another_customers_conversation(conversation):
    db = conversation.db
    amina, omar = Chat(conversation, "c-amina", language="en"), Chat(conversation, "c-omar", language="en")
    await ask_for_help(amina, "private matter")
    karim = await make_agent(db, "karim", "Karim")
    (item,) = await conversation.desk.queue()
    await conversation.desk.claim(item.ticket.id, karim)
    await omar.start()
    assert not await conversation.desk.customer_said(item.ticket.id, await _user(db, "c-omar"), "sneak in")
    await conversation.desk.close(item.ticket.id, karim)
    await omar.press_data(f"Tr|{item.ticket.id}|1")  # a forged rating press on Amina's ticket
    assert "no longer applies" in omar.text
    await omar.say("hello")  # Omar has no ticket: nothing of his goes into Amina's transcript
    assert "did not understand" in omar.text
    async with db.session() as session:
        ticket = await session.get(HandoffTicket, item.ticket.id)
        entries = (await session.scalars(select(TranscriptEntry.text).where(
            TranscriptEntry.ticket_id == item.ticket.id))).all()
    assert ticket.rating is None and "hello" not in entries
    assert "sneak in" not in entries and await conversation.desk.queue() == []


async def _user(db, chat_id: str):  # noqa: ANN001
    from core.services import users

    user, _ = await users.get_or_create_user(db, "webchat", chat_id)
    return user


async def test_an_agent_puts_a_conversation_back_in_the_queue(conversation):
    db = conversation.db
    amina = Chat(conversation, "c-amina", language="en")
    await ask_for_help(amina, None)
    karim, salma = await make_agent(db, "karim", "Karim"), await make_agent(db, "salma", "Salma")
    desk = conversation.desk
    (item,) = await desk.queue()
    await desk.claim(item.ticket.id, karim)
    assert await desk.hand_over(item.ticket.id, karim, 0) is None
    assert "back in the queue" in (await outbox_of(db, "c-amina"))[-1].payload["text"]
    with pytest.raises(NotYours):
        await desk.reply(item.ticket.id, karim, "still mine?")
    await desk.claim(item.ticket.id, salma)
    await amina.press_data("T")
    assert "An agent is with you" in amina.text


async def test_the_wait_grows_with_the_place_in_the_queue_and_the_agents_recent_pace(conversation):
    from datetime import timedelta

    from core.models import utcnow

    db = conversation.db
    chats = [Chat(conversation, f"c-{n}", language="en") for n in range(3)]
    for chat in chats:
        await ask_for_help(chat, None)
    desk = conversation.desk
    queue = await desk.queue()
    assert [await desk.position(q.ticket) for q in queue] == [(1, 4), (2, 8), (3, 12)]  # 4 min each at first
    # Lately one agent took 10 minutes per customer.
    karim = await make_agent(db, "karim")
    await desk.claim(queue[0].ticket.id, karim)
    await desk.close(queue[0].ticket.id, karim)
    async with db.transaction() as session:
        ticket = await session.get(HandoffTicket, queue[0].ticket.id)
        ticket.claimed_at = utcnow() - timedelta(minutes=10)
    assert await desk.position(queue[2].ticket) == (2, 20)
