"""A push load harness shared by the multi-process test and bench/push.py: chats with linked
accounts, a queue of notifications, the fake Bot API in its own process, `fatoura worker`
processes pointed at it."""
from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import func, insert, select, text

from core.db import Database
from core.models import ChatUser, LinkedAccount, OutboxMessage, utcnow

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "123456:LOAD-token"
MARKER = re.compile(r"push #(\d+)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(args, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)


async def reset(db: Database) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(text("TRUNCATE outbox, linked_accounts, chat_users, biller_events RESTART IDENTITY CASCADE"))


async def add_chats(db: Database, chats: int) -> None:
    """Chats 1..N on Telegram, each linked to one account (the worker checks a push is still wanted)."""
    now = utcnow()
    async with db.transaction() as session:
        await session.execute(insert(ChatUser), [
            {"channel": "telegram", "chat_id": str(n), "locale": "fr", "notify_new_invoices": True,
             "notify_reminders": True, "created_at": now} for n in range(1, chats + 1)])
        await session.execute(insert(LinkedAccount), [
            {"user_id": n, "biller": "portnet", "service": "portnet", "identifier": f"L{n:03d}",
             "account_ref": f"load-{n}", "notify_new_invoices": True, "notify_reminders": True,
             "verified_at": now} for n in range(1, chats + 1)])


async def queue(db: Database, messages: int, chats: int, batch: str = "load-test") -> None:
    """`messages` announcements round-robin over the chats: a chat's next one comes `chats`
    messages later, so the bot's rate, not the chat's, is what binds."""
    now = utcnow()
    async with db.transaction() as session:
        for start in range(0, messages, 5000):
            await session.execute(insert(OutboxMessage), [
                {"channel": "telegram", "chat_id": str(1 + i % chats), "kind": "invoice_new", "status": "queued",
                 "payload": {"text": f"push #{i}", "link_id": 1 + i % chats}, "dedupe_key": f"load:{i}",
                 "attempts": 0, "next_attempt_at": now, "created_at": now, "batch": batch}
                for i in range(start, min(messages, start + 5000))])


async def setup(db: Database, messages: int, chats: int) -> None:
    """An emptied database with the chats and `messages` queued notifications."""
    await reset(db)
    await add_chats(db, chats)
    if messages:
        await queue(db, messages, chats)


async def count(db: Database, status: str) -> int:
    async with db.session() as session:
        return await session.scalar(select(func.count()).select_from(OutboxMessage)
                                    .where(OutboxMessage.status == status))


def start_fake(rate: int, log: Path) -> tuple[subprocess.Popen, str]:
    """The fake Bot API in its own process on a free port; returns it and its base URL."""
    port = free_port()
    process = spawn([sys.executable, "-m", "tests.fakes.bot_api", "--port", str(port), "--token", TOKEN,
                     "--overall", str(rate), "--per-chat", "1"], {}, log)
    return process, f"http://127.0.0.1:{port}"


def worker_env(database_url: str, redis_url: str, api_base: str, rate: int, **extra: str) -> dict[str, str]:
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "TELEGRAM_BOT_TOKEN": TOKEN,
           "TELEGRAM_API_BASE": api_base, "TELEGRAM_RATE_PER_SECOND": str(rate), "PUSH_SYNC_MINUTES": "0",
           "LOG_LEVEL": "WARNING", "SANDBOX": "false", "OUTBOX_POLL_SECONDS": "0.2"}
    return {**env, **extra}


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    return spawn([sys.executable, "-m", "fatoura", "worker"], env, log)


def fetch_sent(base: str) -> dict:
    """What the fake server accepted: {"sent": [[chat_id, text, monotonic time], ...], "throttled": n}."""
    with urllib.request.urlopen(f"{base}/_fake/sent", timeout=60) as response:
        return json.loads(response.read())


async def wait_until(predicate: Callable[[], Awaitable[bool]], timeout: float, every: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not done within {timeout} s")
        await asyncio.sleep(every)


async def answers(base: str) -> bool:
    try:
        await asyncio.to_thread(fetch_sent, base)
    except OSError:
        return False
    return True


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def sent_rate(times: list[float], trim: float = 0.0) -> float:
    """Messages per second between the first and the last send; `trim` leaves out that share of
    the sends at each end (the start of the workers, the last retries after a 429 or a kill)."""
    times = sorted(times)
    cut = int(len(times) * trim)
    times = times[cut:len(times) - cut] if cut else times
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
