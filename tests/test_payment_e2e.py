"""Paying end to end: the chat on Telegram (real aiogram client, fake Bot API), our /pay page, the
sandbox CMI page and agency counter calling our callbacks with real signatures, the worker
delivering the confirmation and the receipt back into the chat."""
from __future__ import annotations

import asyncio
import contextlib
import html
import io
import re
import socket
from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest
from aiogram.client.telegram import TelegramAPIServer
from hypothesis import HealthCheck, given, settings as hsettings
from hypothesis import strategies as st
from pydantic import SecretStr
from pypdf import PdfReader
from sqlalchemy import func, select

from bot.channels.telegram.runner import start_polling_task
from core.config import Settings
from core.models import Payment, SandboxInvoice
from fatoura.worker import build_senders, deliver_due
from tests.browser import serve
from tests.fakes.bot_api import FakeBotAPI
from tests.fakes.echo_bot import LocalAiohttpSession
from tests.test_telegram_e2e import TelegramChat
from webhooks.app import create_app
from webhooks.sandbox_gateways import pay_reference

TOKEN = "123456:PAY-token"
APPROVED, DECLINED = "4000000000000002", "4000000000000010"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Shop:
    def __init__(self, server: FakeBotAPI, app, settings: Settings, base: str, db) -> None:  # noqa: ANN001
        self.server, self.app, self.settings, self.base, self.db = server, app, settings, base, db

    async def deliver(self) -> None:
        """One worker round: what the confirmations queued goes to the chat."""
        senders = build_senders(self.settings, self.db, self.app.state.fatoura.billers)
        while await deliver_due(self.db, senders, "test-worker"):
            pass


@contextlib.asynccontextmanager
async def shop(db) -> AsyncIterator[Shop]:  # noqa: ANN001
    port = free_port()
    async with FakeBotAPI(token=TOKEN) as server:
        settings = Settings(_env_file=None, sandbox=True, telegram_bot_token=SecretStr(TOKEN),
                            telegram_api_base=server.base_url, public_base_url=f"http://127.0.0.1:{port}")
        app = create_app(settings, db=db)
        async with serve(app, port=port) as base:
            task = await start_polling_task(settings, app.state.conversation,
                                            session=LocalAiohttpSession(api=TelegramAPIServer.from_base(server.base_url)))
            try:
                yield Shop(server, app, settings, base, db)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


def hidden_fields(page: str) -> dict[str, str]:
    return {html.unescape(k): html.unescape(v)
            for k, v in re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)"', page)}


async def pay_by_card(link: str, pan: str) -> str:
    """What the customer's browser does: our page, CMI's page, the card, back to ok/fail."""
    async with httpx.AsyncClient(timeout=30) as browser:
        assert (await browser.get(link)).status_code == 200
        ours = (await browser.post(link)).text
        action = html.unescape(re.search(r'<form id="go" method="post" action="([^"]+)"', ours).group(1))
        cmi = (await browser.post(action, data=hidden_fields(ours))).text
        assert "4000 0000 0000 0002" in cmi  # the sandbox lists its test cards
        request_blob = re.search(r'name="_request" value="([^"]*)"', cmi).group(1)
        back = (await browser.post(action.replace("est3Dgate", "pay"),
                                   data={"_request": html.unescape(request_blob), "pan": pan, "exp": "12/30",
                                         "cvv": "123"})).text
        return html.unescape(re.search(r'<form[^>]*action="([^"]+)"', back).group(1))


async def start_card_payment(amina: TelegramChat) -> str:
    await amina.say("/start")
    await amina.say("/link")
    await amina.press("Maroc Telecom")
    await amina.press("Mobile")
    await amina.say("0623363444")
    await amina.say("528605")
    await amina.press("Pay")
    await amina.press("Continue")
    await amina.press("Card (CMI)")
    buttons = [b for row in amina.calls[-1].params["reply_markup"]["inline_keyboard"] for b in row]
    return next(b["url"] for b in buttons if "url" in b)


async def test_card_round_trip_ends_with_paid_message_and_receipt_in_telegram(seeded_db):
    async with shop(seeded_db) as s:
        amina = TelegramChat(s.server, s.server.user(1001, first_name="Amina", language_code="en"))
        link = await start_card_payment(amina)
        assert link.startswith(s.base + "/pay/")
        landing = await pay_by_card(link, APPROVED)
        assert landing.endswith("/ok")
        async with seeded_db.session() as session:
            statuses = (await session.scalars(select(SandboxInvoice.status).where(
                SandboxInvoice.number.in_(["0000528605012017", "0000528605022017"])))).all()
        assert statuses == ["paid", "paid"]  # the biller got its paid notice
        await s.deliver()
        messages = s.server.sent(1001, "sendMessage")
        paid = messages[-1].params["text"]
        assert "0000528605022017" in paid and "563" in paid  # 264.00 + 299.81 TTC
        (receipt,) = s.server.sent(1001, "sendDocument")
        text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(receipt.files["document"].content)).pages)
        assert "0000528605022017" in text
        # the link is single use: opening it again says the payment is done
        async with httpx.AsyncClient() as browser:
            assert "already" in (await browser.get(link)).text.lower()


async def test_a_declined_card_offers_to_try_again(seeded_db):
    async with shop(seeded_db) as s:
        amina = TelegramChat(s.server, s.server.user(1002, language_code="en"))
        link = await start_card_payment(amina)
        assert (await pay_by_card(link, DECLINED)).endswith("/fail")
        await s.deliver()
        declined = s.server.messages(1002)[-1]
        assert declined.from_bot and declined.button_texts
        await amina._after(lambda: amina.user.press(declined, declined.callback_data[0]))
        assert any("/pay/" in b.get("url", "") for c in amina.calls if c.params.get("reply_markup")
                   for row in c.params["reply_markup"].get("inline_keyboard", []) for b in row)


async def test_the_same_callback_ten_times_at_once_pays_once_and_says_it_once(seeded_db):
    async with shop(seeded_db) as s:
        amina = TelegramChat(s.server, s.server.user(1003, language_code="en"))
        link = await start_card_payment(amina)
        # Capture the signed callback the sandbox CMI sends, by paying through it once...
        calls: list[tuple[bytes, dict]] = []
        original = s.app.state.gateways.get("cmi").verify_callback

        def spy(request):  # noqa: ANN001, ANN202
            calls.append((request.body, dict(request.headers)))
            return original(request)

        s.app.state.gateways.get("cmi").verify_callback = spy
        await pay_by_card(link, APPROVED)
        body, _ = calls[0]
        # ... then replay it 10 times at once, as a retrying gateway might.
        async with httpx.AsyncClient(timeout=30) as client:
            answers = await asyncio.gather(*(client.post(
                f"{s.base}/webhooks/payments/cmi", content=body,
                headers={"Content-Type": "application/x-www-form-urlencoded"}) for _ in range(10)))
        assert {a.text.strip() for a in answers} == {"ACTION=POSTAUTH"}
        async with seeded_db.session() as session:
            assert await session.scalar(select(func.count()).select_from(Payment)) == 1
        await s.deliver()
        assert len(s.server.sent(1003, "sendDocument")) == 1


async def fatourati_reference(amina: TelegramChat, channel: str) -> tuple[str, Decimal]:
    await amina.say("/start")
    await amina.say("/link")
    await amina.press("PortNet")
    await amina.say("K9AS" if channel == "Fatourati" else "A7K2")
    await amina.press("Pay")
    if channel != "Fatourati":
        await amina.press("PORTNET")
    await amina.press("Continue")
    await amina.press(channel)
    text = amina.text
    if channel == "Fatourati":
        reference = re.search(r"reference: (\d{13})", text).group(1)
    else:
        reference = re.sub(r"\D", "", re.search(r"code: ([\d \-]+)", text).group(1))
    return reference, Decimal("3600.00")


@pytest.mark.parametrize("channel", ["Fatourati", "Tashilat"])
async def test_reference_paid_at_the_counter_confirms_in_the_chat(seeded_db, channel):
    async with shop(seeded_db) as s:
        amina = TelegramChat(s.server, s.server.user(1004, language_code="en"))
        reference, amount = await fatourati_reference(amina, channel)
        assert any(c.method == "sendPhoto" for c in amina.calls)  # the QR code
        wrong = await pay_reference(s.base, None, reference, amount - 1, settings=s.settings)
        assert not wrong.accepted
        result = await pay_reference(s.base, None, reference, amount, settings=s.settings)
        assert result.accepted
        await s.deliver()
        texts = [c.params["text"] for c in s.server.sent(1004, "sendMessage")]
        assert any("match" in t.lower() for t in texts)  # the wrong amount was reported, nothing paid
        assert len(s.server.sent(1004, "sendDocument")) == 1


async def test_a_reference_paid_after_expiry_is_held_not_paid(seeded_db):
    async with shop(seeded_db) as s:
        amina = TelegramChat(s.server, s.server.user(1005, language_code="en"))
        reference, amount = await fatourati_reference(amina, "Fatourati")
        result = await pay_reference(s.base, None, reference, amount, late=True, settings=s.settings)
        assert not result.accepted
        async with seeded_db.session() as session:
            assert await session.scalar(select(func.count()).select_from(Payment).where(Payment.status == "paid")) == 0
            assert await session.scalar(select(SandboxInvoice.status).where(SandboxInvoice.number == "00028653")) == "unpaid"
        await s.deliver()
        assert not s.server.sent(1005, "sendDocument")
        assert s.server.sent(1005, "sendMessage")[-1].params["text"]  # the customer is told


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(gateway=st.sampled_from(["cmi", "fatourati", "amanpay", "lydec"]), body=st.binary(max_size=600),
       content_type=st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain", ""]),
       signature=st.text(max_size=80))
def test_no_callback_body_however_malformed_gets_a_500(tmp_path_factory, gateway, body, content_type, signature):
    asyncio.run(_post_garbage(tmp_path_factory, gateway, body, content_type, signature))


_APP: dict = {}


async def _post_garbage(tmp_path_factory, gateway, body, content_type, signature) -> None:  # noqa: ANN001
    from core.db import Database, upgrade

    if "url" not in _APP:
        _APP["url"] = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('fuzz')}/f.db"
        await asyncio.to_thread(upgrade, _APP["url"])
    db = Database(_APP["url"])
    app = create_app(Settings(_env_file=None, sandbox=True), db=db)
    headers = {"content-type": content_type, "x-signature": signature, "x-amanpay-signature": signature}
    headers = {k: v for k, v in headers.items() if v.isascii() and "\n" not in v and "\r" not in v}
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            answer = await client.post(f"/webhooks/payments/{gateway}", content=body, headers=headers)
    await db.dispose()
    assert answer.status_code < 500
