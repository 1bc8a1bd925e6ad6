"""Whole conversations through the channel-neutral dialogue, on the seeds' sandbox accounts."""
from __future__ import annotations

import asyncio

import pytest

from bot.conversation.engine import Conversation, parse_date_range
from bot.conversation.replies import DeleteMessage, Text
from core.billers.registry import BillerRegistry
from core.config import Settings
from core.errors import InvalidDate
from core.state import MemoryState
from tests.chat import Chat


@pytest.fixture
def conversation(seeded_db):
    settings = Settings(sandbox=True)
    return Conversation(settings, seeded_db, MemoryState(), BillerRegistry.from_settings(settings, seeded_db))


async def link_iam(chat: Chat) -> None:
    await chat.start()
    await chat.press_data("L")
    await chat.press("Maroc Telecom")
    await chat.press("Mobile")
    await chat.say("06 23 36 34 44")
    await chat.say("528605")


async def test_amina_links_her_mobile_line_and_sees_two_unpaid_invoices(conversation):
    chat = Chat(conversation)
    await chat.start()
    assert "Bonjour Amina" in chat.text
    await chat.press("Lier un compte")
    await chat.press("Maroc Telecom")
    await chat.press("Mobile")
    assert "numéro" in chat.text.lower()
    await chat.say("0623")  # malformed: refused, nothing changes
    assert "0612345678" in chat.text
    await chat.say("+212 6 23 36 34 44")
    assert "Code de paiement" in chat.text
    await chat.say("111111")
    assert "5e ligne" in chat.text or "Code de paiement" in chat.text  # says where to find the code
    await chat.say("528605")
    assert "Amina El Idrissi" in chat.text
    assert "2 factures impayées" in chat.text
    await chat.press("Voir les factures")
    assert "0000528605022017" in chat.text and "299,81" in chat.text
    await chat.press("0000528605022017")
    assert "249,84" in chat.text and "49,97" in chat.text and "janvier 2017" in chat.text
    await chat.press("PDF")
    (pdf,) = chat.documents
    assert pdf.filename == "facture-0000528605022017.pdf" and pdf.content.startswith(b"%PDF")


async def test_arabic_customer_gets_arabic_right_to_left_replies(conversation):
    chat = Chat(conversation, language="ar")
    await chat.start()
    replies = [r for r in chat.replies if isinstance(r, Text)]
    assert replies and all(r.rtl for r in replies)


async def test_a_phone_number_in_arabic_text_keeps_its_left_to_right_order(conversation):
    # Unisolated, "06 23 36 34 44" in a right-to-left line shows as "44 34 36 23 06".
    chat = Chat(conversation, chat_id="ar-phone", language="ar")
    await chat.start()
    await chat.press_data("L|iam|mobile")
    await chat.say("0623363444")
    await chat.say("528605")
    assert "\u206606 23 36 34 44\u2069" in chat.text
    french = Chat(conversation, chat_id="fr-phone", language="fr")
    await link_iam(french)
    assert "06 23 36 34 44" in french.text and "\u2066" not in french.text


async def test_marsa_maroc_23_invoices_in_three_pages(conversation):
    chat = Chat(conversation, language="en")
    await chat.start()
    await chat.press("Link an account")
    await chat.press("Marsa Maroc")
    await chat.press("Casablanca")
    await chat.say("000236")
    assert "23 unpaid invoices" in chat.text
    await chat.press("See the invoices")
    assert "Page 1 of 3" in chat.text and chat.text.count("No. 0") >= 10
    await chat.press("Next")
    assert "Page 2 of 3" in chat.text
    await chat.press("Next")
    assert "Page 3 of 3" in chat.text and "Next" not in [b.label for b in chat.buttons()]
    assert "OVERDUE" in chat.text


async def test_filters_by_issuer_and_number(conversation):
    chat = Chat(conversation, language="en")
    await chat.start()
    await chat.press("Link an account")
    await chat.press("PortNet")
    await chat.say("a7k2")
    await chat.press("See the invoices")
    assert "4 invoices" in chat.text
    await chat.press("Filters")
    await chat.press("Issuer")
    await chat.press("ANP")
    assert "00071210" in chat.text and "00069321" not in chat.text and "issuer: ANP" in chat.text
    await chat.press("Filters")
    await chat.press("Clear")
    await chat.press("Filters")
    await chat.press("Invoice number")
    await chat.say("00069321")
    assert "00069321" in chat.text and "1 invoice," in chat.text
    await chat.press("00069321")
    assert "Amanpay" in chat.text and "Bank transfer" in chat.text and "Abonnement annuel IMP" in chat.text


async def test_card_number_is_deleted_and_never_echoed(conversation):
    chat = Chat(conversation)
    await chat.start()
    replies = await chat.say("ma carte 4111 1111 1111 1111 exp 12/29")
    assert any(isinstance(r, DeleteMessage) for r in replies)
    assert "4111" not in chat.text
    state = await conversation.store.get_json("conv:webchat:c1")
    assert "4111" not in repr(state)


async def test_duplicate_update_has_no_second_effect(conversation):
    chat = Chat(conversation)
    await chat.start()
    from bot.conversation.events import EventKind

    first = await chat._send(EventKind.COMMAND, text="help", update_id="dup-1")
    second = await chat._send(EventKind.COMMAND, text="help", update_id="dup-1")
    assert first and second == []


async def test_stale_button_is_answered_with_the_current_state(conversation):
    chat = Chat(conversation)
    await link_iam(chat)
    await chat.command("accounts")
    await chat.press("1.")
    await chat.press("Délier")
    confirm = chat.button("Oui").data
    await chat.press_data(confirm)
    assert "délié" in chat.text
    await chat.press_data(confirm)  # the old confirmation again: not acted on twice
    assert "ancien message" in chat.text
    await chat.press_data("I|9999|0000528605022017")
    assert "ancien message" in chat.text


async def test_forget_deletes_everything_after_confirmation(conversation):
    chat = Chat(conversation)
    await link_iam(chat)
    await chat.command("forget")
    await chat.press("Oui")
    assert "1 compte lié" in chat.text
    await chat.start()
    assert "Lier un compte" in [b.label for b in chat.buttons()] and "Factures impayées" not in chat.text


async def test_language_change_is_remembered(conversation):
    chat = Chat(conversation)
    await chat.start()
    await chat.press("Langue")
    await chat.press("English")
    assert "Language changed" in chat.text
    await chat.command("help")
    assert "never asks for your card number" in chat.text


async def test_unexpected_input_leads_back_to_the_menu(conversation):
    chat = Chat(conversation)
    await chat.start()
    from bot.conversation.events import EventKind

    for kind, kw in [(EventKind.UNSUPPORTED, {"text": "sticker"}), (EventKind.TEXT, {"text": "bonjour ?"}),
                     (EventKind.BUTTON, {"data": "zz|garbage"}), (EventKind.BUTTON, {"data": ""})]:
        await chat._send(kind, **kw)
        labels = [b.label for b in chat.buttons()]
        assert "Menu" in labels or "Aide" in labels  # a way back, or the menu itself


async def test_brute_force_on_subscription_codes_locks_the_chat(conversation):
    chat = Chat(conversation, language="en")
    await chat.start()
    linked = 0
    for attempt in range(40):
        await chat.press_data("L|portnet")
        await chat.say(f"Z{attempt:03d}")
        if "Account linked" in chat.text:
            linked += 1
    assert linked == 0 and "Too many failed attempts" in chat.text
    await chat.press_data("L|portnet")
    await chat.say("A7K2")  # even the right code is refused while locked
    assert "Too many failed attempts" in chat.text


async def test_twenty_updates_of_one_chat_at_once_are_handled_in_order(seeded_db, state):
    settings = Settings(sandbox=True)
    conversation = Conversation(settings, seeded_db, state, BillerRegistry.from_settings(settings, seeded_db))
    chat = Chat(conversation, language="en")
    await chat.start()
    await chat.press("Link an account")
    await chat.press("PortNet")
    await chat.say("A7K2")
    from bot.conversation.events import Event, EventKind

    order = []
    original = conversation._handle

    async def spy(event, *args):
        order.append(event.update_id)
        return await original(event, *args)

    conversation._handle = spy
    events = [Event("webchat", "c1", EventKind.BUTTON, data="U|1", update_id=f"o{i}") for i in range(20)]
    results = await asyncio.gather(*(conversation.handle(e) for e in events))
    assert order == [e.update_id for e in events] and all(results)


def test_date_ranges():
    assert parse_date_range("01/01/2017 - 31/12/2017")[1].year == 2017
    for bad in ("2017", "31/02/2017 - 01/03/2017", "02/01/2017 - 01/01/2017"):
        with pytest.raises(InvalidDate):
            parse_date_range(bad)


async def test_a_thousand_wrong_codes_from_one_chat_never_link(conversation):
    chat = Chat(conversation, language="en")
    await chat.start()
    refused = 0
    for attempt in range(1000):
        await chat.press_data("L|portnet")
        await chat.say(f"{attempt:04d}")
        assert "Account linked" not in chat.text
        refused += "Too many failed attempts" in chat.text
    assert refused >= 990  # locked after a handful of real lookups


async def test_fifty_chats_guessing_one_lines_payment_code_are_locked_out(conversation):
    """A bot with 50 chats tries payment codes for one phone number, the right code last: refused."""
    for n in range(50):
        chat = Chat(conversation, chat_id=f"bot-{n}", language="en")
        await chat.press_data("L|iam|mobile")
        await chat.say("0623363444")
        await chat.say(f"{100000 + n}")
        assert "Account linked" not in chat.text
    chat = Chat(conversation, chat_id="bot-last", language="en")
    await chat.press_data("L|iam|mobile")
    await chat.say("0623363444")
    await chat.say("528605")
    assert "Too many failed attempts" in chat.text and "Account linked" not in chat.text


async def test_paid_history_shows_the_last_paid_invoices_with_pdfs(conversation):
    chat = Chat(conversation, language="en")
    await link_iam(chat)
    await chat.command("history")
    assert "Your last paid invoices" in chat.text and chat.text.count("MAROC TELECOM") == 4  # 08-11/2016
    await chat.press("PDF 1")
    (pdf,) = chat.documents
    assert pdf.filename == "facture-0000528605122016.pdf"


async def test_date_and_status_filters(conversation):
    chat = Chat(conversation, language="en")
    await link_iam(chat)
    await chat.press_data("Ua|0")
    await chat.press("Filters")
    await chat.press("Status")
    await chat.press("All")
    assert "6 invoices" in chat.text
    await chat.press("Filters")
    await chat.press("Dates")
    await chat.say("01/01/2017 - 28/02/2017")
    assert "2 invoices" in chat.text and "dates: 01/01/2017 – 28/02/2017" in chat.text
    await chat.press("Filters")
    await chat.press("Dates")
    await chat.say("31/02/2017")  # no such day: refused, the filter stays
    assert "not valid" in chat.text
