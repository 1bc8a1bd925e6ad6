"""Confirmations: each callback stored raw, verified, checked against its checkout and applied
exactly once (10 identical callbacks at once -> one payment, one message, one biller notice);
forged, unknown, mismatched, declined and late callbacks; the receipt; the /pay pages; and no
callback body, however malformed, gets a 500. On SQLite and PostgreSQL.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import re
import shutil
import time
import unicodedata
from html import unescape
from urllib.parse import urlencode
from datetime import timedelta
from decimal import Decimal as D

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from pypdf import PdfReader
from sqlalchemy import func, select, text

from bot.conversation.outbox_replies import payload_to_replies
from bot.conversation.replies import Document, Text
from core.db import Database
from core.models import utcnow, Checkout, GatewayCallback, Invoice, OutboxMessage, Payment, SandboxInvoice
from core.payments.base import (
    CHANNEL_CARD,
    CHANNEL_FATOURATI,
    CHANNEL_TASHILAT,
    OUTCOME_APPLIED,
    OUTCOME_DECLINED,
    OUTCOME_DUPLICATE,
    OUTCOME_HELD,
    OUTCOME_REJECTED,
    CallbackRequest,
)
from core.services import checkout as co
from core.services import outbox
from core.i18n import TIMEZONE
from core.payments.registry import GatewayRegistry
from core.services.confirmations import apply_callback, biller_notice_sender, receipt_pdf
from tests.test_checkout import (
    NOW,
    SECRET,
    billers_for,
    callback_for,
    fake_gateways,
    invoice_ids,
    link_sample,
    make_settings,
    make_user,
    signed,
)
from webhooks.payments import router
from webhooks.state import AppState

MARSA = "marsa-casablanca-000236"


@pytest.fixture
async def world(seeded_db):
    db = seeded_db
    billers = billers_for(db)
    user = await make_user(db)
    links = {ref: await link_sample(db, user, ref) for ref in (MARSA, "portnet-K9AS", "portnet-A7K2")}
    for link in links.values():
        await co.sync_invoices(db, billers, link)

    class World:
        async def checkout(self, channel=CHANNEL_CARD, numbers=("02296945", "02296947"), ref=MARSA, now=NOW):
            ids = await invoice_ids(db, links[ref], *numbers)
            checkout, _ = await co.create_checkout(db, user, ids, channel, self.gateways, self.settings, now=now)
            return checkout

        async def apply(self, gateway, payload, now=NOW, request=None):
            return await apply_callback(db, self.gateways, billers, gateway, request or signed(payload), now=now)

        async def count(self, model, *where):
            async with db.session() as session:
                return await session.scalar(select(func.count()).select_from(model).where(*where))

        async def messages(self, kind=None):
            async with db.session() as session:
                query = select(OutboxMessage).order_by(OutboxMessage.id)
                if kind:
                    query = query.where(OutboxMessage.kind == kind)
                return (await session.scalars(query)).all()

        async def statuses(self, ids):
            async with db.session() as session:
                return sorted((await session.scalars(select(Invoice.status).where(Invoice.id.in_(ids)))).all())

    w = World()
    w.db, w.billers, w.user, w.links, w.gateways, w.settings = db, billers, user, links, fake_gateways(), make_settings()
    return w


def app_for(world) -> FastAPI:
    app = FastAPI()
    app.include_router(router)
    app.state.fatoura = AppState(settings=world.settings, db=world.db, billers=world.billers)
    app.state.gateways = world.gateways
    return app


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://fatoura.example.test")


# --- Exactly once -------------------------------------------------------------------------------


async def test_ten_identical_approved_callbacks_at_once_apply_once(world):
    checkout = await world.checkout()
    ids = await invoice_ids(world.db, world.links[MARSA], "02296945", "02296947")
    payload = callback_for(checkout, txn="CMI-778899")
    results = await asyncio.gather(*(world.apply("cmi", payload) for _ in range(10)))
    outcomes = sorted(outcome for outcome, _ in results)
    assert outcomes == [OUTCOME_APPLIED] + [OUTCOME_DUPLICATE] * 9
    assert {answer.body for _, answer in results} == {b"ACTION=POSTAUTH"}

    assert await world.count(Payment) == 1
    assert await world.count(GatewayCallback) == 10
    (paid,) = await world.messages("payment_paid")
    assert paid.dedupe_key == f"paid:{checkout.id}" and (paid.channel, paid.chat_id) == ("telegram", "1001")
    assert await world.statuses(ids) == ["paid", "paid"]
    async with world.db.session() as session:
        assert (await session.get(Checkout, checkout.id)).status == "paid"
        payment = await session.scalar(select(Payment))
        assert (payment.amount, payment.transaction_id, payment.status) == (D("5284.80"), "CMI-778899", "paid")
        # The sandbox biller was told, once, and marked its invoices paid.
        biller_rows = (await session.scalars(select(SandboxInvoice).where(
            SandboxInvoice.number.in_(["02296945", "02296947"])))).all()
        assert {(r.status, r.transaction_id) for r in biller_rows} == {("paid", "CMI-778899")}
    notices = world.billers.get("marsamaroc").notices
    assert len(notices) == 1
    account_ref, notice = notices[0]
    assert account_ref == MARSA and notice.invoice_numbers == ("02296945", "02296947")
    assert notice.amount == D("5284.80") and notice.transaction_id == "CMI-778899" and notice.channel == "card"
    (biller_row,) = await world.messages("biller_notice")
    assert biller_row.status == "delivered" and biller_row.channel == "biller"

    # The chat message: amount, invoices, transaction id, receipt.
    text = paid.payload["text"]
    assert "5\u202f284,80\xa0MAD" in text and "02296945" in text and "02296947" in text and "CMI-778899" in text
    assert paid.payload["document"]["kind"] == "receipt" and paid.payload["document"]["payment_id"] == payment.id

    # A gateway retry much later: still no second effect.
    outcome, answer = await world.apply("cmi", payload, now=NOW + timedelta(days=2))
    assert outcome == OUTCOME_DUPLICATE and answer.body == b"ACTION=POSTAUTH"
    assert await world.count(Payment) == 1 and len(await world.messages("payment_paid")) == 1
    assert len(notices) == 1


def real_gateways(world) -> GatewayRegistry:
    """The real gateway classes in sandbox mode (keys derived from the settings' SECRET_KEY)."""
    world.gateways = GatewayRegistry.from_settings(world.settings)
    return world.gateways


def hidden_fields(page: str) -> dict[str, str]:
    return {unescape(k): unescape(v) for k, v in re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', page)}


async def test_ten_identical_fatourati_callbacks_over_http(world):
    gateways = real_gateways(world)
    checkout = await world.checkout(channel=CHANNEL_FATOURATI, numbers=("00028653",), ref="portnet-K9AS", now=None)
    assert checkout.gateway == "fatourati" and len(checkout.reference) == 13
    body = json.dumps({"tokenRef": checkout.reference, "orderId": None, "totalAmount": "3600.00", "currency": "504",
                       "fatouratiTransactionNumber": "FTX-2026-1", "channel": "CASHPLUS", "decisionCode": 0,
                       "timestamp": int(time.time())}).encode()
    headers = gateways.get("fatourati").sign(body)
    async with client_for(app_for(world)) as client:
        responses = await asyncio.gather(*(client.post("/webhooks/payments/fatourati", content=body, headers=headers)
                                           for _ in range(10)))
    assert {r.status_code for r in responses} == {200}
    assert len({r.json()["receiptNumber"] for r in responses}) == 1
    assert await world.count(Payment) == 1 and len(await world.messages("payment_paid")) == 1
    assert len(world.billers.get("portnet").notices) == 1
    ids = await invoice_ids(world.db, world.links["portnet-K9AS"], "00028653")
    assert await world.statuses(ids) == ["paid"]


async def test_cmi_card_round_trip_over_http(world):
    """Our /pay form -> (what CMI posts back, signed with the store key) -> our callback -> paid."""
    gateways = real_gateways(world)
    cmi = gateways.get("cmi")
    checkout = await world.checkout(now=None)
    token = checkout.token
    async with client_for(app_for(world)) as client:
        assert (await client.get(f"/pay/{token}")).status_code == 200
        form = await client.post(f"/pay/{token}")
        action = re.search(r'<form id="go" method="post" action="([^"]*)"', form.text).group(1)
        assert unescape(action) == cmi.gateway_url
        fields = hidden_fields(form.text)
        assert cmi.verify_request(fields)  # the hash CMI checks
        assert fields["oid"] == checkout.order_id and fields["amount"] == "5284.80" and fields["currency"] == "504"
        assert fields["okUrl"] == f"https://fatoura.example.test/pay/{token}/ok"
        assert fields["callbackUrl"] == "https://fatoura.example.test/webhooks/payments/cmi"
        assert fields["shopurl"] == f"https://fatoura.example.test/pay/{token}/cancel"
        assert fields["BillToName"] == "Amina" and fields["lang"] == "fr"

        posted = {k: v for k, v in fields.items() if k != "HASH"}
        declined = cmi.sign_callback({**posted, "ReturnOid": posted["oid"], "ProcReturnCode": "51",
                                      "Response": "Declined", "ErrMsg": "Insufficient funds", "TransId": "",
                                      "EXTRA.TRXDATE": utcnow().astimezone(TIMEZONE).strftime("%Y%m%d %H:%M:%S")})
        answer = await client.post("/webhooks/payments/cmi", content=urlencode(declined).encode(),
                                   headers={"content-type": "application/x-www-form-urlencoded"})
        assert (answer.status_code, answer.text) == (200, "APPROVED")
        (message,) = await world.messages("payment_declined")
        assert [b["data"] for row in message.payload["buttons"] for b in row] == [f"Pc|{checkout.id}", f"Pn|{checkout.id}"]

        approved = cmi.sign_callback({**posted, "ReturnOid": posted["oid"], "ProcReturnCode": "00",
                                      "Response": "Approved", "TransId": "26328ABCD", "AuthCode": "654321",
                                      "mdStatus": "1", "MaskedPan": "400000***0002",
                                      "EXTRA.TRXDATE": utcnow().astimezone(TIMEZONE).strftime("%Y%m%d %H:%M:%S")})
        body = urlencode(approved).encode()
        responses = await asyncio.gather(*(client.post(
            "/webhooks/payments/cmi", content=body, headers={"content-type": "application/x-www-form-urlencoded"})
            for _ in range(10)))
        assert {(r.status_code, r.text) for r in responses} == {(200, "ACTION=POSTAUTH")}
        forged = dict(approved, amount="1.00")
        answer = await client.post("/webhooks/payments/cmi", content=urlencode(forged).encode(),
                                   headers={"content-type": "application/x-www-form-urlencoded"})
        assert (answer.status_code, answer.text) == (200, "FAILURE")
        ok = await client.get(f"/pay/{token}/ok")
        assert ok.status_code == 200
    assert await world.count(Payment) == 1
    (paid,) = await world.messages("payment_paid")
    assert "26328ABCD" in paid.payload["text"]
    ids = await invoice_ids(world.db, world.links[MARSA], "02296945", "02296947")
    assert await world.statuses(ids) == ["paid", "paid"]
    assert len(world.billers.get("marsamaroc").notices) == 1


async def test_tashilat_code_wrong_amount_then_paid_and_expired_reference_held(world):
    gateways = real_gateways(world)
    amanpay = gateways.get("amanpay")
    checkout = await world.checkout(channel=CHANNEL_TASHILAT, numbers=("00069321",), ref="portnet-A7K2", now=None)
    assert checkout.gateway == "amanpay" and len(checkout.reference) == 12

    def body(amount: str, txn: str) -> bytes:
        return json.dumps({"code": checkout.reference, "transactionId": txn, "amount": amount, "currency": "MAD",
                           "method": "tashilat", "status": "paid", "timestamp": int(time.time())}).encode()

    async with client_for(app_for(world)) as client:
        wrong = body("360.00", "AMP-1")
        answer = await client.post("/webhooks/payments/amanpay", content=wrong, headers=amanpay.sign(wrong))
        assert answer.status_code == 400 and answer.json() == {"status": "rejected"}
        assert [m.kind for m in await world.messages()] == ["payment_mismatch"]
        right = body("3600.00", "AMP-2")
        answer = await client.post("/webhooks/payments/amanpay", content=right, headers=amanpay.sign(right))
        assert answer.status_code == 200 and answer.json() == {"status": "ok"}

        # A Fatourati reference paid after it expired: held, answered as Fatourati expects.
        old = await world.checkout(channel=CHANNEL_FATOURATI, numbers=("00028653",), ref="portnet-K9AS", now=None)
        async with world.db.transaction() as session:  # 3 hours later
            (await session.get(Checkout, old.id)).expires_at = utcnow() - timedelta(minutes=1)
        late = json.dumps({"tokenRef": old.reference, "totalAmount": "3600.00", "currency": "504",
                           "fatouratiTransactionNumber": "FTX-LATE", "decisionCode": 0,
                           "timestamp": int(time.time())}).encode()
        answer = await client.post("/webhooks/payments/fatourati", content=late,
                                   headers=gateways.get("fatourati").sign(late))
        assert answer.status_code == 400 and answer.json() == {"error": "held"}
    async with world.db.session() as session:
        assert (await session.get(Checkout, checkout.id)).status == "paid"
        assert (await session.get(Checkout, old.id)).status == "review"
    assert [m.kind for m in await world.messages() if m.channel != "biller"] == [
        "payment_mismatch", "payment_paid", "payment_held"]


async def test_a_failed_biller_notice_stays_queued_for_the_worker(world):
    checkout = await world.checkout()
    connector = world.billers.get("marsamaroc")
    original = connector.notify_paid

    async def down(account_ref, notice):  # noqa: ANN001
        raise OSError("biller down")

    connector.notify_paid = down
    outcome, _ = await world.apply("cmi", callback_for(checkout, txn="T-9"))
    assert outcome == OUTCOME_APPLIED
    (row,) = await world.messages("biller_notice")
    assert row.status == "queued" and row.attempts == 1 and "biller down" in row.last_error

    # The worker's "biller" sender delivers it once the biller is back.
    connector.notify_paid = original
    from fatoura.worker import deliver_due

    senders = {"biller": biller_notice_sender(world.billers)}
    await deliver_due(world.db, senders, "test-worker")
    (row,) = await world.messages("biller_notice")
    assert row.status == "queued" and row.attempts == 1  # not due yet (backoff)
    async with world.db.transaction() as session:
        (await session.get(OutboxMessage, row.id)).next_attempt_at = utcnow() - timedelta(seconds=1)
    await deliver_due(world.db, senders, "test-worker")
    (row,) = await world.messages("biller_notice")
    assert row.status == "delivered"
    async with world.db.session() as session:
        assert set((await session.scalars(select(SandboxInvoice.status).where(
            SandboxInvoice.number.in_(["02296945", "02296947"])))).all()) == {"paid"}


# --- Refused and held callbacks -------------------------------------------------------------


async def test_a_forged_callback_is_rejected_stored_and_pays_nothing(world):
    checkout = await world.checkout()
    payload = callback_for(checkout, txn="FORGED-1")
    forged = signed(payload, secret=b"not-the-key")
    outcome, answer = await world.apply("cmi", payload, request=forged)
    assert outcome == OUTCOME_REJECTED and answer.body == b"FAILURE"
    assert await world.count(Payment) == 0 and await world.messages() == []
    async with world.db.session() as session:
        (stored,) = (await session.scalars(select(GatewayCallback))).all()
        assert stored.body == forged.body.decode() and stored.gateway == "cmi"
        assert stored.outcome.startswith("rejected: forged")
        assert stored.headers["x-signature"] == forged.headers["x-signature"]
        assert (await session.get(Checkout, checkout.id)).status == "pending"


async def test_unknown_order_and_garbage_are_rejected(world):
    await world.checkout()
    outcome, _ = await world.apply("cmi", {"order_id": "NOPE", "transaction_id": "X", "amount": "1.00",
                                           "status": "approved"})
    assert outcome == OUTCOME_REJECTED
    raw = CallbackRequest(headers={}, body=b"\x00\xff garbage \x00", content_type="")
    outcome, answer = await world.apply("cmi", None, request=raw)
    assert outcome == OUTCOME_REJECTED and answer.body == b"FAILURE"
    assert await world.count(Payment) == 0 and await world.count(GatewayCallback) == 2
    from core.errors import UnknownGateway

    with pytest.raises(UnknownGateway):
        await world.apply("paypal", {})


async def test_a_wrong_amount_is_rejected_and_the_customer_told(world):
    checkout = await world.checkout()
    ids = await invoice_ids(world.db, world.links[MARSA], "02296945", "02296947")
    payload = callback_for(checkout, amount=D("5284.79"), txn="CMI-LOW")
    for _ in range(3):  # retried by the gateway: one message only
        outcome, answer = await world.apply("cmi", payload)
        assert outcome == OUTCOME_REJECTED and answer.body == b"FAILURE"
    assert await world.count(Payment) == 0
    assert await world.statuses(ids) == ["unpaid", "unpaid"]
    (message,) = await world.messages()
    assert message.kind == "payment_mismatch"
    assert "5\u202f284,79" in message.payload["text"] and "5\u202f284,80" in message.payload["text"]
    assert world.billers.get("marsamaroc").notices == []


async def test_a_declined_card_offers_to_retry_or_switch(world):
    checkout = await world.checkout()
    outcome, answer = await world.apply("cmi", callback_for(checkout, status="declined", txn="D-1", reason="51"))
    assert outcome == OUTCOME_DECLINED and answer.body == b"APPROVED"
    async with world.db.session() as session:
        assert (await session.get(Checkout, checkout.id)).status == "declined"
    (message,) = await world.messages()
    assert message.kind == "payment_declined"
    buttons = message.payload["buttons"]
    assert [[b["data"] for b in row] for row in buttons] == [[f"Pc|{checkout.id}"], [f"Pn|{checkout.id}"]]
    assert all(b["label"] for row in buttons for b in row)
    assert "5\u202f284,80" in message.payload["text"]
    replies = await payload_to_replies(message.payload, world.db)
    assert isinstance(replies[0], Text) and [b.data for row in replies[0].buttons for b in row] == [
        f"Pc|{checkout.id}", f"Pn|{checkout.id}"]
    assert await world.count(Payment) == 0

    # "Try again": a new checkout over the same invoices; "another channel" likewise.
    retry, instruction = await co.retry_checkout(world.db, world.user, checkout.id, world.gateways, world.settings)
    assert retry.id != checkout.id and retry.order_id != checkout.order_id and instruction.url
    # CMI may still approve a later attempt on the first order: applied, and the retry is closed.
    outcome, _ = await world.apply("cmi", callback_for(checkout, txn="D-2"))
    assert outcome == OUTCOME_APPLIED
    async with world.db.session() as session:
        assert (await session.get(Checkout, retry.id)).status == "cancelled"


async def test_a_reference_paid_after_expiry_is_held(world):
    checkout = await world.checkout(channel=CHANNEL_FATOURATI, numbers=("00028653",), ref="portnet-K9AS")
    late = checkout.expires_at + timedelta(minutes=1)
    payload = callback_for(checkout, txn="FAT-LATE", paid_at=late, by_reference=True)
    for _ in range(2):
        outcome, _ = await world.apply("cmi", payload, now=late)
        assert outcome == OUTCOME_HELD
    async with world.db.session() as session:
        assert (await session.get(Checkout, checkout.id)).status == "review"
        (payment,) = (await session.scalars(select(Payment))).all()
        assert payment.status == "review" and payment.receipt_code is None
    ids = await invoice_ids(world.db, world.links["portnet-K9AS"], "00028653")
    assert await world.statuses(ids) != ["paid"]
    (message,) = await world.messages()
    assert message.kind == "payment_held" and "3\u202f600,00" in message.payload["text"]
    assert world.billers.get("portnet").notices == []


async def test_a_reference_paid_on_time_but_reported_late_is_applied(world):
    checkout = await world.checkout(channel=CHANNEL_TASHILAT, numbers=("00069321",), ref="portnet-A7K2")
    await co.expire_due(world.db, checkout.expires_at + timedelta(minutes=5))
    on_time = checkout.expires_at - timedelta(minutes=1)
    outcome, _ = await world.apply("amanpay", callback_for(checkout, txn="TSH-1", paid_at=on_time, by_reference=True),
                                   now=checkout.expires_at + timedelta(minutes=10))
    assert outcome == OUTCOME_APPLIED


async def test_a_payment_for_a_cancelled_checkout_is_held(world):
    checkout = await world.checkout()
    await co.cancel_checkout(world.db, world.user.id, checkout.id)
    outcome, _ = await world.apply("cmi", callback_for(checkout, txn="C-1"))
    assert outcome == OUTCOME_HELD
    assert await world.count(Payment, Payment.status == "paid") == 0


async def test_a_second_payment_for_a_paid_checkout_is_held(world):
    checkout = await world.checkout()
    assert (await world.apply("cmi", callback_for(checkout, txn="A-1")))[0] == OUTCOME_APPLIED
    assert (await world.apply("cmi", callback_for(checkout, txn="A-2")))[0] == OUTCOME_HELD
    assert (await world.apply("cmi", callback_for(checkout, status="declined", txn="A-3")))[0] == OUTCOME_DECLINED
    async with world.db.session() as session:
        assert (await session.get(Checkout, checkout.id)).status == "paid"
    assert await world.count(Payment, Payment.status == "paid") == 1


async def test_a_callback_for_another_gateways_checkout_is_rejected(world):
    checkout = await world.checkout(channel=CHANNEL_TASHILAT, numbers=("00069321",), ref="portnet-A7K2")
    outcome, _ = await world.apply("cmi", callback_for(checkout, txn="X-1"))
    assert outcome == OUTCOME_REJECTED


# --- The receipt ----------------------------------------------------------------------------

def pdf_text(pdf: bytes) -> str:
    reader = PdfReader(io.BytesIO(pdf))
    return unicodedata.normalize("NFKC", "\n".join(page.extract_text() for page in reader.pages))


@pytest.mark.parametrize("language", ["fr", "ar", "en"])
async def test_the_paid_message_carries_a_receipt(world, language):
    async with world.db.transaction() as session:
        from core.models import ChatUser

        (await session.get(ChatUser, world.user.id)).locale = language
    checkout = await world.checkout()
    assert (await world.apply("cmi", callback_for(checkout, txn="CMI-42")))[0] == OUTCOME_APPLIED
    (message,) = await world.messages("payment_paid")
    assert message.payload["language"] == language and message.payload["rtl"] == (language == "ar")
    text_reply, document = await payload_to_replies(message.payload, world.db)
    assert isinstance(text_reply, Text) and isinstance(document, Document)
    assert document.filename.endswith(".pdf") and document.content.startswith(b"%PDF")
    async with world.db.session() as session:
        payment = await session.scalar(select(Payment))
    assert payment.receipt_code in document.filename
    text = pdf_text(document.content)
    digits = re.sub(r"[\s\u202f\xa0.,]", "", text)
    for needle in (payment.receipt_code, "CMI-42", "02296945", "02296947", "MARSAMAROC CASA", checkout.order_id):
        assert needle in text, (needle, text)
    for amount in ("264240", "440400", "88080", "528480"):  # TTC of each invoice, HT, TVA, TTC
        assert amount in digits
    assert "10:00" in text or "11:00" in text  # NOW in Casablanca (UTC+1 in November 2026)
    # The same payment gives the same bytes.
    again = await receipt_pdf(world.db, payment.id, language)
    assert again[1] == document.content


# --- The /pay pages ---------------------------------------------------------------------------


async def test_pay_page_forwards_once_to_the_card_form(world):
    cmi = real_gateways(world).get("cmi")
    checkout = await world.checkout(now=None)
    token = checkout.token
    async with client_for(app_for(world)) as client:
        # GET shows a page (a link-preview robot may fetch it): it does not use the token.
        for _ in range(2):
            page = await client.get(f"/pay/{token}")
            assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
            assert f'action="/pay/{token}"' in page.text and "submit()" in page.text
            assert 'lang="fr" dir="ltr"' in page.text and "5\u202f284,80" in page.text
        form = await client.post(f"/pay/{token}")
        assert form.status_code == 200
        assert f'action="{cmi.gateway_url}"' in form.text and "submit()" in form.text
        assert cmi.verify_request(hidden_fields(form.text))
        base = "https://fatoura.example.test"
        for name, value in (("okUrl", f"{base}/pay/{token}/ok"), ("failUrl", f"{base}/pay/{token}/fail"),
                            ("callbackUrl", f"{base}/webhooks/payments/cmi"), ("shopurl", f"{base}/pay/{token}/cancel"),
                            ("oid", checkout.order_id), ("amount", "5284.80"), ("BillToName", "Amina")):
            assert f'name="{name}" value="{value}"' in form.text, name
        assert "<button" in form.text  # usable without JavaScript
        # Single use: a second open says the payment is in progress, with no form to CMI.
        for again in (await client.get(f"/pay/{token}"), await client.post(f"/pay/{token}")):
            assert again.status_code == 200 and "est3Dgate" not in again.text and "<form" not in again.text
            assert "Paiement en cours" in again.text
        ok = await client.post(f"/pay/{token}/ok", data={"Response": "Approved", "oid": checkout.order_id})
        fail = await client.get(f"/pay/{token}/fail")
        cancel = await client.get(f"/pay/{token}/cancel")
        assert ok.status_code == fail.status_code == cancel.status_code == 200
        assert len({ok.text, fail.text, cancel.text}) == 3
    # Nothing is paid by the browser's return.
    async with world.db.session() as session:
        assert (await session.get(Checkout, checkout.id)).status == "pending"
    assert await world.count(Payment) == 0


async def test_pay_page_in_arabic_expired_and_unknown(world):
    async with world.db.transaction() as session:
        from core.models import ChatUser

        (await session.get(ChatUser, world.user.id)).locale = "ar"
    fresh = await world.checkout(numbers=("02296945",), now=None)
    old = await world.checkout(numbers=("02296947",), now=NOW - timedelta(hours=2))
    reference = await world.checkout(channel=CHANNEL_FATOURATI, numbers=("00028653",), ref="portnet-K9AS", now=None)
    async with client_for(app_for(world)) as client:
        page = await client.get(f"/pay/{fresh.token}")
        assert page.status_code == 200 and 'lang="ar" dir="rtl"' in page.text
        expired = await client.get(f"/pay/{old.token}")
        assert expired.status_code == 410 and "<form" not in expired.text and 'dir="rtl"' in expired.text
        assert (await client.post(f"/pay/{old.token}")).status_code == 410
        assert (await client.get(f"/pay/{reference.token}")).status_code == 404
        unknown = await client.get("/pay/" + "x" * 32, headers={"accept-language": "en-US,en;q=0.8"})
        assert unknown.status_code == 404 and 'lang="en"' in unknown.text
        assert (await client.get("/pay/short")).status_code == 404
        assert (await client.get("/pay/x/ok")).status_code == 404
    async with world.db.session() as session:
        assert (await session.get(Checkout, old.id)).token == old.token  # an expired link uses nothing


async def test_unknown_gateway_is_404_and_oversized_bodies_fail_politely(world):
    async with client_for(app_for(world)) as client:
        assert (await client.post("/webhooks/payments/paypal", content=b"{}")).status_code == 404
        big = await client.post("/webhooks/payments/cmi", content=b"x" * (300 * 1024))
        assert big.status_code == 200 and big.text == "FAILURE"


# --- No body gets a 500 ---------------------------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fuzz_client(request, tmp_path_factory, sqlite_template):
    """A web app with the payment router and the real (sandbox) gateways over a seeded database, a
    user and one pending checkout per gateway; it runs in TestClient's own event loop, so the
    database is opened inside it."""
    from contextlib import asynccontextmanager

    from fastapi.testclient import TestClient

    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("fuzz") / "fatoura.db"
        shutil.copy(sqlite_template, path)
        url = f"sqlite+aiosqlite:///{path}"
    else:
        url = request.getfixturevalue("pg_migrated")
        if url is None:
            pytest.skip("PostgreSQL (FATOURA_TEST_DATABASE_URL) not configured")
    settings = make_settings()
    gateways = GatewayRegistry.from_settings(settings)
    checkouts: list = []

    @asynccontextmanager
    async def lifespan(app):
        from core.billers.sandbox.store import seed_samples

        db = Database(url)
        if db.dialect == "postgresql":
            async with db.engine.begin() as conn:
                tables = (await conn.execute(text(
                    "SELECT tablename FROM pg_tables WHERE schemaname='public' AND tablename <> 'alembic_version'"
                ))).scalars().all()
                await conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        await seed_samples(db)
        billers = billers_for(db)
        user = await make_user(db)
        for ref, numbers, channel in ((MARSA, ("02296945",), CHANNEL_CARD), ("portnet-K9AS", ("00028653",), CHANNEL_FATOURATI),
                                      ("portnet-A7K2", ("00069321",), CHANNEL_TASHILAT)):
            link = await link_sample(db, user, ref)
            await co.sync_invoices(db, billers, link)
            checkout, _ = await co.create_checkout(db, user, await invoice_ids(db, link, *numbers), channel, gateways,
                                                   settings)
            checkouts.append(checkout)
        app.state.fatoura = AppState(settings=settings, db=db, billers=billers)
        app.state.gateways = gateways
        yield
        await db.dispose()

    app = FastAPI(lifespan=lifespan)
    app.include_router(router)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, gateways, checkouts


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
field_values = st.one_of(st.none(), st.text(max_size=30), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                         st.sampled_from(["5284.80", "2642.40", "3600.00", "0", "-1", "1e400", "NaN", "00", "05",
                                          "Approved", "Declined", "paid", "refused", "504", "MAD", "tashilat",
                                          "2026-11-24T10:00:00", "20261124 11:00:00", "not-a-date", "x" * 100]),
                         json_values)
text_values = st.one_of(st.text(max_size=30), st.sampled_from(["5284.80", "2642.40", "00", "05", "Approved",
                                                               "Declined", "20261124 11:00:00", "", " ", "\n"]))
CMI_FIELDS = ["oid", "ReturnOid", "amount", "currency", "ProcReturnCode", "Response", "TransId", "AuthCode",
              "HostRefNum", "ErrMsg", "mdStatus", "EXTRA.TRXDATE", "MaskedPan", "clientid", "storetype",
              "hashAlgorithm", "rnd", "encoding"]
FATOURATI_FIELDS = ["tokenRef", "orderId", "totalAmount", "currency", "selectedItems", "fatouratiTransactionNumber",
                    "channel", "operator", "decisionCode", "paidAt", "timestamp"]
AMANPAY_FIELDS = ["code", "orderId", "transactionId", "amount", "currency", "method", "status", "reason", "paidAt",
                  "timestamp"]


def _near_valid(gateway: str, checkout) -> dict:  # noqa: ANN001
    """A body that would be accepted for `checkout`, before one field is spoiled."""
    now = int(utcnow().timestamp())
    if gateway == "cmi":
        return {"oid": checkout.order_id, "ReturnOid": checkout.order_id, "amount": str(checkout.amount_ttc),
                "currency": "504", "ProcReturnCode": "00", "Response": "Approved", "TransId": "T1", "mdStatus": "1",
                "EXTRA.TRXDATE": utcnow().astimezone(TIMEZONE).strftime("%Y%m%d %H:%M:%S")}
    if gateway == "fatourati":
        return {"tokenRef": checkout.reference, "orderId": None, "totalAmount": str(checkout.amount_ttc),
                "currency": "504", "fatouratiTransactionNumber": "F1", "decisionCode": 0, "timestamp": now}
    return {"code": checkout.reference, "transactionId": "A1", "amount": str(checkout.amount_ttc), "currency": "MAD",
            "method": "tashilat", "status": "paid", "timestamp": now}


@st.composite
def callback_bodies(draw, gateway: str, gateways, checkouts):  # noqa: ANN001
    """Raw bytes, form or JSON bodies with random headers, and bodies carrying the gateway's
    right signature whose fields are random or near-valid (so they get past the signature into
    the order, amount and state checks)."""
    kind = draw(st.sampled_from(["bytes", "form", "json", "signed", "signed-near"]))
    headers = draw(st.dictionaries(st.sampled_from(["x-signature", "x-amanpay-signature", "content-type", "hash"]),
                                   st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
                                   max_size=3))
    if kind == "bytes":
        return draw(st.binary(max_size=400)), headers
    if kind == "form":
        pairs = draw(st.lists(st.tuples(st.text(max_size=12), st.text(max_size=30)), max_size=8))
        return urlencode(pairs).encode(), {**headers, "content-type": "application/x-www-form-urlencoded"}
    if kind == "json":
        return json.dumps(draw(json_values)).encode(), {**headers, "content-type": "application/json"}
    target = {"cmi": checkouts[0], "fatourati": checkouts[1], "amanpay": checkouts[2]}[gateway]
    if gateway == "cmi":
        if kind == "signed":
            fields = draw(st.dictionaries(st.sampled_from(CMI_FIELDS), text_values, max_size=10))
        else:
            fields = _near_valid(gateway, target)
            fields[draw(st.sampled_from(sorted(fields)))] = draw(text_values)
        signed_fields = gateways.get("cmi").sign_callback(fields)
        return urlencode(signed_fields).encode(), {"content-type": "application/x-www-form-urlencoded"}
    names = FATOURATI_FIELDS if gateway == "fatourati" else AMANPAY_FIELDS
    if kind == "signed":
        data = draw(st.dictionaries(st.sampled_from(names), field_values, max_size=len(names)))
    else:
        data = _near_valid(gateway, target)
        data[draw(st.sampled_from(sorted(data)))] = draw(field_values)
    body = json.dumps(data, allow_nan=True).encode()
    return body, gateways.get(gateway).sign(body)


@hsettings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(data=st.data(), gateway=st.sampled_from(["cmi", "fatourati", "amanpay"]))
def test_no_callback_body_gets_a_500(fuzz_client, data, gateway):
    client, gateways, checkouts = fuzz_client
    body, headers = data.draw(callback_bodies(gateway, gateways, checkouts))
    response = client.post(f"/webhooks/payments/{gateway}", content=body, headers=headers)
    assert response.status_code < 500, response.text
    if gateway == "cmi":
        assert response.status_code == 200 and response.text in ("ACTION=POSTAUTH", "APPROVED", "FAILURE")
    else:
        assert response.status_code in (200, 400) and isinstance(response.json(), dict)

async def test_a_transaction_id_reused_for_another_checkout_is_rejected(world):
    first = await world.checkout(numbers=("02296945",))
    second = await world.checkout(numbers=("02296947",))
    assert (await world.apply("cmi", callback_for(first, txn="SAME")))[0] == OUTCOME_APPLIED
    assert (await world.apply("cmi", callback_for(second, txn="SAME")))[0] == OUTCOME_REJECTED
    async with world.db.session() as session:
        assert (await session.get(Checkout, second.id)).status == "pending"
