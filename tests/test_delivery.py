"""The delivery engine against the fake Bot API (real aiogram client): Telegram's limits are ridden
without going over, 429s are obeyed, 5xx retried then dead-lettered, a blocked chat is marked."""
from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from pydantic import SecretStr
from sqlalchemy import select, update

from bot.channels.telegram.bot import make_bot
from bot.channels.telegram.outbox import telegram_rates, telegram_sender
from core.config import Settings
from core.models import ChatUser, OutboxMessage, utcnow
from core.ratelimit import MemoryLimiter, Rate, make_limiter
from core.services import outbox
from core.services.outbox_status import outbox_status, render
from core.services.users import get_or_create_user
from fatoura.worker import Delivery
from tests.fakes.bot_api import FakeBotAPI
from tests.load import sent_rate

TOKEN = "123456:PUSH-token"


@pytest.fixture
async def server():
    async with FakeBotAPI(token=TOKEN, auto_users=True) as fake:
        fake.bots = []
        yield fake
        for bot in fake.bots:
            await bot.session.close()


def sender_for(server: FakeBotAPI, settings: Settings, db):  # noqa: ANN001, ANN201
    bot = make_bot(settings)
    server.bots.append(bot)
    return telegram_sender(settings, db, bot)


def settings_for(server: FakeBotAPI, **overrides) -> Settings:  # noqa: ANN003
    return Settings(_env_file=None, telegram_bot_token=SecretStr(TOKEN), telegram_api_base=server.base_url,
                    **overrides)


async def queue(db, chats: list[int], kind: str = "invoice_new", batch: str | None = None) -> None:  # noqa: ANN001
    async with db.transaction() as session:
        for i, chat in enumerate(chats):
            await outbox.enqueue_once(session, channel="telegram", chat_id=str(chat), kind=kind,
                                      payload={"text": f"message #{i}"}, dedupe_key=f"t:{i}", batch=batch)


def delivery(db, server: FakeBotAPI, settings: Settings, limiter=None, **kw) -> Delivery:  # noqa: ANN001, ANN003
    return Delivery(db, {"telegram": sender_for(server, settings, db)}, worker="test",
                    limiter=limiter or MemoryLimiter(), rates={"telegram": telegram_rates(settings)}, **kw)


async def statuses(db) -> dict[str, str]:  # noqa: ANN001
    async with db.session() as session:
        rows = (await session.execute(select(OutboxMessage.chat_id, OutboxMessage.status))).all()
    return {chat: status for chat, status in rows}


def accepted(server: FakeBotAPI) -> list:
    return [c for c in server.sent(method="sendMessage") if c.ok]


async def run_until_done(engine: Delivery, db, timeout: float = 20) -> None:  # noqa: ANN001
    stop = asyncio.Event()
    task = asyncio.create_task(engine.run(stop, idle_seconds=0.05))
    try:
        async def done() -> None:
            while True:
                async with db.session() as session:
                    left = (await session.scalars(select(OutboxMessage.id).where(
                        OutboxMessage.status.in_(["queued", "sending"])).limit(1))).first()
                if left is None:
                    return
                await asyncio.sleep(0.05)
        await asyncio.wait_for(done(), timeout)
    finally:
        stop.set()
        await task


async def test_an_announcement_rides_the_bots_rate_without_going_over(db, state, server):
    """Two workers sharing one limiter (memory, or Redis as between processes) send 50 messages
    to 50 chats at 25 per second: the rate is the limit, and the server refuses (almost) nothing."""
    server.rate_limit(overall=25, per_chat=1)
    settings = settings_for(server, telegram_rate_per_second=25)
    limiter = make_limiter(state)
    await queue(db, list(range(1, 51)))
    engines = [delivery(db, server, settings, limiter, concurrency=8) for _ in range(2)]
    engines[1].worker = "test-2"
    await asyncio.gather(*(run_until_done(e, db) for e in engines))
    sent = accepted(server)
    assert len(sent) == 50 and len({c.text for c in sent}) == 50
    # The limiter aims 2% under the ceiling; a scheduling hiccup of the one event loop that runs
    # both sides may still make the server refuse a few sends: they go again a second later, so
    # the rate is measured without the first and last tenth of the sends.
    assert server.throttled <= 3
    rate = sent_rate([c.at for c in sent], trim=0.1)
    assert 0.95 * 25 <= rate <= 25, rate
    assert set((await statuses(db)).values()) == {"delivered"}


async def test_one_chat_gets_one_message_per_second_while_other_chats_go_on(db, server):
    server.rate_limit(overall=30, per_chat=1)
    settings = settings_for(server)
    await queue(db, [7, 7, 7, 8, 9])
    await run_until_done(delivery(db, server, settings, concurrency=4), db)
    assert server.throttled == 0
    times = [c.at for c in accepted(server) if c.chat_id == 7]
    assert len(times) == 3 and all(b - a >= 0.95 for a, b in zip(times, times[1:]))
    others = [c.at for c in accepted(server) if c.chat_id in (8, 9)]
    assert max(others) < times[1]  # not held behind chat 7


async def test_a_group_chat_gets_at_most_twenty_messages_a_minute():
    limiter = MemoryLimiter(clock=lambda: 0.0)
    settings = Settings(_env_file=None, telegram_bot_token=SecretStr(TOKEN))
    rates = telegram_rates(settings)(outbox.Claimed(1, "telegram", "-100123", "text", {}, 0))
    assert rates[1].key == "telegram:chat:-100123" and rates[1].interval == pytest.approx(3.0, rel=0.05)
    booked = await limiter.reserve(rates)
    refused = await limiter.reserve(rates)
    assert booked.booked and not refused.booked and refused.wait == pytest.approx(3.0, rel=0.05)


async def test_a_429_is_obeyed_and_the_message_still_goes(db, server):
    settings = settings_for(server)
    await queue(db, [5])
    server.fail_next("sendMessage", retry_after=2)
    limiter = MemoryLimiter()
    engine = delivery(db, server, settings, limiter)
    (message,) = await engine.claim(10)
    assert await engine.handle(message) == "queued"
    async with db.session() as session:
        row = await session.get(OutboxMessage, message.id)
    assert timedelta(seconds=1.5) < row.next_attempt_at - utcnow() <= timedelta(seconds=2)
    assert "flood" in row.last_error
    # The chat's slot is held for what Telegram asked, whoever sends next.
    assert not (await limiter.reserve([Rate("telegram:bot", 0.01), Rate("telegram:chat:5", 1.0)])).booked
    async with db.transaction() as session:
        await session.execute(update(OutboxMessage).values(next_attempt_at=utcnow()))
    await asyncio.sleep(2)
    (message,) = await engine.claim(10)
    assert await engine.handle(message) == "delivered"
    assert [c.text for c in accepted(server)] == ["message #0"]


async def test_5xx_is_retried_with_backoff_then_dead_lettered_with_its_reason(db, server):
    settings = settings_for(server)
    await queue(db, [5, 6], batch="announcement-1")
    server.fail_next("sendMessage", error_code=500, times=3, chat_id=5)
    # No rate limiter here: the retries come faster than the chat's 1 per second.
    engine = Delivery(db, {"telegram": sender_for(server, settings, db)}, worker="test", max_attempts=3)
    for attempt in range(1, 4):
        for message in await engine.claim(10):
            await engine.handle(message)
        async with db.session() as session:
            row = await session.scalar(select(OutboxMessage).where(OutboxMessage.chat_id == "5"))
        if attempt < 3:
            assert row.status == "queued" and row.attempts == attempt
            assert row.next_attempt_at - utcnow() > timedelta(seconds=5 * 2 ** attempt - 2)  # backoff grows
            async with db.transaction() as session:
                await session.execute(update(OutboxMessage).where(OutboxMessage.id == row.id)
                                      .values(next_attempt_at=utcnow()))
    assert row.status == "dead" and "Internal Server Error" in row.last_error
    assert (await statuses(db))["6"] == "delivered"
    shown = render(await outbox_status(db))
    assert "dead letters by reason" in shown and "Internal Server Error" in shown
    telegram = next(line for line in shown.splitlines() if line.startswith("telegram"))
    assert telegram.split()[1:] == ["0", "0", "1", "1", "0"]


async def test_a_chat_that_blocked_the_bot_is_marked_and_no_longer_sent_to_until_it_writes(db, server):
    settings = settings_for(server)
    user, _ = await get_or_create_user(db, "telegram", "5")
    server.user(5).blocked = True
    await queue(db, [5, 5, 6])
    await run_until_done(delivery(db, server, settings), db)
    assert len(server.sent(chat_id=5)) == 1  # one refusal, then nothing more is tried
    async with db.session() as session:
        rows = (await session.scalars(select(OutboxMessage).where(OutboxMessage.chat_id == "5"))).all()
        blocked = await session.get(ChatUser, user.id)
    assert {r.status for r in rows} == {"dead"} and all("blocked" in r.last_error for r in rows)
    assert blocked.blocked_at is not None
    server.user(5).blocked = False
    back, _ = await get_or_create_user(db, "telegram", "5")  # the customer writes again
    assert back.blocked_at is None
    async with db.session() as session:
        assert (await session.get(ChatUser, user.id)).blocked_at is None


async def test_outbox_status_shows_a_large_announcements_progress(db):
    await queue(db, list(range(1, 41)), batch="event:portnet:evt-7")
    async with db.transaction() as session:
        ids = (await session.scalars(select(OutboxMessage.id).order_by(OutboxMessage.id).limit(10))).all()
        await session.execute(update(OutboxMessage).where(OutboxMessage.id.in_(ids)).values(status="delivered"))
    shown = render(await outbox_status(db))
    assert "event:portnet:evt-7" in shown and "10/40 (25%)" in shown
    assert "[#######......................." in shown


async def test_an_idle_worker_is_woken_by_a_new_announcement_not_by_its_next_poll(seeded_db, server):
    """The worker polls an empty outbox only every 30 s here; a biller event's announcement still
    reaches the chat at once (PostgreSQL NOTIFY between processes, an event within one)."""
    from datetime import date
    from decimal import Decimal

    from core.billers.base import AccountQuery, InvoiceFilter
    from core.billers.registry import BillerRegistry
    from core.billers.sandbox.store import issue_invoice
    from core.services import linking, notifications

    db = seeded_db
    settings = settings_for(server, sandbox=True)
    billers = BillerRegistry.from_settings(settings, db)
    user, _ = await get_or_create_user(db, "telegram", "31", "fr")
    await linking.save_link(db, user.id, await billers.get("portnet").find_account(
        AccountQuery(service="portnet", identifier="A7K2")))
    stop = asyncio.Event()
    task = asyncio.create_task(delivery(db, server, settings).run(stop, idle_seconds=30))
    try:
        await asyncio.sleep(0.5)  # the worker has looked once and sleeps
        account, invoice = await issue_invoice(db, "portnet-A7K2", Decimal("75.00"), today=date.today())
        page = await billers.get("portnet").list_invoices(account.ref, InvoiceFilter(status=None, number=invoice.number))
        started = asyncio.get_running_loop().time()
        assert await notifications.announce(db, "portnet", account.ref, page.items) == 1
        await server.wait_for(lambda calls: [c for c in calls if c.ok and invoice.number in (c.text or "")],
                              chat_id=31, timeout=5)
        assert asyncio.get_running_loop().time() - started < 2
    finally:
        stop.set()
        await task


async def test_fatoura_outbox_status_prints_the_counts_per_channel(tmp_path, sqlite_template, capsys):
    import shutil

    from core.db import Database
    from fatoura.cli import build_parser, cmd_outbox_status

    path = tmp_path / "status.db"
    shutil.copy(sqlite_template, path)
    url = f"sqlite+aiosqlite:///{path}"
    db = Database(url)
    await queue(db, [1, 2, 3], batch=None)
    await db.dispose()
    args = build_parser().parse_args(["outbox", "status"])
    assert args.func is cmd_outbox_status
    await asyncio.to_thread(cmd_outbox_status, args, Settings(_env_file=None, database_url=url))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["channel", "queued", "in", "flight", "delivered", "dead", "skipped"]
    assert lines[1].split() == ["telegram", "3", "0", "0", "0", "0"]
