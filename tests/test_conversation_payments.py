"""Paying from the chat: selection (one issuer, all selected by default), totals, channels."""
from __future__ import annotations

import pytest

from bot.conversation.engine import Conversation
from bot.conversation.replies import Image
from core.billers.registry import BillerRegistry
from core.config import Settings
from core.state import MemoryState
from tests.chat import Chat


@pytest.fixture
def conversation(seeded_db):
    settings = Settings(sandbox=True, public_base_url="http://127.0.0.1:8000")
    return Conversation(settings, seeded_db, MemoryState(), BillerRegistry.from_settings(settings, seeded_db))


async def link(chat: Chat, *steps: str) -> None:
    await chat.start()
    await chat.press_data("L")
    for step in steps:
        if step.startswith("L|"):
            await chat.press_data(step)
        else:
            await chat.say(step)


async def test_amina_unticks_one_invoice_and_gets_a_fatourati_reference(conversation):
    chat = Chat(conversation, language="en")
    await link(chat, "L|iam|mobile", "0623363444", "528605")
    await chat.press("Pay")
    assert "2 invoices selected" in chat.text and chat.text.count("✅") == 2
    await chat.press("✅ 1.")  # pay the older one later
    assert "1 invoice selected, total MAD299.81" in chat.text.replace("\xa0", "")
    await chat.press("Continue")
    assert "HT): MAD249.84" in chat.text.replace("\xa0", "") and "TVA): MAD49.97" in chat.text.replace("\xa0", "")
    labels = [b.label for b in chat.buttons()]
    assert "Card (CMI)" in labels and "Fatourati reference" in labels and not any("Tashilat" in x for x in labels)
    await chat.press("Fatourati reference")
    assert "Your Fatourati reference: " in chat.text and "Valid until" in chat.text and "cashplus" in chat.text.lower()
    assert "sandbox" in chat.text
    assert any(isinstance(r, Image) and r.content.startswith(b"\x89PNG") for r in chat.replies)
    await chat.command("payments")
    assert "pending" in chat.text and "Reference" in chat.text
    # the reference covers the invoice: a second payment of it is refused with a choice
    await chat.command("accounts")
    await chat.press("1.")
    await chat.press("Pay")
    assert "payment is in progress" in chat.text and chat.text.count("✅") == 1


async def test_portnet_pays_one_issuer_at_a_time_with_its_allowed_means(conversation):
    chat = Chat(conversation, language="en")
    await link(chat, "L|portnet", "A7K2")
    await chat.press("Pay")
    assert "one issuer" in chat.text
    text = chat.text
    assert text.count("✅") == 1  # ANP alone first (oldest due date) or PORTNET: one issuer selected
    await chat.press("PORTNET")
    assert "00069321" in chat.text
    await chat.press("Continue")
    labels = [b.label for b in chat.buttons()]
    assert "Tashilat cash code (Amanpay)" in labels and "Card (CMI)" not in labels  # Amanpay, chèque, virement
    await chat.press("Tashilat")
    assert "Your Tashilat payment code: " in chat.text
    code = chat.text.split("Your Tashilat payment code: ")[1].split("\n")[0]
    assert len(code) == len("18 0857 637-947") and code[2] == " " and code[11] == "-"


async def test_card_payment_gives_a_link_to_our_pay_page_and_never_asks_for_the_card(conversation):
    chat = Chat(conversation, language="fr")
    await link(chat, "L|portnet", "K9AS")
    await chat.press("Payer")
    await chat.press("Continuer")
    await chat.press("Carte")
    (url,) = [b.url for b in chat.buttons() if b.url]
    assert url.startswith("http://127.0.0.1:8000/pay/") and len(url.rsplit("/", 1)[1]) >= 32
    assert "carte" in chat.text.lower() and "numéro de carte" not in chat.text.lower()
