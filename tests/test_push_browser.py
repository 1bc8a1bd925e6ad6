"""A new invoice reaches an open web chat page, live: Youssef links his PortNet subscription in
the web chat in Arabic, the sandbox biller issues an invoice and sends its signed event to our web
app, and the announcement appears on his page without a reload; its PDF button works."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from pydantic import SecretStr

from core.billers.sandbox.store import issue_invoice
from core.config import Settings
from core.services.biller_events import issued_event, post_event
from tests.browser import ChatPage, launch_chromium, serve
from webhooks.app import create_app

pytestmark = pytest.mark.browser


async def test_youssef_sees_his_new_invoice_arrive_in_the_open_web_chat(seeded_db):
    settings = Settings(_env_file=None, sandbox=True, secret_key=SecretStr("push-browser"))
    async with serve(create_app(settings, db=seeded_db)) as base, launch_chromium() as browser:
        youssef = await ChatPage.open(browser, base, lang="ar")
        await youssef.wait_for_bot("Fatoura")
        await youssef.press("ربط حساب")
        await youssef.press("PortNet")
        await youssef.send("A7K2")
        await youssef.wait_for_bot("SATAA IMPORT EXPORT SARL AU")

        account, invoice = await issue_invoice(seeded_db, "portnet-A7K2", Decimal("2500.00"), due_in_days=12,
                                               today=date.today())
        status, _ = await post_event(base, settings, "portnet", issued_event(account.ref, invoice.number))
        assert status == 200
        announcement = await youssef.wait_for_bot("فاتورة جديدة من")  # no reload: the page is told
        assert invoice.number in await announcement.inner_text()
        await youssef.press("عرض ملف PDF")
        filename, content = await youssef.download()
        assert filename == f"facture-{invoice.number}.pdf" and content.startswith(b"%PDF")
        await youssef.screenshot("webchat-push-ar")
        assert not youssef.errors
