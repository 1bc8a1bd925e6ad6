"""A message for a web chat customer (a payment confirmation, an agent's reply) waits in the outbox
while their page is closed, and reaches the page as soon as they come back; the web process that
holds the page delivers it."""
from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from sqlalchemy import select

from bot.channels.webchat import new_session_id
from core.config import Settings
from core.models import OutboxMessage
from core.services import outbox
from tests.browser import serve
from webhooks.app import create_app


async def queue(db, chat_id: str, text: str) -> int:  # noqa: ANN001
    async with db.transaction() as session:
        message = outbox.enqueue(session, channel="webchat", chat_id=chat_id, kind="payment_paid",
                                 payload={"text": text, "language": "fr"})
    return message.id


async def row(db, message_id: int) -> OutboxMessage:  # noqa: ANN001
    async with db.session() as session:
        return await session.scalar(select(OutboxMessage).where(OutboxMessage.id == message_id))


async def frames_until(ws, text: str, seconds: float = 10.0) -> list[dict]:  # noqa: ANN001
    seen = []
    async with asyncio.timeout(seconds):
        while True:
            frame = json.loads(await ws.recv())
            seen.append(frame)
            if frame.get("type") == "text" and text in frame.get("text", ""):
                return seen


async def test_a_confirmation_waits_for_the_closed_page_and_arrives_when_amina_comes_back(seeded_db):
    app = create_app(Settings(_env_file=None, sandbox=True), db=seeded_db)
    amina = new_session_id()
    async with serve(app) as base:
        message_id = await queue(seeded_db, amina, "Paiement confirmé : 299,81 MAD")
        await asyncio.sleep(2.5)  # her page is closed: nothing is tried, nothing is lost
        waiting = await row(seeded_db, message_id)
        assert (waiting.status, waiting.attempts) == ("queued", 0)

        async with websockets.connect(base.replace("http", "ws") + "/chat/ws") as ws:
            await ws.send(json.dumps({"type": "start", "session": amina, "id": "c1", "language": "fr"}))
            await frames_until(ws, "Paiement confirmé : 299,81 MAD")
        for _ in range(50):  # the delivered mark is written right after the page got it
            if (await row(seeded_db, message_id)).status == "delivered":
                break
            await asyncio.sleep(0.1)
        assert (await row(seeded_db, message_id)).status == "delivered"


async def test_another_customers_message_never_reaches_this_page(seeded_db):
    app = create_app(Settings(_env_file=None, sandbox=True), db=seeded_db)
    amina, youssef = new_session_id(), new_session_id()
    async with serve(app) as base:
        theirs = await queue(seeded_db, youssef, "Pour Youssef")
        async with websockets.connect(base.replace("http", "ws") + "/chat/ws") as ws:
            await ws.send(json.dumps({"type": "start", "session": amina, "id": "c1", "language": "fr"}))
            await queue(seeded_db, amina, "Pour Amina")
            frames = await frames_until(ws, "Pour Amina")
        assert not any("Pour Youssef" in frame.get("text", "") for frame in frames)
        assert (await row(seeded_db, theirs)).status == "queued"
