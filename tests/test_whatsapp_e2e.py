"""Whole conversations on WhatsApp: the real adapter and Graph API client, the webhook under
uvicorn, the real conversation on the seeds' sandbox accounts, against the fake Graph API."""
from __future__ import annotations

import re

import pytest

from tests.whatsapp_app import whatsapp_shop


def first_page_numbers(message) -> set[str]:  # noqa: ANN001
    return {n for _, title in message.choices for n in re.findall(r"\d{8}", title)}


class WhatsAppChat:
    """A customer's phone: says things, taps by title, reads what arrived since the last action."""

    def __init__(self, customer) -> None:  # noqa: ANN001
        self.customer = customer
        self.messages: list = []

    async def _after(self, action) -> list:  # noqa: ANN001
        mark = len(self.customer.graph.sent_to(self.customer.address))
        answers = await action
        assert all(a.status_code == 200 for a in answers)
        self.messages = await self.customer.replies(after=mark)
        return self.messages

    async def say(self, text: str) -> list:
        return await self._after(self.customer.say(text))

    async def tap(self, title: str) -> list:
        return await self._after(self.customer.tap(title))

    @property
    def text(self) -> str:
        return "\n".join(m.text for m in self.messages)

    def of_type(self, kind: str) -> list:
        return [m for m in self.messages if m.type == kind]


async def link_amina_line(amina: WhatsAppChat) -> list[str]:
    """Amina links her Maroc Telecom mobile line; returns what she read after each step."""
    seen = []
    for step in (amina.say("Bonjour"), amina.tap("Lier un compte"), amina.tap("Maroc Telecom"), amina.tap("Mobile"),
                 amina.say("0623363444"), amina.say("528605")):
        await step
        seen.append(amina.text)
    return seen


async def test_amina_links_her_line_and_gets_the_invoice_pdf_in_french(seeded_db):
    async with whatsapp_shop(seeded_db) as shop:
        amina = WhatsAppChat(shop.graph.customer("212623363444", "Amina"))
        seen = await link_amina_line(amina)
        assert "Bonjour Amina" in seen[0] and "Code de paiement" in seen[-2]
        assert "Amina El Idrissi" in amina.text and "2 factures impayées" in amina.text
        await amina.tap("Voir les factures")
        assert "0000528605022017" in amina.text
        await amina.tap("0000528605022017")
        assert "249,84" in amina.text and "299,81" in amina.text
        await amina.tap("PDF")
        (document,) = amina.of_type("document")
        media = shop.graph.media[document.body["document"]["id"]]
        assert document.body["document"]["filename"] == "facture-0000528605022017.pdf"
        assert media.content.startswith(b"%PDF") and media.mime_type == "application/pdf"
        assert not shop.graph.refused


async def test_youssef_pages_through_23_marsa_maroc_invoices_in_arabic_as_lists(seeded_db):
    async with whatsapp_shop(seeded_db) as shop:
        youssef = WhatsAppChat(shop.graph.customer("212661000236", "Youssef"))
        await youssef.say("السلام عليكم")
        await youssef.tap("Langue")
        await youssef.tap("العربية")
        assert youssef.text.startswith("\u200f")  # right to left on every phone
        await youssef.tap("ربط حساب")
        await youssef.tap("Marsa Maroc")
        await youssef.tap("Casablanca")
        await youssef.say("000236")
        assert "TMTA TMTA" in youssef.text and "23" in youssef.text
        await youssef.tap("عرض الفواتير")
        assert "1 من 3" in youssef.text or "1/3" in youssef.text
        (menu,) = [m for m in youssef.messages if m.choices]
        assert menu.interactive["type"] == "list" and len(menu.choices) <= 10
        assert all(len(title) <= 24 for _, title in menu.choices)
        # 14 options (10 invoices, next, pay, filters, menu): a page of 8 and a row to the rest
        assert len(menu.choices) == 9 and "02296945" in menu.choices[0][1]
        assert "14. " in menu.text  # every option also written as a numbered line
        await youssef.tap("(2/2)")
        (rest,) = youssef.messages
        assert [title for _, title in rest.choices][-1] == "◀ السابق"
        await youssef.tap("التالي")  # the conversation's own next page of invoices
        assert "2 من 3" in youssef.text or "2/3" in youssef.text
        (page_two,) = [m for m in youssef.messages if m.choices]
        eleventh = re.search(r"\d{8}", page_two.choices[0][1]).group(0)
        assert "11. " in youssef.text and eleventh not in first_page_numbers(menu)
        await youssef.say("1")  # a typed number picks the first option: the 11th invoice
        assert eleventh in youssef.text and "العربية" not in youssef.text
        await youssef.tap("PDF")
        (document,) = youssef.of_type("document")
        assert document.body["document"]["filename"] == f"facture-{eleventh}.pdf"
        assert shop.graph.media[document.body["document"]["id"]].content.startswith(b"%PDF")
        assert not shop.graph.refused


async def test_a_tap_on_an_older_menu_gets_the_current_menu_and_changes_nothing(seeded_db):
    async with whatsapp_shop(seeded_db) as shop:
        customer = shop.graph.customer("212600000001", "Karim")
        karim = WhatsAppChat(customer)
        await karim.say("Salut")
        first_menu = karim.messages[-1]
        await karim.tap("Aide")
        await karim.tap("Menu")
        await karim._after(customer.tap("Lier un compte", on=first_menu))
        assert "ancien message" in karim.text
        assert "Quel émetteur" not in karim.text and "Quel facturier" not in karim.text
        # the menu sent again is current: tapping it works
        await karim.tap("Lier un compte")
        assert "Maroc Telecom" in karim.text


async def test_the_same_webhook_delivered_five_times_gets_one_reply(seeded_db):
    async with whatsapp_shop(seeded_db) as shop:
        customer = shop.graph.customer("212600000002", "Salma")
        answers = await customer.say("Bonjour", times=5)
        assert [a.status_code for a in answers] == [200] * 5
        await customer.replies()
        await shop.idle()
        assert len(shop.graph.sent_to(customer.address)) == 1


LABELS = {
    "fr": {"link": "Lier un compte", "pay": "Payer", "continue": "Continuer", "yes": "Oui, prévenez-moi",
           "fatourati": "Fatourati", "reference": r"Fatourati : (\d{13})", "amount": "3 600,00"},
    "ar": {"link": "ربط حساب", "pay": "أداء", "continue": "متابعة", "yes": "نعم، أبلغني",
           "fatourati": "فواتيري", "reference": r"فواتيري الخاص بك: (\d{13})", "amount": "3.600,00"},
}


async def link_portnet(chat: WhatsAppChat, language: str = "fr") -> None:
    await chat.say("Bonjour")
    if language == "ar":
        await chat.tap("Langue")
        await chat.tap("العربية")
    await chat.tap(LABELS[language]["link"])
    await chat.tap("PortNet")
    await chat.say("K9AS")


async def fatourati_reference(chat: WhatsAppChat, *, language: str = "fr", opt_in: bool = False) -> str:
    labels = LABELS[language]
    await link_portnet(chat, language)
    if opt_in:
        await chat.tap(labels["yes"])
    await chat.tap(labels["pay"])
    await chat.tap(labels["continue"])
    await chat.tap(labels["fatourati"])
    return re.search(labels["reference"], chat.text).group(1)


@pytest.mark.parametrize("language", ["fr", "ar"])
async def test_a_fatourati_reference_with_its_qr_then_the_payment_confirmation_and_receipt(seeded_db, language):
    from decimal import Decimal

    from pypdf import PdfReader
    import io

    from webhooks.sandbox_gateways import pay_reference

    async with whatsapp_shop(seeded_db) as shop:
        customer = shop.graph.customer("212600000003", "Nadia")
        nadia = WhatsAppChat(customer)
        reference = await fatourati_reference(nadia, language=language)
        (qr,) = nadia.of_type("image")
        media = shop.graph.media[qr.body["image"]["id"]]
        assert media.content.startswith(b"\x89PNG") and reference in qr.text.replace(" ", "")
        result = await pay_reference(shop.base, None, reference, Decimal("3600.00"), settings=shop.settings)
        assert result.accepted
        mark = len(shop.graph.sent_to(customer.address))
        await shop.deliver()
        delivered = shop.graph.sent_to(customer.address)[mark:]
        assert [m.type for m in delivered][-1] == "document"  # inside the window: free-form, receipt attached
        said = "\n".join(m.text for m in delivered)
        assert LABELS[language]["amount"] in said.replace("\u202f", " ").replace("\xa0", " ")
        assert said.startswith("\u200f") is (language == "ar")
        receipt = shop.graph.media[delivered[-1].body["document"]["id"]]
        text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(receipt.content)).pages)
        assert reference in text or "00028653" in text
        assert not shop.graph.refused


async def test_the_opt_in_is_asked_once_after_the_first_link_and_recorded(seeded_db):
    from sqlalchemy import select

    from core.models import ChatUser

    async with whatsapp_shop(seeded_db) as shop:
        customer = shop.graph.customer("212600000004", "Hassan")
        hassan = WhatsAppChat(customer)
        await link_portnet(hassan)
        question = hassan.messages[-1]
        # asked right after the first link, not before (nothing to notify about without an account)
        assert [m for m in shop.graph.sent_to(customer.address) if "/notifications" in m.text] == [question]
        assert "/notifications" in question.text and [t for _, t in question.choices] == ["Oui, prévenez-moi", "Non merci"]
        await hassan.say("1")  # a typed number still picks from the account's menu, not the question
        assert "Factures impayées" in hassan.text or "factures" in hassan.text.lower()
        assert all("/notifications" not in m.text for m in hassan.messages)
        await hassan.tap("Oui, prévenez-moi")
        assert "C'est noté" in hassan.text
        async with seeded_db.session() as session:
            user = await session.scalar(select(ChatUser).where(ChatUser.chat_id == customer.address))
        assert user.whatsapp_opt_in is True and user.whatsapp_opt_in_at is not None
        await hassan.say("/menu")
        assert all("/notifications" not in m.text for m in hassan.messages)  # asked once
        await hassan.say("/notifications")  # ... and asked again on request
        await hassan.tap("Non merci")
        async with seeded_db.session() as session:
            user = await session.scalar(select(ChatUser).where(ChatUser.chat_id == customer.address))
        assert user.whatsapp_opt_in is False


async def test_a_payment_confirmed_after_the_window_closed_arrives_as_a_template_with_the_receipt(seeded_db):
    from datetime import timedelta
    from decimal import Decimal

    from sqlalchemy import update

    from core.models import ChatUser, utcnow
    from webhooks.sandbox_gateways import pay_reference

    async with whatsapp_shop(seeded_db) as shop:
        customer = shop.graph.customer("212600000005", "Nadia")
        nadia = WhatsAppChat(customer)
        reference = await fatourati_reference(nadia, opt_in=True)
        # A day and more goes by, on Meta's clock and on ours.
        shop.graph.travel(25 * 3600)
        async with seeded_db.transaction() as session:
            await session.execute(update(ChatUser).where(ChatUser.chat_id == customer.address)
                                  .values(last_inbound_at=utcnow() - timedelta(hours=25)))
        assert (await pay_reference(shop.base, None, reference, Decimal("3600.00"), settings=shop.settings)).accepted
        mark = len(shop.graph.sent_to(customer.address))
        await shop.deliver()
        (paid,) = shop.graph.sent_to(customer.address)[mark:]
        template = paid.body["template"]
        assert template["name"] == "fatoura_payment_paid" and template["language"]["code"] == "fr_MA"
        header, body = template["components"]
        receipt = shop.graph.media[header["parameters"][0]["document"]["id"]]
        assert receipt.content.startswith(b"%PDF") and header["parameters"][0]["document"]["filename"].endswith(".pdf")
        amount, transaction = (p["text"] for p in body["parameters"])
        assert "3" in amount and "600,00" in amount and transaction
        assert not shop.graph.refused


async def test_a_card_payment_link_is_a_call_to_action_button_that_opens_our_pay_page(seeded_db):
    import httpx

    async with whatsapp_shop(seeded_db) as shop:
        amina = WhatsAppChat(shop.graph.customer("212623363444", "Amina"))
        await link_amina_line(amina)
        await amina.tap("Payer")
        await amina.tap("Continuer")
        await amina.tap("Carte (CMI)")
        (link,) = [m for m in amina.messages if m.interactive.get("type") == "cta_url"]
        url = link.interactive["action"]["parameters"]["url"]
        assert url.startswith(shop.base + "/pay/")
        async with httpx.AsyncClient() as browser:
            assert (await browser.get(url)).status_code == 200
        assert not shop.graph.refused
