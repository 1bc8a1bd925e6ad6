"""The web chat page in headless Chromium against a real uvicorn server, with a scripted conversation:
chips, typed text, a file card, an Arabic right-to-left turn, and a reconnect."""
from __future__ import annotations

import pytest
from fastapi import FastAPI

from bot.conversation.events import Event, EventKind
from bot.conversation.replies import Button, Document, Text
from core.i18n import translator
from tests.browser import ChatPage, browser, launch_chromium, serve  # noqa: F401 - browser is a fixture
from webhooks.webchat import install_webchat

pytestmark = pytest.mark.browser

PDF = b"%PDF-1.4\n% facture Maroc Telecom 03/2024\n" + bytes(range(256)) + b"\n%%EOF\n"


def fr_menu(intro: str = "Bonjour Amina ! Que voulez-vous faire ?", replace: bool = False) -> Text:
    return Text(intro, ((Button("Factures impayées", "unpaid"), Button("Lier un compte", "link")),
                        (Button("Langue", "lang"), Button("Aide", "help"))), replace=replace)


class ScriptedConversation:
    """Fatoura's first steps, in French then Arabic, from a fixed script."""

    def __init__(self) -> None:
        self.language = "fr"
        self.events: list[Event] = []

    async def handle(self, event: Event, early=None) -> list:  # noqa: ANN001
        self.events.append(event)
        rtl = self.language == "ar"
        if event.kind is EventKind.START:
            return [fr_menu()]
        if event.kind is EventKind.BUTTON:
            if event.data == "unpaid":
                return [Text("Vous avez 2 factures impayées :\n\n"
                             "1. Maroc Telecom Mobile — 03/2024\n   0623363444 · 199,00 MAD · avant le 15/04/2024\n\n"
                             "2. Maroc Telecom Internet — 03/2024\n   N° client 1020304 · 349,00 MAD",
                             ((Button("PDF facture 1", "pdf:1"), Button("Payer la 1", "pay:1")),
                              (Button("Payer en ligne", url="https://pay.example.ma/p/abc"),),
                              (Button("Menu", "menu"),)), replace=True)]
            if event.data == "pdf:1":
                return [Document("facture-MT-03-2024.pdf", PDF, caption="Facture Maroc Telecom 03/2024")]
            if event.data == "lang":
                return [Text("Choisissez votre langue :",
                             ((Button("Français", "lang:fr"), Button("العربية", "lang:ar"), Button("English", "lang:en")),),
                             replace=True)]
            if event.data == "lang:ar":
                self.language = "ar"
                return [Text("تم تغيير اللغة.\n\nماذا تريد أن تفعل؟",
                             ((Button("الفواتير غير المؤداة", "unpaid"), Button("ربط حساب", "link")),
                              (Button("اللغة", "lang"), Button("مساعدة", "help"))), replace=True, rtl=True)]
            return [fr_menu(replace=True)]
        if rtl:
            return [Text(f"كتبت: {event.text}\nسأبحث عن فواتيرك.", rtl=True)]
        return [Text(f"Vous avez écrit : {event.text}")]


@pytest.fixture
def conversation() -> ScriptedConversation:
    return ScriptedConversation()


@pytest.fixture
def app(conversation) -> FastAPI:
    app = FastAPI()
    install_webchat(app, conversation)
    return app


async def test_amina_taps_types_downloads_and_switches_to_arabic(app, conversation, browser):
    async with serve(app) as base_url:
        chat = await ChatPage.open(browser, base_url, lang="fr")
        page = chat.page
        assert await page.title() == "Fatoura"
        menu = await chat.wait_for_bot("Que voulez-vous faire ?")
        assert await chat.direction(menu) == "ltr"
        assert await page.get_attribute("#input", "placeholder") == translator("fr")._("Type a message")

        await chat.press("Factures impayées")
        await chat.wait_for_bot("2 factures impayées")
        # The menu was edited into the list, not followed by it.
        assert len(await chat.bot_texts()) == 1

        await chat.send("0623363444")
        await chat.wait_for_bot("Vous avez écrit : 0623363444")
        assert await chat.my_bubbles.all_inner_texts() == ["0623363444"]

        await chat.press("PDF facture 1")
        await page.locator(".file-card").wait_for()
        assert "facture-MT-03-2024.pdf" in await page.locator(".file-name").inner_text()
        assert await page.locator(".file-download").inner_text() == translator("fr")._("Download")
        filename, content = await chat.download()
        assert (filename, content) == ("facture-MT-03-2024.pdf", PDF)
        link = page.locator(".chip.link")
        assert await link.get_attribute("href") == "https://pay.example.ma/p/abc"
        assert await link.get_attribute("rel") == "noopener noreferrer"
        await chat.wait_idle()
        await chat.screenshot("webchat-fr")

        await chat.press("Menu")
        await chat.press("Langue")
        await chat.press("العربية")
        arabic = await chat.wait_for_bot("تم تغيير اللغة")
        assert await chat.direction(arabic) == "rtl"
        assert await page.evaluate("[document.documentElement.dir, document.documentElement.lang]") == ["rtl", "ar"]
        ar = translator("ar")
        assert await page.get_attribute("#input", "placeholder") == ar._("Type a message")
        assert await page.inner_text("#send") == ar._("Send")
        # In Arabic the bot's bubbles sit on the right, the chips under them read right to left.
        box, view = await arabic.bounding_box(), page.viewport_size
        assert box["x"] + box["width"] > view["width"] - 40
        assert await chat.direction(page.locator(".chips").last) == "rtl"

        await chat.send("سلام، بغيت نخلص الفاتورة")
        answer = await chat.wait_for_bot("كتبت:")
        assert await chat.direction(answer) == "rtl"
        await chat.wait_idle()
        await chat.screenshot("webchat-ar")
        assert chat.errors == []
        await chat.close()

    kinds = [e.kind for e in conversation.events]
    assert kinds[0] is EventKind.START and kinds.count(EventKind.TEXT) == 2
    sessions = {e.chat_id for e in conversation.events}
    assert len(sessions) == 1 and len(sessions.pop()) == 22
    assert all(e.channel == "webchat" for e in conversation.events)


async def test_the_page_reconnects_and_sends_what_was_typed_meanwhile(app, conversation):
    async with launch_chromium() as browser:
        async with serve(app) as base_url:
            chat = await ChatPage.open(browser, base_url, lang="fr")
            await chat.wait_for_bot("Que voulez-vous faire ?")
        port = int(base_url.rsplit(":", 1)[1])
        page = chat.page
        await page.wait_for_selector("#banner:not([hidden])")
        assert await page.inner_text("#banner") == translator("fr")._("Reconnecting…")
        await chat.send("toujours là ?")

        async with serve(app, port=port):
            await chat.wait_for_bot("Vous avez écrit : toujours là ?", timeout=20_000)
            assert await page.is_hidden("#banner")
            # The start sent before the drop is not sent twice.
            assert [e.kind for e in conversation.events] == [EventKind.START, EventKind.TEXT]
            await chat.close()
