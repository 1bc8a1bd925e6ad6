"""Push and the delivery engine, on PostgreSQL and Redis, against the fake Bot API in its own process.

    .venv/bin/python bench/push.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/scratch \
        --redis-url redis://127.0.0.1:6379/0 [--messages 10000] [--rate 200] [--workers 3] \
        [--events 30] [--queued 100000]

The database's outbox, chats, linked accounts and biller events are emptied: use a scratch one.
Prints, each measured, never asserted:
1. rate: `--workers` `fatoura worker` processes deliver `--messages` notifications to 2,000 chats
   under a bot limit of `--rate`/s (the fake server enforces it with 429s): achieved/limit ratio;
2. latency: with an idle queue and one worker, `--events` signed biller events ("invoice.issued")
   POSTed to the web app, each timed until the fake server holds the chat message: p50 / p99;
3. memory: one worker's resident memory idle, then while `--queued` messages wait in the outbox.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydantic import SecretStr  # noqa: E402

from core.config import Settings  # noqa: E402
from core.db import Database, normalize_url, upgrade  # noqa: E402
from tests import load  # noqa: E402

CHATS = 2_000


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, in KiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


async def bench_rate(url: str, redis: str, messages: int, rate: int, workers: int, logs: Path) -> None:
    db = Database(url)
    await load.setup(db, messages, CHATS)
    fake, base = load.start_fake(rate, logs / "fake-rate.log")
    procs = []
    try:
        await load.wait_until(lambda: load.answers(base), 15, 0.1)
        env = load.worker_env(url, redis, base, rate, WORKER_CONCURRENCY="48")
        procs = [load.start_worker(env, logs / f"worker-rate{n}.log") for n in range(workers)]

        async def done() -> bool:
            return await load.count(db, "delivered") >= messages

        await load.wait_until(done, 60 + 2 * messages / rate, 0.2)
        report = load.fetch_sent(base)
    finally:
        load.stop([*procs, fake])
        await db.dispose()
    times = [entry[2] for entry in report["sent"]]
    sustained, overall = load.sent_rate(times, trim=0.01), load.sent_rate(times)
    print(f"rate:     {messages} notifications, {workers} workers: {sustained:.1f}/s sustained (1st-99th percentile "
          f"of send times) against a limit of {rate}/s = {sustained / rate:.3f} of the limit "
          f"(first to last send: {overall / rate:.3f}); 429 answers: {report['throttled']}")


async def bench_latency(url: str, redis: str, events: int, logs: Path) -> None:
    from core.billers.sandbox.store import issue_invoice, seed_samples
    from core.services import biller_events
    from core.services.users import get_or_create_user
    from core.services.linking import save_link
    from core.billers.registry import BillerRegistry
    from core.billers.base import AccountQuery
    from tests.browser import serve
    from webhooks.app import create_app

    db = Database(url)
    await load.reset(db)
    await seed_samples(db)
    settings = Settings(_env_file=None, database_url=url, redis_url=redis, sandbox=True,
                        secret_key=SecretStr("bench-push"))
    billers = BillerRegistry.from_settings(settings, db)
    user, _ = await get_or_create_user(db, "telegram", "777", "fr")
    account = await billers.get("portnet").find_account(AccountQuery(service="portnet", identifier="A7K2"))
    await save_link(db, user.id, account)
    fake, api = load.start_fake(30, logs / "fake-latency.log")
    worker = None
    times: list[float] = []
    try:
        await load.wait_until(lambda: load.answers(api), 15, 0.1)
        env = load.worker_env(url, redis, api, 30, SECRET_KEY="bench-push", OUTBOX_POLL_SECONDS="0.5")
        worker = load.start_worker(env, logs / "worker-latency.log")
        await asyncio.sleep(4)  # the worker starts (imports, migrations check)
        async with serve(create_app(settings, db=db)) as web:
            for n in range(events):
                _, invoice = await issue_invoice(db, "portnet-A7K2", Decimal("100.00") + n)
                started = time.perf_counter()
                status, _ = await biller_events.post_event(web, settings, "portnet",
                                                           biller_events.issued_event(account.account_ref, invoice.number))
                assert status == 200, status
                while not any(invoice.number in (entry[1] or "") for entry in load.fetch_sent(api)["sent"]):
                    await asyncio.sleep(0.005)
                times.append(time.perf_counter() - started)
                # One message per second per chat, an idle queue each time, and a random phase
                # against the worker's polling of the empty outbox.
                await asyncio.sleep(1.05 + random.random() * 0.5)
    finally:
        load.stop([p for p in (worker, fake) if p is not None])
        await db.dispose()
    ms = sorted(t * 1000 for t in times)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    print(f"latency:  biller event -> chat message, idle queue, {events} events: p50 {statistics.median(ms):.0f} ms, "
          f"p99 {p99:.0f} ms (the announcement wakes the idle worker through PostgreSQL NOTIFY)")


async def bench_memory(url: str, redis: str, queued: int, logs: Path) -> None:
    db = Database(url)
    await load.setup(db, 0, CHATS)
    fake, api = load.start_fake(200, logs / "fake-memory.log")
    worker = None
    try:
        await load.wait_until(lambda: load.answers(api), 15, 0.1)
        worker = load.start_worker(load.worker_env(url, redis, api, 200), logs / "worker-memory.log")
        await asyncio.sleep(6)
        idle, _ = rss_kib(worker.pid)
        await load.queue(db, queued, CHATS)
        peak = 0
        for _ in range(20):  # 20 s of delivery with the queue full
            await asyncio.sleep(1)
            peak = max(peak, rss_kib(worker.pid)[0])
        left = queued - await load.count(db, "delivered")
    finally:
        load.stop([p for p in (worker, fake) if p is not None])
        await db.dispose()
    print(f"memory:   one worker idle {idle / 1024:.0f} MiB; with {queued} queued ({left} still queued after 20 s): "
          f"peak {peak / 1024:.0f} MiB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True, help="a scratch PostgreSQL database (it is emptied)")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--events", type=int, default=30)
    parser.add_argument("--queued", type=int, default=100_000)
    args = parser.parse_args()
    url = normalize_url(args.database_url)
    if not url.startswith("postgresql"):
        parser.error("--database-url must be PostgreSQL (several workers share it)")
    upgrade(url)
    logs = Path(tempfile.mkdtemp(prefix="fatoura-bench-push-"))
    asyncio.run(bench_rate(url, args.redis_url, args.messages, args.rate, args.workers, logs))
    asyncio.run(bench_latency(url, args.redis_url, args.events, logs))
    asyncio.run(bench_memory(url, args.redis_url, args.queued, logs))
    print(f"(process logs in {logs})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
