"""Whole conversations on Telegram: the real aiogram client, long polling and the webhook, the
real conversation on the seeds' sandbox accounts, against the fake Bot API server."""
from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
from aiogram.client.telegram import TelegramAPIServer
from pydantic import SecretStr

from bot.channels.telegram.runner import start_polling_task
from bot.conversation.engine import Conversation
from core.billers.registry import BillerRegistry
from core.config import Settings
from core.state import MemoryState
from tests.browser import serve
from tests.fakes.bot_api import FakeBotAPI, FakeUser
from tests.fakes.echo_bot import LocalAiohttpSession
from webhooks.app import create_app

TOKEN = "123456:E2E-token"
SECRET = "e2e-Secret_1"


class TelegramChat:
    """Amina's Telegram client: types, taps buttons by label, reads what the bot sent since."""

    def __init__(self, server: FakeBotAPI, user: FakeUser) -> None:
        self.server, self.user = server, user

    async def _after(self, action) -> list:  # noqa: ANN001
        mark = len(self.server.sent(self.user.id))
        action()
        await self.server.wait_for(lambda calls: len(calls) > mark and any(
            c.ok and c.method != "answerCallbackQuery" for c in calls[mark:]), chat_id=self.user.id, timeout=10)
        await self.server.settle(0.15)
        self.calls = [c for c in self.server.sent(self.user.id)[mark:] if c.ok]
        return self.calls

    async def say(self, text: str) -> list:
        return await self._after(lambda: self.user.send_text(text))

    async def press(self, label: str) -> list:
        for message in reversed(self.server.messages(self.user.id)):
            if message.from_bot and any(label in text for text in message.button_texts):
                return await self._after(lambda: self.user.press_button(message, label))
        raise AssertionError(f"no button {label!r} on the bot's messages")

    @property
    def text(self) -> str:
        return "\n".join(c.params.get("text", "") or "" for c in self.calls if c.method in ("sendMessage", "editMessageText"))

    def documents(self) -> list:
        return [c for c in self.calls if c.method == "sendDocument"]


@contextlib.asynccontextmanager
async def polling_bot(db) -> AsyncIterator[FakeBotAPI]:  # noqa: ANN001
    async with FakeBotAPI(token=TOKEN) as server:
        settings = Settings(_env_file=None, sandbox=True, telegram_bot_token=SecretStr(TOKEN),
                            telegram_api_base=server.base_url)
        conversation = Conversation(settings, db, MemoryState(), BillerRegistry.from_settings(settings, db))
        task = await start_polling_task(settings, conversation,
                                        session=LocalAiohttpSession(api=TelegramAPIServer.from_base(server.base_url)))
        try:
            yield server
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_amina_links_her_line_and_gets_the_invoice_pdf_in_french(seeded_db):
    async with polling_bot(seeded_db) as server:
        amina = TelegramChat(server, server.user(1001, first_name="Amina", language_code="fr"))
        await amina.say("/start")
        assert "Bonjour Amina" in amina.text
        await amina.press("Lier un compte")
        await amina.press("Maroc Telecom")
        await amina.press("Mobile")
        assert server.reply_keyboard(1001) is not None  # "share my number"
        await amina._after(lambda: amina.user.share_contact("+212623363444"))
        assert "Code de paiement" in amina.text
        await amina.say("111111")
        assert "5e ligne" in amina.text or "Code de paiement" in amina.text
        await amina.say("528605")
        assert "Amina El Idrissi" in amina.text and "2 factures impayées" in amina.text
        await amina.press("Voir les factures")
        assert "0000528605022017" in amina.text
        await amina.press("0000528605022017")
        assert "249,84" in amina.text and "299,81" in amina.text
        await amina.press("PDF")
        (document,) = amina.documents()
        upload = document.files["document"]
        assert upload.filename == "facture-0000528605022017.pdf" and upload.content.startswith(b"%PDF")
        assert not server.unanswered_callbacks()


async def test_youssef_pages_through_23_marsa_maroc_invoices_in_arabic(seeded_db):
    async with polling_bot(seeded_db) as server:
        youssef = TelegramChat(server, server.user(1002, first_name="Youssef", language_code="ar"))
        await youssef.say("/start")
        assert any("\u0600" <= ch <= "\u06ff" for ch in youssef.text)
        assert youssef.text.startswith("\u200f")  # right-to-left on every client
        await youssef.press("ربط حساب")
        await youssef.press("Marsa Maroc")
        await youssef.press("Casablanca")
        await youssef.say("000236")
        assert "TMTA TMTA" in youssef.text and "23" in youssef.text
        await youssef.press("عرض الفواتير")
        first = youssef.text
        assert "1/3" in first or "1 من 3" in first
        await youssef.press("التالي")
        assert youssef.calls[-1].method == "editMessageText"  # paging edits the list in place
        assert "2/3" in youssef.text or "2 من 3" in youssef.text
        await youssef.press("التالي")
        assert youssef.text != first
        await youssef.press("السابق")
        await youssef.press("السابق")
        await youssef.press("02296945")  # the oldest due date comes first
        assert "642,40" in youssef.text  # TTC of seed 002's first row (ar_MA: 2.642,40)
        await youssef.press("PDF")
        (document,) = youssef.documents()
        assert document.files["document"].filename == "facture-02296945.pdf"
        await youssef.say("/link")
        await youssef.press("PortNet")
        await youssef.say("A7K2")
        assert "SATAA IMPORT EXPORT SARL AU" in youssef.text
        assert not server.unanswered_callbacks()


async def test_card_numbers_are_deleted_and_stickers_get_a_way_back(seeded_db):
    async with polling_bot(seeded_db) as server:
        amina = TelegramChat(server, server.user(1003, language_code="en"))
        await amina.say("/start")
        calls = await amina.say("my card 4111 1111 1111 1111 exp 12/29")
        assert any(c.method == "deleteMessage" for c in calls)
        assert all("4111" not in (c.params.get("text") or "") for c in server.sent(1003))
        await amina._after(amina.user.send_sticker)
        assert "Menu" in amina.calls[-1].params["reply_markup"]["inline_keyboard"][-1][0]["text"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.asynccontextmanager
async def webhook_app(db) -> AsyncIterator[tuple[FakeBotAPI, str]]:  # noqa: ANN001
    async with FakeBotAPI(token=TOKEN) as server:
        settings = Settings(_env_file=None, sandbox=True, telegram_bot_token=SecretStr(TOKEN),
                            telegram_webhook_secret=SecretStr(SECRET), telegram_api_base=server.base_url)
        async with serve(create_app(settings, db=db)) as base:
            yield server, f"{base}/webhooks/telegram"


async def test_webhook_twice_the_same_update_gives_one_reply(seeded_db):
    async with webhook_app(seeded_db) as (server, url):
        user = server.user(2001, language_code="fr")
        update = user.make_text_update("/help")
        assert (await server.post_update(url, update, secret_token=SECRET))[0] == 200
        assert (await server.post_update(url, update, secret_token=SECRET))[0] == 200
        await server.wait_for(lambda calls: calls, chat_id=2001)
        await server.settle(0.3)
        assert len(server.sent(2001, "sendMessage")) == 1
        assert (await server.post_update(url, update, secret_token="wrong"))[0] == 403


async def test_twenty_updates_of_one_chat_at_once_are_answered_in_order(seeded_db):
    """20 updates queued before the bot polls arrive in one batch; the answers keep their order."""
    markers = {"/help": "never asks for your card", "/language": "Choose your language",
               "/payments": "no payment yet", "/accounts": "Link your first account"}
    async with FakeBotAPI(token=TOKEN) as server:
        user = server.user(2002, language_code="en")
        commands = [list(markers)[i % 4] for i in range(20)]
        for command in commands:
            user.send_text(command)
        settings = Settings(_env_file=None, sandbox=True, telegram_bot_token=SecretStr(TOKEN),
                            telegram_api_base=server.base_url)
        conversation = Conversation(settings, seeded_db, MemoryState(), BillerRegistry.from_settings(settings, seeded_db))
        task = await start_polling_task(settings, conversation,
                                        session=LocalAiohttpSession(api=TelegramAPIServer.from_base(server.base_url)))
        try:
            await server.wait_for(lambda calls: len([c for c in calls if c.method == "sendMessage"]) >= 20,
                                  chat_id=2002, timeout=30)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        answers = [c.params["text"] for c in server.sent(2002, "sendMessage")]
        assert len(answers) == 20
        assert [next(m for m, marker in markers.items() if marker in a) for a in answers] == commands


async def test_two_hundred_chats_at_once_are_all_answered(seeded_db):
    async with webhook_app(seeded_db) as (server, url):
        users = [server.user(3000 + i, language_code=("fr", "ar", "en")[i % 3]) for i in range(200)]
        async with httpx.AsyncClient(timeout=60) as client:
            results = await asyncio.gather(*(client.post(url, json=u.make_text_update("/start"),
                                                         headers={"X-Telegram-Bot-Api-Secret-Token": SECRET})
                                             for u in users))
        assert {r.status_code for r in results} == {200}
        await server.wait_for(lambda calls: len({c.chat_id for c in calls if c.method == "sendMessage"}) >= 200,
                              timeout=60)
        assert all(server.sent(u.id, "sendMessage") for u in users)
