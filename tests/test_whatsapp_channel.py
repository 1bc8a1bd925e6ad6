"""The WhatsApp adapter piece by piece: the renderer against the fake Graph API (which refuses
what Meta refuses), the envelope parser on Meta's payload shapes, statuses and templates."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from hypothesis import given, settings as hsettings
from hypothesis import strategies as st

from bot.channels.whatsapp.client import GraphClient, GraphError
from bot.channels.whatsapp.receive import parse
from bot.channels.whatsapp.send import Recipient, WhatsAppSender
from bot.channels.whatsapp import templates
from bot.conversation.events import EventKind
from bot.conversation.replies import Button, DeleteMessage, Image, Text
from core.i18n import translator
from core.services.delivery_status import moves_forward
from tests.fakes.graph_api import FakeGraphAPI

FIXTURES = Path(__file__).parent / "fixtures" / "whatsapp"
FR, AR = translator("fr"), translator("ar")


@pytest.fixture
async def graph():
    async with FakeGraphAPI() as server:
        yield server


@pytest.fixture
async def sender(graph, state):
    client = GraphClient(graph.base_url, graph.token, graph.phone_number_id)
    yield WhatsAppSender(client, state)
    await client.close()


@pytest.fixture
def rachid(graph):
    customer = graph.customer("212600000020", "Rachid")
    customer.last_inbound = graph.now()
    return Recipient(customer.address, customer.address)


def buttons(*labels: str) -> tuple[tuple[Button, ...], ...]:
    return tuple((Button(label, f"x|{i}"),) for i, label in enumerate(labels))


async def test_long_button_labels_are_cut_at_a_word_and_stay_whole_in_the_numbered_text(graph, sender, rachid):
    labels = ("Voir toutes les factures impayées", "Voir toutes les factures payées", "Menu")
    await sender.render(rachid, [Text("Que voulez-vous faire ?", buttons(*labels))], FR)
    (sent,) = graph.sent
    titles = [title for _, title in sent.choices]
    assert all(len(t) <= 20 for t in titles) and len(set(titles)) == 3
    assert titles[0].endswith("…") and titles[2] == "Menu"
    for index, label in enumerate(labels, 1):
        assert f"{index}. {label}" in sent.text
    assert not graph.refused


async def test_more_than_three_choices_are_a_list_with_the_full_label_as_description(graph, sender, rachid):
    labels = ("Maroc Telecom", "PortNet", "Marsa Maroc", "DIAC e-facture — Direction des impôts", "Annuler")
    await sender.render(rachid, [Text("Quel facturier ?", buttons(*labels))], FR)
    (sent,) = graph.sent
    assert sent.interactive["type"] == "list" and sent.interactive["action"]["button"] == "Choisir"
    assert [title for _, title in sent.choices][:3] == ["Maroc Telecom", "PortNet", "Marsa Maroc"]
    assert sent.descriptions[3] == "DIAC e-facture — Direction des impôts" and len(sent.choices[3][1]) <= 24
    assert not graph.refused


async def test_twenty_three_choices_go_as_pages_of_a_list(graph, sender, rachid, state):
    labels = [f"Facture n° {n:08d}" for n in range(1, 24)]
    await sender.render(rachid, [Text("23 factures", buttons(*labels))], FR)
    first = graph.sent[-1]
    assert len(first.choices) == 9 and first.choices[-1][1] == "Plus de choix (2/3)"
    assert "23. Facture n° 00000023" in first.text  # every option is numbered in the text
    await sender.menu(rachid, FR, page=2)
    last = graph.sent[-1]
    assert [t for _, t in last.choices] == [*labels[16:], "◀ Précédent"]
    assert "23 factures" not in last.text  # a page turn shows the choices, not the text again
    menu = await state.get_json("wa:menu:" + rachid.chat_id)
    assert menu["ids"] == [last.wamid] and len(menu["options"]) == 23
    assert not graph.refused


async def test_a_long_text_with_buttons_goes_first_as_plain_messages(graph, sender, rachid):
    text = "\n".join(f"Ligne {n} : " + "détail " * 12 for n in range(80))  # about 7 000 characters
    await sender.render(rachid, [Text(text, buttons("Payer", "Menu"))], FR)
    *plain, choices = graph.sent
    assert len(plain) == 2 and all(m.type == "text" and len(m.text) <= 4096 for m in plain)
    assert choices.text == "1. Payer\n2. Menu" and len(choices.choices) == 2
    assert "".join(m.text for m in plain).replace("\n", "") == text.strip().replace("\n", "")
    assert not graph.refused


async def test_a_payment_link_is_a_call_to_action_button_carrying_the_text(graph, sender, rachid):
    reply = Text("Payez par carte : le lien est valable 30 minutes.",
                 ((Button("Payer 563,81 MAD par carte bancaire", url="https://fatoura.ma/pay/abc"),),
                  (Button("Annuler", "Yx|3"),)))
    await sender.render(rachid, [reply], FR)
    link, cancel = graph.sent
    action = link.interactive["action"]
    assert link.interactive["type"] == "cta_url" and action["parameters"]["url"] == "https://fatoura.ma/pay/abc"
    assert len(action["parameters"]["display_text"]) <= 20 and "30 minutes" in link.text
    assert cancel.choices == [("o1:Yx|3", "Annuler")]
    assert not graph.refused


async def test_arabic_goes_right_to_left_and_an_image_is_uploaded_with_its_caption(graph, sender, rachid):
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 100
    await sender.render(rachid, [Text("123 درهم", buttons("القائمة"), rtl=True), DeleteMessage("wamid.x"),
                                 Image(png, caption="مرجع " * 300)], AR)
    text, image, rest = graph.sent
    assert text.text.startswith("\u200f123")
    media = graph.media[image.body["image"]["id"]]
    assert media.content == png and media.mime_type == "image/png"
    assert len(image.text) <= 1024 and rest.type == "text"  # the caption's rest follows as text
    assert not graph.refused


async def test_a_refused_call_raises_metas_code(graph):
    client = GraphClient(graph.base_url, "wrong-token", graph.phone_number_id)
    with pytest.raises(GraphError) as refused:
        await client.send("212600000020", {"type": "text", "text": {"body": "x"}})
    await client.close()
    assert refused.value.code == 190 and refused.value.status == 401


def test_the_envelopes_parse_to_the_conversations_events():
    def only(name: str):  # noqa: ANN202
        (message,) = parse(json.loads((FIXTURES / name).read_text())).messages
        return message

    text = only("text.json")
    assert (text.kind, text.text, text.chat_id, text.name) == (EventKind.TEXT, "Bonjour", "212623363444", "Amina")
    button = only("button_reply.json")
    assert button.kind is EventKind.BUTTON and button.data == "o1:L" and button.context_id.startswith("wamid.")
    assert only("list_reply.json").data == "o1:L|iam"
    quick = only("template_quick_reply.json")
    assert (quick.kind, quick.data) == (EventKind.BUTTON, "U|1")
    contact = only("contacts.json")
    assert (contact.kind, contact.text) == (EventKind.CONTACT, "212623363444")
    assert only("image.json").kind is EventKind.UNSUPPORTED
    assert only("message_error_unsupported.json").kind is EventKind.UNSUPPORTED
    bsuid = only("text_bsuid.json")
    assert (bsuid.chat_id, bsuid.address) == ("MA.13491208655302741918", "212661234567")
    username = only("text_username_only.json")
    assert (username.chat_id, username.address) == ("MA.99887766554433221100", None)
    several = parse(json.loads((FIXTURES / "several_messages.json").read_text()))
    assert [m.name for m in several.messages] == ["Hind", "Rachid", "Mehdi"] and not several.unknown
    statuses = parse(json.loads((FIXTURES / "statuses.json").read_text())).statuses
    assert [s.status for s in statuses] == ["read", "sent", "delivered"]
    (failed,) = parse(json.loads((FIXTURES / "status_failed_131047.json").read_text())).statuses
    assert failed.error_codes == (131047,) and "Re-engagement" in failed.error
    unknown = parse(json.loads((FIXTURES / "template_status_update.json").read_text()))
    assert unknown.unknown == ["field 'message_template_status_update'"] and not unknown.messages
    assert parse([1, 2]).unknown and parse({"object": "page"}).unknown
    assert parse({"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", "value": {
        "messages": [{"id": "w1", "from": "2126", "type": "reaction"}]}}]}]}).silent == ["w1"]


@pytest.mark.parametrize("current, new, forward", [
    (None, "sent", True), ("sent", "delivered", True), ("delivered", "read", True), ("read", "delivered", False),
    ("read", "sent", False), ("delivered", "sent", False), ("sent", "failed", True), ("failed", "delivered", True),
    ("delivered", "failed", False), ("read", "failed", False), ("sent", "sent", False), ("sent", "deleted", False),
])
def test_a_status_only_moves_forward(current, new, forward):
    assert moves_forward(current, new) is forward


def test_the_template_of_a_kind_needs_all_its_params_else_the_generic_one():
    payload = {"text": "Nouvelle facture\n312,40 MAD", "params": {"issuer": "IAM", "number": "42", "amount": "312,40 MAD",
                                                                  "due_date": "15/04/2017"}}
    assert templates.choose("invoice_new", payload, {}, False) == (
        "fatoura_invoice_new", ["IAM", "42", "312,40 MAD", "15/04/2017"], False)
    del payload["params"]["due_date"]
    assert templates.choose("invoice_new", payload, {}, False) == ("fatoura_notice", ["Nouvelle facture 312,40 MAD"], False)
    paid = {"text": "Payé", "params": {"amount": "10,00 MAD", "transaction_id": "T1"}}
    assert templates.choose("payment_paid", paid, {}, True)[2] is True
    assert templates.choose("payment_paid", paid, {}, False)[0] == "fatoura_notice"  # its header needs the receipt
    custom = {"invoice_new": {"name": "facture_v2", "params": ["number"]}}
    assert templates.choose("invoice_new", {"params": {"number": "42"}}, custom, False) == ("facture_v2", ["42"], False)


async def test_a_page_row_of_a_forgotten_menu_gets_the_menu_from_the_conversation(graph, sender, rachid, state, db):
    from bot.channels.whatsapp.channel import WhatsAppChannel
    from bot.channels.whatsapp.receive import Inbound
    from bot.conversation.engine import Conversation
    from core.billers.registry import BillerRegistry
    from core.config import Settings

    settings = Settings(_env_file=None, sandbox=True)
    channel = WhatsAppChannel(db, Conversation(settings, db, state, BillerRegistry.from_settings(settings, db)), sender)
    await channel.on_message(Inbound("wamid.1", rachid.chat_id, EventKind.TEXT, address=rachid.to, text="Salut"))
    await state.delete("wa:menu:" + rachid.chat_id)  # the state expired, or another process without Redis
    await channel.on_message(Inbound("wamid.2", rachid.chat_id, EventKind.BUTTON, address=rachid.to, data="~p:1",
                                     context_id=graph.sent[-1].wamid))
    answer = graph.sent[-1]
    assert len(graph.sent) == 2 and "ancien message" in answer.text and "Lier un compte" in answer.text


async def test_a_zip_archive_which_whatsapp_refuses_goes_as_the_pdfs_inside_it(graph, sender, rachid):
    import io
    import zipfile

    from bot.conversation.replies import Document

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("Mobile 0623363444/0000528605012017.pdf", b"%PDF-1.4 janvier")
        archive.writestr("Mobile 0623363444/0000528605022017.pdf", b"%PDF-1.4 fevrier")
    await sender.render(rachid, [Document("factures-2017.zip", buffer.getvalue(), "application/zip",
                                          caption="Vos factures 2017")], FR)
    first, second = graph.sent
    assert [m.body["document"]["filename"] for m in graph.sent] == ["0000528605012017.pdf", "0000528605022017.pdf"]
    assert first.text == "Vos factures 2017" and second.text == ""
    assert graph.media[second.body["document"]["id"]].content == b"%PDF-1.4 fevrier"
    assert not graph.refused


@pytest.mark.parametrize("setting", [{"invoice_new": {"params": ["number"]}}, {"invoice_new": "facture"},
                                     {"agent_reply": {"name": "x", "params": "agent"}}])
def test_a_templates_setting_a_send_would_trip_on_is_refused_at_start(setting):
    with pytest.raises(ValueError, match="WHATSAPP_TEMPLATES"):
        templates.check(setting)


@pytest.mark.parametrize("label, shown", [("11. No. 03107920", "No. 03107920"), ("✅ 1. 00028653", "✅ 00028653"),
                                          ("1.5 MAD", "1.5 MAD"), ("PDF 3", "PDF 3")])
def test_whatsapp_numbers_the_options_itself_so_a_label_loses_its_own_number(label, shown):
    from bot.channels.whatsapp.send import numbered, plain_label

    assert plain_label(label) == shown
    assert numbered([(label, "x")]) == f"1. {shown}"


labels = st.text(alphabet=st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs")), max_size=70)


@hsettings(max_examples=60, deadline=None)
@given(body=st.text(max_size=3000), options=st.lists(labels, min_size=1, max_size=40),
       link=st.none() | labels, rtl=st.booleans())
def test_any_menu_renders_within_metas_limits_and_every_option_can_be_reached(body, options, link, rtl):
    asyncio.run(_render_menu(body, options, link, rtl))


async def _render_menu(body: str, options: list[str], link: str | None, rtl: bool) -> None:
    from core.state import MemoryState

    rows = [(Button(label, f"d|{i}"),) for i, label in enumerate(options)]
    if link is not None:
        rows.append((Button(link, url="https://fatoura.ma/pay/t0k3n"),))
    async with FakeGraphAPI() as graph:
        customer = graph.customer("212600000050")
        customer.last_inbound = graph.now()
        client = GraphClient(graph.base_url, graph.token, graph.phone_number_id)
        sender = WhatsAppSender(client, MemoryState())
        recipient = Recipient(customer.address, customer.address)
        await sender.render(recipient, [Text(body, tuple(rows), rtl=rtl)], AR if rtl else FR)
        reached = {choice for m in graph.sent for choice, _ in m.choices}
        for page in range(1, 6):  # turn every page of a long list
            await sender.menu(recipient, FR, page=page)
            reached |= {choice for m in graph.sent for choice, _ in m.choices}
        await client.close()
    assert not graph.refused, graph.refused[0][1].details
    data = {reply_id.split(":", 1)[1] for reply_id in reached if reply_id.startswith("o")}
    assert data == {f"d|{i}" for i in range(len(options))}
    if link is not None:
        assert any(m.interactive.get("type") == "cta_url" for m in graph.sent)
