"""The WhatsApp webhook: Meta's handshake, the signature on the raw bytes, every shape of envelope
(fixtures with Meta's real payload shapes), bodies kept before parsing, nothing answered 500."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
from hypothesis import HealthCheck, given, settings as hsettings
from hypothesis import strategies as st
from pydantic import SecretStr
from sqlalchemy import func, select, update

from core.config import Settings
from core.models import ChatUser, InboundWebhook, OutboxMessage
from core.services import outbox
from tests.whatsapp_app import APP_SECRET, VERIFY_TOKEN, whatsapp_shop
from webhooks.app import create_app
from webhooks.whatsapp import signature_ok

FIXTURES = Path(__file__).parent / "fixtures" / "whatsapp"
VECTORS = json.loads((FIXTURES / "signatures.json").read_text())


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_the_signature_check_agrees_with_published_and_openssl_vectors():
    published = VECTORS["published"]
    assert signature_ok(published["secret"].encode(), published["body"].encode(), published["signature"])
    vector = VECTORS["text.json"]
    assert signature_ok(vector["secret"].encode(), fixture("text.json"), vector["signature"])
    assert signature_ok(vector["secret"].encode(), fixture("text.json"), vector["signature"].upper().replace("SHA256", "sha256"))
    assert not signature_ok(vector["secret"].encode(), fixture("text.json") + b" ", vector["signature"])
    assert not signature_ok(b"another secret", fixture("text.json"), vector["signature"])
    assert not signature_ok(vector["secret"].encode(), fixture("text.json"), vector["signature"][7:])


async def webhook_bodies(db) -> list[InboundWebhook]:  # noqa: ANN001
    async with db.session() as session:
        return list((await session.scalars(select(InboundWebhook).order_by(InboundWebhook.id))).all())


async def test_verify_handshake_and_refusals(db):
    async with whatsapp_shop(db) as shop:
        async with httpx.AsyncClient(base_url=shop.base) as client:
            ok = await client.get("/webhooks/whatsapp", params={
                "hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"})
            assert ok.status_code == 200 and ok.text == "1158201444"
            wrong = await client.get("/webhooks/whatsapp", params={
                "hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"})
            assert wrong.status_code == 403
            body = fixture("text.json")
            assert (await client.post("/webhooks/whatsapp", content=body)).status_code == 401
            forged = await client.post("/webhooks/whatsapp", content=body,
                                       headers={"X-Hub-Signature-256": "sha256=" + "0" * 64})
            assert forged.status_code == 403
            tampered = await client.post("/webhooks/whatsapp", content=body.replace(b"Bonjour", b"Bonsoir"),
                                         headers={"X-Hub-Signature-256": shop.graph.sign(body)})
            assert tampered.status_code == 403
            non_ascii = await client.post("/webhooks/whatsapp", content=body,
                                          headers={"X-Hub-Signature-256": "sha256=é".encode()})
            assert non_ascii.status_code == 403
        garbage = b"\x00\xffnot json{"
        (answer,) = await shop.graph.post_webhook(garbage)
        assert answer.status_code == 400
        (kept,) = await webhook_bodies(db)  # forged bodies are not kept, a signed one always is
        assert kept.outcome == "refused" and kept.body == garbage
        assert shop.graph.sent == []


async def test_without_the_app_secret_the_webhook_is_not_there(db):
    app = create_app(Settings(_env_file=None, sandbox=True), db=db)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            assert (await client.post("/webhooks/whatsapp", content=b"{}",
                                      headers={"X-Hub-Signature-256": "sha256=00"})).status_code == 404
            assert (await client.get("/webhooks/whatsapp")).status_code == 404


async def post_fixture(shop, name: str, *wa_ids: str, on_latest: bool = False) -> None:  # noqa: ANN001
    """POST a fixture as Meta would (signed), its customers having just written. `on_latest`:
    the tap is on the latest message sent to the customer (its context.id made that wamid)."""
    for wa_id in wa_ids:
        shop.graph.customers.get(wa_id) or shop.graph.customer(wa_id)
        shop.graph.customers[wa_id].last_inbound = shop.graph.now()
    body = fixture(name)
    if on_latest:
        payload = json.loads(body)
        message = payload["entry"][0]["changes"][0]["value"]["messages"][0]
        message["context"]["id"] = shop.graph.sent_to(message["from"])[-1].wamid
        message["id"] += "-on-latest"  # another message, not a redelivery of the first
        body = json.dumps(payload).encode()
    (answer,) = await shop.graph.post_webhook(body)
    assert answer.status_code == 200
    await shop.idle()


async def test_each_kind_of_customer_message_gets_its_answer(seeded_db):
    async with whatsapp_shop(seeded_db) as shop:
        graph, amina = shop.graph, "212623363444"
        await post_fixture(shop, "text.json", amina)
        assert "Bonjour Amina" in graph.sent_to(amina)[-1].text  # a first message is the start
        await post_fixture(shop, "button_reply.json", amina)  # a tap on a menu older than the latest one
        assert "ancien message" in graph.sent_to(amina)[-1].text
        assert [title for _, title in graph.sent_to(amina)[-1].choices] == ["Lier un compte", "Langue", "Aide",
                                                                        "Parler à un conseiller"]
        await post_fixture(shop, "button_reply.json", amina, on_latest=True)  # "Link an account"
        assert "Maroc Telecom" in [title for _, title in graph.sent_to(amina)[-1].choices]
        await post_fixture(shop, "list_reply.json", amina, on_latest=True)  # Maroc Telecom: which service?
        assert "Mobile" in " ".join(title for _, title in graph.sent_to(amina)[-1].choices)
        await post_fixture(shop, "contacts.json", amina)  # a shared contact is not a link by itself
        assert "Lier un compte" in graph.sent_to(amina)[-1].text
        await post_fixture(shop, "image.json", amina)
        assert "texte" in graph.sent_to(amina)[-1].text
        await post_fixture(shop, "message_error_unsupported.json", amina)
        assert "texte" in graph.sent_to(amina)[-1].text
        await post_fixture(shop, "template_quick_reply.json", amina)  # "U|1": no account yet -> the menu
        assert "Lier un compte" in graph.sent_to(amina)[-1].text
        assert len(graph.sent_to(amina)) == 8 and not graph.refused
        assert {row.outcome for row in await webhook_bodies(seeded_db)} == {"handled"}


async def test_a_contact_shared_while_linking_a_line_is_the_phone_number(seeded_db):
    async with whatsapp_shop(seeded_db) as shop:
        amina = shop.graph.customer("212623363444", "Amina")
        for step in ("Bonjour",):
            await amina.say(step)
            await amina.replies()
        for title in ("Lier un compte", "Maroc Telecom", "Mobile"):
            mark = len(shop.graph.sent_to(amina.address))
            await amina.tap(title)
            await amina.replies(after=mark)
        mark = len(shop.graph.sent_to(amina.address))
        await amina.share_contact("+212 623-363444", "212623363444")
        (answer,) = await amina.replies(after=mark)
        assert "Code de paiement" in answer.text


async def test_several_messages_of_several_customers_in_one_envelope_each_get_one_answer(db):
    async with whatsapp_shop(db) as shop:
        await post_fixture(shop, "several_messages.json", "212600000101", "212600000102", "212600000103")
        for wa_id, name in (("212600000101", "Hind"), ("212600000102", "Rachid"), ("212600000103", "Mehdi")):
            (reply,) = shop.graph.sent_to(wa_id)
            assert name in reply.text


async def test_customers_are_keyed_on_their_business_scoped_id_when_meta_sends_one(db):
    async with whatsapp_shop(db) as shop:
        await post_fixture(shop, "text_bsuid.json", "212661234567")
        await post_fixture(shop, "text_username_only.json", "MA.99887766554433221100")
        async with db.session() as session:
            users = {u.chat_id: u for u in (await session.scalars(select(ChatUser))).all()}
        assert set(users) == {"MA.13491208655302741918", "MA.99887766554433221100"}
        assert users["MA.13491208655302741918"].whatsapp_address == "212661234567"
        (to_phone,) = shop.graph.sent_to("212661234567")
        assert to_phone.body["to"] == "212661234567"  # Meta's advice: the phone number when known
        (to_user,) = shop.graph.sent_to("MA.99887766554433221100")
        assert to_user.body["recipient"] == "MA.99887766554433221100" and "to" not in to_user.body


async def test_an_envelope_this_code_does_not_know_is_kept_and_answered_200(db):
    async with whatsapp_shop(db) as shop:
        (answer,) = await shop.graph.post_webhook(fixture("template_status_update.json"))
        assert answer.status_code == 200
        await shop.idle()
        (kept,) = await webhook_bodies(db)
        assert kept.outcome == "unhandled" and "message_template_status_update" in kept.detail
        assert json.loads(kept.body)["entry"][0]["changes"][0]["value"]["event"] == "APPROVED"


async def sent_row(db, wamid: str, chat_id: str = "212623363444", **payload) -> int:  # noqa: ANN001
    async with db.transaction() as session:
        message = outbox.enqueue(session, channel="whatsapp", chat_id=chat_id, kind="invoice_new",
                                 payload={"text": "Nouvelle facture", **payload})
        await session.flush()
        message.status, message.provider_message_id, message.provider_status = "delivered", wamid, "accepted"
        return message.id


async def test_statuses_out_of_order_never_move_a_message_backwards(db):
    async with whatsapp_shop(db) as shop:
        wamid = json.loads(fixture("statuses.json"))["entry"][0]["changes"][0]["value"]["statuses"][0]["id"]
        message_id = await sent_row(db, wamid)
        await post_fixture(shop, "statuses.json")  # read, then sent, then delivered
        async with db.session() as session:
            assert (await session.get(OutboxMessage, message_id)).provider_status == "read"
        sent = shop.graph.status_envelope(type("S", (), {"wamid": wamid, "to": "212623363444"})(), "failed",
                                          [{"code": 131000, "title": "Something went wrong"}])
        await shop.graph.post_webhook(sent)
        await shop.idle()
        async with db.session() as session:
            assert (await session.get(OutboxMessage, message_id)).provider_status == "read"


async def test_a_failed_status_sends_again_as_template_or_marks_the_chat(db):
    from core.services.users import get_or_create_user

    async with whatsapp_shop(db) as shop:
        user, _ = await get_or_create_user(db, "whatsapp", "212623363444")
        closed = json.loads(fixture("status_failed_131047.json"))["entry"][0]["changes"][0]["value"]["statuses"][0]["id"]
        gone = json.loads(fixture("status_failed_131026.json"))["entry"][0]["changes"][0]["value"]["statuses"][0]["id"]
        first, second = await sent_row(db, closed), await sent_row(db, gone)
        await post_fixture(shop, "status_failed_131047.json")
        async with db.session() as session:
            again = await session.get(OutboxMessage, first)
        assert again.status == "queued" and again.payload["template"] is True
        async with db.transaction() as session:
            await session.execute(update(ChatUser).where(ChatUser.id == user.id).values(whatsapp_opt_in=True))
        await shop.deliver()
        (template,) = shop.graph.sent_to("212623363444")
        assert template.type == "template" and template.body["template"]["name"] == "fatoura_notice"
        await post_fixture(shop, "status_failed_131026.json")
        async with db.session() as session:
            assert (await session.get(OutboxMessage, second)).provider_status == "failed"
            assert (await session.get(ChatUser, user.id)).blocked_at is not None


# --- garbage, however malformed, never gets a 500 -------------------------------------------

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                           max_leaves=20)
envelope_like = st.builds(
    lambda value, field, obj: {"object": obj, "entry": [{"id": "1", "changes": [{"value": value, "field": field}]}]},
    st.dictionaries(st.sampled_from(["messages", "statuses", "contacts", "metadata", "errors"]), json_values, max_size=4),
    st.sampled_from(["messages", "statuses", None, 3]), st.sampled_from(["whatsapp_business_account", "page", None]))
message_like = st.fixed_dictionaries(
    {"id": st.text(min_size=1, max_size=12), "type": st.sampled_from(
        ["text", "interactive", "button", "contacts", "image", "reaction", "location", "nfm", "", None])},
    optional={"from": st.text(max_size=15) | st.integers(), "from_user_id": st.text(max_size=15), "text": json_values,
              "interactive": json_values | st.fixed_dictionaries({"type": st.sampled_from(["button_reply", "list_reply"]),
                                                                  "button_reply": json_values, "list_reply": json_values}),
              "button": json_values, "context": json_values, "contacts": json_values, "timestamp": json_values})
messages_envelope = st.builds(
    lambda messages, contacts: {"object": "whatsapp_business_account", "entry": [{"changes": [
        {"field": "messages", "value": {"messages": messages, "contacts": contacts}}]}]},
    st.lists(message_like, max_size=3), json_values)
bodies = st.one_of(messages_envelope.map(lambda v: json.dumps(v).encode()), st.binary(max_size=400), json_values.map(lambda v: json.dumps(v).encode()),
                   envelope_like.map(lambda v: json.dumps(v).encode()))

_FUZZ: dict = {}


@hsettings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, signed=st.booleans(), header=st.text(max_size=80))
def test_no_webhook_body_however_malformed_gets_a_500(tmp_path_factory, body, signed, header):
    asyncio.run(_post_garbage(tmp_path_factory, body, signed, header))


async def _post_garbage(tmp_path_factory, body: bytes, signed: bool, header: str) -> None:  # noqa: ANN001
    from core.db import Database, upgrade
    from webhooks.whatsapp import signature

    if "url" not in _FUZZ:
        _FUZZ["url"] = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('wafuzz')}/f.db"
        await asyncio.to_thread(upgrade, _FUZZ["url"])
    db = Database(_FUZZ["url"])
    settings = Settings(_env_file=None, sandbox=True, whatsapp_app_secret=SecretStr(APP_SECRET),
                        whatsapp_token=SecretStr("t"), whatsapp_phone_number_id="1",
                        whatsapp_api_base="http://127.0.0.1:9/v21.0")  # nothing listens: sends fail, quietly
    app = create_app(settings, db=db)
    async with db.session() as session:
        before = await session.scalar(select(func.coalesce(func.max(InboundWebhook.id), 0)))
    value = signature(APP_SECRET.encode(), body) if signed else header
    headers = {"X-Hub-Signature-256": value} if value.isascii() and "\n" not in value and "\r" not in value else {}
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            answer = await client.post("/webhooks/whatsapp", content=body, headers=headers)
        await app.state.whatsapp.channel.wait_idle()
    async with db.session() as session:
        errors = (await session.scalars(select(InboundWebhook.detail).where(
            InboundWebhook.outcome == "error", InboundWebhook.id > before))).all()
    await db.dispose()
    assert answer.status_code < 500
    assert signed or answer.status_code in (401, 403)
    assert not errors  # a body we could not make sense of is "unhandled", not a crash


async def test_a_message_whose_handling_failed_is_kept_and_answered_by_a_replay(db):
    from bot.channels.whatsapp.replay import replay

    async with whatsapp_shop(db) as shop:
        customer = shop.graph.customer("212600000030", "Samir")
        conversation = shop.app.state.whatsapp.channel.conversation
        handle = conversation.handle

        async def database_away(event):  # noqa: ANN001, ANN202 - the failure to recover from
            raise ConnectionError("database is away")

        conversation.handle = database_away
        await customer.say("Bonjour")
        await shop.idle()
        conversation.handle = handle
        (kept,) = await webhook_bodies(db)
        assert kept.outcome == "error" and "database is away" in kept.detail
        assert shop.graph.sent_to(customer.address) == []
        assert await replay(shop.settings, db=db) == [(kept.id, "handled")]
        (answer,) = shop.graph.sent_to(customer.address)
        assert "Bonjour Samir" in answer.text
        assert await replay(shop.settings, db=db, webhook_id=kept.id) == [(kept.id, "handled")]
        assert len(shop.graph.sent_to(customer.address)) == 1  # answered once, however often replayed


async def test_a_reply_that_failed_as_undeliverable_marks_the_chat_even_without_an_outbox_row(db):
    async with whatsapp_shop(db) as shop:
        customer = shop.graph.customer("212623363444", "Amina")
        await customer.say("Bonjour")
        (reply,) = await customer.replies()
        await shop.idle()
        await shop.graph.post_webhook(shop.graph.status_envelope(reply, "failed", [
            {"code": 131026, "title": "Message undeliverable"}]))
        await shop.idle()
        async with db.session() as session:
            user = await session.scalar(select(ChatUser).where(ChatUser.chat_id == customer.address))
        assert user.blocked_at is not None


async def test_a_customer_known_by_phone_keeps_their_accounts_when_meta_adds_their_business_id(seeded_db):
    from core.models import LinkedAccount

    async with whatsapp_shop(seeded_db) as shop:
        omar = shop.graph.customer("212661234567", "Omar")  # before Meta sent user ids
        await omar.say("Bonjour")
        await omar.replies()
        mark = len(shop.graph.sent_to(omar.address))
        await omar.tap("Lier un compte")
        await omar.replies(after=mark)
        async with seeded_db.transaction() as session:
            (user,) = (await session.scalars(select(ChatUser))).all()
            session.add(LinkedAccount(user_id=user.id, biller="portnet", service="portnet", identifier="K9AS",
                                      account_ref="portnet:K9AS"))
        await post_fixture(shop, "text_bsuid.json", "212661234567")  # same phone, now with its user id
        async with seeded_db.session() as session:
            (user,) = (await session.scalars(select(ChatUser))).all()
            accounts = (await session.scalars(select(LinkedAccount))).all()
        assert (user.chat_id, user.whatsapp_address) == ("MA.13491208655302741918", "212661234567")
        assert [a.user_id for a in accounts] == [user.id]
