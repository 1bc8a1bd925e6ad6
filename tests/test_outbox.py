"""The outbox: every queued message is delivered once, failures are retried, refusals end dead."""
from __future__ import annotations

import asyncio
from collections import Counter

from sqlalchemy import select

from core.models import OutboxMessage
from core.services import outbox
from fatoura.worker import PermanentFailure, RetryLater, deliver_due


async def _queue(db, n: int, chat: str = "42") -> None:
    async with db.transaction() as session:
        for i in range(n):
            outbox.enqueue(session, channel="telegram", chat_id=chat, kind="text", payload={"text": f"m{i}"},
                           dedupe_key=f"k{chat}-{i}")


async def test_two_workers_never_send_the_same_message(db):
    await _queue(db, 60)
    sent = Counter()

    async def sender(message):
        sent[message.payload["text"]] += 1
        await asyncio.sleep(0)
        return "1"

    async def worker(name):
        while await deliver_due(db, {"telegram": sender}, name, limit=7):
            pass

    await asyncio.gather(worker("w1"), worker("w2"))
    assert len(sent) == 60 and set(sent.values()) == {1}
    async with db.session() as session:
        statuses = (await session.scalars(select(OutboxMessage.status))).all()
    assert set(statuses) == {"delivered"}


async def test_failures_are_retried_later_and_refusals_are_dead(db):
    await _queue(db, 2)

    async def sender(message):
        if message.payload["text"] == "m0":
            raise RetryLater("429", retry_after=0)
        raise PermanentFailure("bot was blocked by the user")

    await deliver_due(db, {"telegram": sender}, "w")
    async with db.session() as session:
        rows = {r.payload["text"]: r for r in (await session.scalars(select(OutboxMessage))).all()}
    assert rows["m0"].status == "queued" and rows["m0"].attempts == 1
    assert rows["m1"].status == "dead" and "blocked" in rows["m1"].last_error
