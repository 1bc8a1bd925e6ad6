"""Notifications on WhatsApp: free-form inside the 24-hour window, an approved template outside it
(only after the customer said yes), Meta's error codes turned into the worker's verdicts, and
delivery statuses moving the outbox row forward only."""
from __future__ import annotations

from datetime import timedelta

import pytest

from sqlalchemy import select, update

from core.models import ChatUser, OutboxMessage, utcnow
from core.services import outbox
from tests.whatsapp_app import whatsapp_shop

INVOICE_PARAMS = {"issuer": "Maroc Telecom", "number": "0000528605032017", "amount": "312,40 MAD",
                  "due_date": "15/04/2017"}


async def customer_with_opt_in(shop, wa_id: str, *, consent: bool | None = True, language: str = "fr",
                               hours_since_last_message: float = 1.0):  # noqa: ANN001
    """A WhatsApp chat as the webhook leaves it, its last message `hours_since_last_message` ago
    on both clocks (ours and Meta's)."""
    from core.services.users import get_or_create_user

    customer = shop.graph.customer(wa_id, "Client")
    user, _ = await get_or_create_user(shop.db, "whatsapp", wa_id, language)
    last = utcnow() - timedelta(hours=hours_since_last_message)
    async with shop.db.transaction() as session:
        await session.execute(update(ChatUser).where(ChatUser.id == user.id).values(
            last_inbound_at=last, whatsapp_opt_in=consent, whatsapp_address=wa_id))
    customer.last_inbound = shop.graph.now() - hours_since_last_message * 3600
    return customer


async def enqueue(db, chat_id: str, kind: str = "invoice_new", **payload) -> int:  # noqa: ANN001
    payload = {"text": "Nouvelle facture Maroc Telecom n° 0000528605032017 : 312,40 MAD, à payer avant le 15/04/2017.",
               "language": "fr", "params": INVOICE_PARAMS, **payload}
    async with db.transaction() as session:
        message = outbox.enqueue(session, channel="whatsapp", chat_id=chat_id, kind=kind, payload=payload)
        await session.flush()
        return message.id


async def row(db, message_id: int) -> OutboxMessage:  # noqa: ANN001
    async with db.session() as session:
        return await session.get(OutboxMessage, message_id)


async def test_a_new_invoice_for_a_customer_whose_window_closed_goes_as_its_template(db):
    async with whatsapp_shop(db) as shop:
        customer = await customer_with_opt_in(shop, "212600000010", hours_since_last_message=30)
        message_id = await enqueue(db, customer.address)
        await shop.deliver()
        (sent,) = shop.graph.sent_to(customer.address)
        template = sent.body["template"]
        assert sent.type == "template" and template["name"] == "fatoura_invoice_new"
        assert template["language"]["code"] == "fr_MA"
        assert [p["text"] for p in template["components"][0]["parameters"]] == list(INVOICE_PARAMS.values())
        stored = await row(db, message_id)
        assert stored.status == "delivered" and stored.provider_message_id == sent.wamid


async def test_inside_the_window_the_same_notification_goes_as_a_plain_message(db):
    async with whatsapp_shop(db) as shop:
        customer = await customer_with_opt_in(shop, "212600000011", hours_since_last_message=2)
        await enqueue(db, customer.address)
        await shop.deliver()
        (sent,) = shop.graph.sent_to(customer.address)
        assert sent.type == "text" and "0000528605032017" in sent.text


async def test_an_arabic_reminder_without_params_goes_as_the_generic_template_in_ar_ma(db):
    async with whatsapp_shop(db) as shop:
        customer = await customer_with_opt_in(shop, "212600000012", language="ar", hours_since_last_message=48)
        await enqueue(db, customer.address, kind="payment_declined", language="ar", params=None,
                      text="تم رفض الأداء.\nيمكنك المحاولة مرة أخرى.")
        await shop.deliver()
        (sent,) = shop.graph.sent_to(customer.address)
        template = sent.body["template"]
        assert template["name"] == "fatoura_notice" and template["language"]["code"] == "ar_MA"
        # a template parameter can't hold a line break: the text is put on one line
        assert template["components"][0]["parameters"][0]["text"] == "تم رفض الأداء. يمكنك المحاولة مرة أخرى."


async def test_no_template_goes_to_a_customer_who_did_not_opt_in(db):
    async with whatsapp_shop(db) as shop:
        customer = await customer_with_opt_in(shop, "212600000013", consent=None, hours_since_last_message=30)
        message_id = await enqueue(db, customer.address)
        await shop.deliver()
        assert shop.graph.sent_to(customer.address) == []
        stored = await row(db, message_id)
        assert stored.status == "dead" and "opt in" in stored.last_error


async def test_when_meta_says_the_window_closed_the_template_goes_instead(db):
    async with whatsapp_shop(db) as shop:
        customer = await customer_with_opt_in(shop, "212600000014", hours_since_last_message=2)
        customer.last_inbound = shop.graph.now() - 25 * 3600  # Meta's clock says otherwise
        await enqueue(db, customer.address)
        await shop.deliver()
        assert [code for _, fault in shop.graph.refused for code in [fault.code]] == [131047]
        (sent,) = shop.graph.sent_to(customer.address)
        assert sent.type == "template"


@pytest.mark.parametrize("code", [131026, 131049])
async def test_an_undeliverable_chat_is_marked_and_left_alone_until_it_writes_again(db, code):
    async with whatsapp_shop(db) as shop:
        customer = await customer_with_opt_in(shop, "212600000015")
        shop.graph.fail_next(code)
        first = await enqueue(db, customer.address)
        await shop.deliver()
        assert (await row(db, first)).status == "dead"
        async with db.session() as session:
            user = await session.scalar(select(ChatUser).where(ChatUser.chat_id == customer.address))
        assert user.blocked_at is not None
        second = await enqueue(db, customer.address)
        await shop.deliver()
        assert (await row(db, second)).status == "dead" and shop.graph.sent_to(customer.address) == []
        await customer.say("Bonjour")
        await customer.replies()
        async with db.session() as session:
            user = await session.scalar(select(ChatUser).where(ChatUser.chat_id == customer.address))
        assert user.blocked_at is None


async def test_throughput_limits_are_retried_later_with_backoff(db):
    async with whatsapp_shop(db) as shop:
        customer = await customer_with_opt_in(shop, "212600000016")
        for code in (130429, 131056):
            shop.graph.fail_next(code)
            message_id = await enqueue(db, customer.address)
            await shop.deliver()
            stored = await row(db, message_id)
            assert stored.status == "queued" and stored.attempts == 1
            assert stored.next_attempt_at > utcnow() + timedelta(seconds=10)
            assert str(code) in stored.last_error


async def test_a_media_error_uploads_the_document_again_once(seeded_db):
    async with whatsapp_shop(seeded_db) as shop:
        customer = shop.graph.customer("212623363444", "Amina")
        await customer.say("Bonjour")
        await customer.replies()
        shop.graph.fail_next(131053, when=lambda body: body.get("type") == "document")
        from bot.channels.whatsapp.channel import recipient_of
        from bot.conversation.replies import Document
        from core.i18n import translator

        sender = shop.app.state.whatsapp.channel.sender
        uploads = len(shop.graph.media)
        await sender.deliver(recipient_of(None, customer.address, customer.address),
                             [Document("facture.pdf", b"%PDF-1.4 test")], translator("fr"))
        assert len(shop.graph.media) == uploads + 2  # uploaded, refused, uploaded again
        (document,) = [m for m in shop.graph.sent_to(customer.address) if m.type == "document"]
        assert document.body["document"]["filename"] == "facture.pdf"


async def test_the_worker_sends_on_whatsapp_only_when_it_is_configured(db):
    from pydantic import SecretStr

    from core.config import Settings
    from fatoura.worker import build_senders

    assert "whatsapp" not in build_senders(Settings(_env_file=None), db)
    configured = Settings(_env_file=None, whatsapp_token=SecretStr("t"), whatsapp_phone_number_id="106540352242922")
    assert "whatsapp" in build_senders(configured, db)
