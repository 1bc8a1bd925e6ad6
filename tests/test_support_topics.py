"""Agents answer from a Telegram supergroup's topics: a handoff opens a topic, the customer's words
go to it, an agent's words in it go to the customer, /close closes; real aiogram, fake Bot API."""
from __future__ import annotations

import asyncio
import contextlib

from aiogram.client.telegram import TelegramAPIServer
from pydantic import SecretStr
from sqlalchemy import select

from bot.channels.telegram.runner import start_polling_task
from bot.conversation.engine import Conversation
from core.billers.registry import BillerRegistry
from core.config import Settings
from core.models import HandoffTicket
from core.services import agents as agent_service
from core.state import MemoryState
from fatoura.worker import build_senders, deliver_due
from tests.fakes.bot_api import FakeBotAPI
from tests.fakes.echo_bot import LocalAiohttpSession
from tests.test_telegram_e2e import TelegramChat

TOKEN = "123456:SUPPORT-token"
GROUP = -1009876543210
KARIM_TG = 7001


async def _ticket(db) -> HandoffTicket:  # noqa: ANN001
    async with db.session() as session:
        return (await session.scalars(select(HandoffTicket).order_by(HandoffTicket.id.desc()))).first()


async def test_a_handoff_opens_a_topic_and_the_relay_goes_both_ways_until_close(seeded_db):
    db = seeded_db
    async with FakeBotAPI(token=TOKEN) as server:
        forum = server.forum(GROUP, "Fatoura support")
        settings = Settings(_env_file=None, sandbox=True, telegram_bot_token=SecretStr(TOKEN),
                            telegram_api_base=server.base_url, support_chat_id=GROUP)
        conversation = Conversation(settings, db, MemoryState(), BillerRegistry.from_settings(settings, db))
        await agent_service.add_agent(db, "karim", "correct horse battery", display_name="Karim",
                                      telegram_user_id=KARIM_TG)
        task = await start_polling_task(settings, conversation,
                                        session=LocalAiohttpSession(api=TelegramAPIServer.from_base(server.base_url)))
        senders = build_senders(settings, db)

        async def deliver() -> None:
            while await deliver_due(db, senders, "test-worker"):
                pass

        try:
            amina = TelegramChat(server, server.user(1001, first_name="Amina", language_code="fr"))
            await amina.say("/start")
            await amina.press("Lier un compte")
            await amina.press("Maroc Telecom")
            await amina.press("Mobile")
            await amina.say("0623363444")
            await amina.say("528605")
            await amina.press("Menu")
            await amina.press("Parler à un conseiller")
            await amina.say("Ma facture de février est trop élevée")
            assert "numéro 1" in amina.text
            await deliver()
            (created,) = server.sent(GROUP, "createForumTopic")
            thread = created.result["message_thread_id"]
            assert "Amina" in created.params["name"]
            assert any("février" in (m.text or "") for m in forum.thread_messages(thread))
            assert (await _ticket(db)).support_thread_id == str(thread)

            # Karim answers in the topic: he takes the conversation and Amina reads him.
            forum.post(thread, "Bonjour Amina, je regarde votre facture.", user_id=KARIM_TG, first_name="Karim")
            await _until(lambda: _status(db), "open")
            await deliver()
            said = [c.params.get("text", "") for c in server.sent(1001, "sendMessage") if c.ok]
            assert any("Karim a rejoint" in text for text in said)
            assert any("Karim: Bonjour Amina, je regarde votre facture." in text for text in said)

            # From the console, Karim sends her invoice: rendered at delivery, a real sendDocument.
            ticket = await _ticket(db)
            karim = await agent_service.agent_by_telegram_id(db, KARIM_TG)
            await conversation.desk.send_invoice(ticket.id, karim, 1, "0000528605022017")
            await deliver()
            (document,) = server.sent(1001, "sendDocument")
            upload = document.files["document"]
            assert upload.filename == "facture-0000528605022017.pdf" and upload.content.startswith(b"%PDF")
            assert any("Karim: [PDF] facture-0000528605022017.pdf" in (m.text or "") for m in forum.thread_messages(thread))

            # Amina's reply reaches the topic, not the bot's answers.
            mark = len(server.sent(1001))
            amina.user.send_text("Merci, c'est la facture 0000528605022017")
            await _until(lambda: _topic_has(forum, thread, "0000528605022017"), True, deliver)
            assert not [c for c in server.sent(1001)[mark:] if c.method == "sendMessage"]

            # A group member who is not an agent is told so; nothing reaches Amina.
            before = len(server.sent(1001, "sendMessage"))
            forum.post(thread, "Je peux aider ?", user_id=9999, first_name="Intrus")
            await _until(lambda: _topic_has(forum, thread, "--telegram-id 9999"), True)
            await deliver()
            assert len(server.sent(1001, "sendMessage")) == before

            forum.post(thread, "/close", user_id=KARIM_TG, first_name="Karim")
            await _until(lambda: _status(db), "resolved")
            await deliver()
            assert forum.topics[thread]["closed"]
            rating = server.messages(1001)[-1]
            assert "noter" in (rating.text or "") and len(rating.callback_data) == 5

            # Amina's /forget takes the agents' copy of the conversation too.
            await amina.say("/forget")
            await amina.press("Oui, tout supprimer")
            await deliver()
            assert forum.topics[thread]["deleted"] and not forum.thread_messages(thread)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task




async def _status(db) -> str:  # noqa: ANN001
    return (await _ticket(db)).status


async def _topic_has(forum, thread: int, text: str) -> bool:  # noqa: ANN001
    return any(text in (m.text or "") for m in forum.thread_messages(thread))


async def _until(probe, expected, between=None, timeout: float = 10.0) -> None:  # noqa: ANN001
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (value := await probe()) != expected:
        assert loop.time() < deadline, f"still {value!r}, expected {expected!r}"
        if between is not None:
            await between()
        await asyncio.sleep(0.05)
