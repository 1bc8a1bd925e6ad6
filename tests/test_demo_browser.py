"""The product in a real browser: Amina opens the web chat, links her Maroc Telecom line with the
sample of seed 000, opens the unpaid invoice and downloads its PDF — in French and in Arabic."""
from __future__ import annotations

import pytest

from core.config import Settings
from tests.browser import chat_in_browser
from webhooks.app import create_app

pytestmark = pytest.mark.browser


async def test_amina_links_her_line_and_downloads_the_invoice_pdf_in_french(seeded_db):
    app = create_app(Settings(sandbox=True), db=seeded_db)
    async with chat_in_browser(app, lang="fr") as chat:
        await chat.wait_for_bot("Fatoura")
        await chat.press("Lier un compte")
        await chat.press("Maroc Telecom")
        await chat.press("Mobile")
        await chat.wait_for_bot("0623363444")  # the demo shows what to try
        await chat.send("06 23 36 34 44")
        await chat.wait_for_bot("Code de paiement")
        await chat.send("528605")
        await chat.wait_for_bot("Amina El Idrissi")
        await chat.press("Voir les factures")
        await chat.wait_for_bot("0000528605022017")
        await chat.press("0000528605022017")
        await chat.wait_for_bot("249,84")
        await chat.press("PDF")
        filename, content = await chat.download()
        assert filename == "facture-0000528605022017.pdf" and content.startswith(b"%PDF")
        await chat.screenshot("webchat-demo-fr")
        assert not chat.errors


async def test_the_web_chat_in_arabic_is_right_to_left(seeded_db):
    app = create_app(Settings(sandbox=True), db=seeded_db)
    async with chat_in_browser(app, lang="ar") as chat:
        bubble = await chat.wait_for_bot("Fatoura")
        assert await chat.direction(bubble) == "rtl"
        await chat.press("ربط حساب")
        await chat.press("PortNet")
        await chat.send("A7K2")
        await chat.wait_for_bot("SATAA IMPORT EXPORT SARL AU")
        await chat.screenshot("webchat-demo-ar")
        assert not chat.errors
