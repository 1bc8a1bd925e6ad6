"""A new invoice pushed into a Telegram chat, end to end: Karim links his PortNet subscription in
the chat (real aiogram client, fake Bot API), the sandbox biller issues an invoice and sends its
signed event to our web app, the worker delivers the announcement, and its buttons work."""
from __future__ import annotations

import asyncio
import contextlib
import re
from datetime import date
from decimal import Decimal

from aiogram.client.telegram import TelegramAPIServer
from pydantic import SecretStr

from bot.channels.telegram.runner import start_polling_task
from bot.conversation.engine import Conversation
from core.billers.registry import BillerRegistry
from core.billers.sandbox.store import issue_invoice
from core.config import Settings
from core.services.biller_events import issued_event, post_event
from core.state import MemoryState
from fatoura.worker import build_delivery, build_senders
from tests.browser import serve
from tests.fakes.bot_api import FakeBotAPI
from tests.fakes.echo_bot import LocalAiohttpSession
from tests.test_telegram_e2e import TelegramChat
from webhooks.app import create_app

TOKEN = "123456:PUSH-e2e"


async def test_karim_gets_his_new_portnet_invoice_pushed_and_opens_its_pdf(seeded_db):
    db = seeded_db
    async with FakeBotAPI(token=TOKEN) as server:
        settings = Settings(_env_file=None, sandbox=True, secret_key=SecretStr("push-e2e"),
                            telegram_bot_token=SecretStr(TOKEN), telegram_api_base=server.base_url)
        billers = BillerRegistry.from_settings(settings, db)
        state = MemoryState()
        conversation = Conversation(settings, db, state, billers)
        polling = await start_polling_task(settings, conversation,
                                           session=LocalAiohttpSession(api=TelegramAPIServer.from_base(server.base_url)))
        senders = build_senders(settings, db, billers)
        delivery = build_delivery(settings, db, senders, state, billers)
        stop = asyncio.Event()
        worker = asyncio.create_task(delivery.run(stop, idle_seconds=0.2))
        try:
            karim = TelegramChat(server, server.user(2001, first_name="Karim", language_code="fr"))
            await karim.say("/start")
            await karim.press("Lier un compte")
            await karim.press("PortNet")
            await karim.say("A7K2")
            assert "SATAA IMPORT EXPORT" in karim.text

            account, invoice = await issue_invoice(db, "portnet-A7K2", Decimal("2500.00"), due_in_days=12,
                                                   today=date.today())
            async with serve(create_app(settings, db=db)) as web:
                pushed = await karim._after(lambda: asyncio.ensure_future(post_event(
                    web, settings, "portnet", issued_event(account.ref, invoice.number))))
            (message,) = [c for c in pushed if c.method == "sendMessage"]
            assert f"Nouvelle facture de {invoice.issuer}" in message.text
            assert invoice.number in message.text and "3\u202f000,00" in message.text  # TTC = 2,500 HT + 20%
            await karim.press("Voir le PDF")
            (document,) = karim.documents()
            assert document.files["document"].filename == f"facture-{invoice.number}.pdf"
            await karim.press("Payer")
            # The selection of the new invoice's issuer, the new invoice ticked.
            assert f"Payer {invoice.issuer}" in karim.text
            assert re.search(rf"✅ \d+\. N° {invoice.number} ", karim.text)
            assert not server.unanswered_callbacks()
        finally:
            stop.set()
            await worker
            polling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await polling
