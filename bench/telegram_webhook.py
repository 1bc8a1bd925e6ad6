"""Updates through our Telegram webhook, next to a bare aiogram echo bot on the same fake Bot API.

    .venv/bin/python bench/telegram_webhook.py [--updates 600] [--chats 30]

Each of C chats sends its share of the N updates one after another (a person waits for the answer
before the next message); the chats run at once. Latency is from the webhook POST to the bot's
answer recorded by the fake Bot API server. Ours runs the whole product on a temporary SQLite file
(conversation, per-chat lock and dedupe in memory, sandbox billers); the echo bot answers every
text with the same text. Prints updates/s, p50 and p99 for each, and ours / echo as ratios.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import logging  # noqa: E402

from aiogram.types import Update  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from core.config import Settings  # noqa: E402
from core.db import Database, upgrade  # noqa: E402
from tests.browser import serve  # noqa: E402
from tests.fakes.bot_api import FakeBotAPI  # noqa: E402
from tests.fakes.echo_bot import build_echo_bot  # noqa: E402
from webhooks.app import create_app  # noqa: E402

TOKEN, SECRET = "123456:BENCH", "bench-secret"
MESSAGES = ["/start", "/help", "/accounts", "/payments", "/language", "bonjour"]


async def drive(server: FakeBotAPI, url: str, updates: int, chats: int, secret: str | None) -> tuple[float, list[float]]:
    latencies: list[float] = []

    async def one_chat(index: int) -> None:
        user = server.user(50_000 + index, language_code=("fr", "ar", "en")[index % 3])
        for n in range(updates // chats):
            before = len(server.sent(user.id))
            started = time.perf_counter()
            await server.post_update(url, user.make_text_update(MESSAGES[n % len(MESSAGES)]), secret_token=secret)
            await server.wait_for(lambda calls: len(calls) > before, chat_id=user.id, timeout=30)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(one_chat(i) for i in range(chats)))
    return time.perf_counter() - started, latencies


def report(name: str, seconds: float, latencies: list[float]) -> dict[str, float]:
    latencies = sorted(latencies)
    figures = {"rate": len(latencies) / seconds, "p50": statistics.median(latencies) * 1000,
               "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000}
    print(f"{name:>6}: {len(latencies)} updates in {seconds:.2f} s = {figures['rate']:.0f} updates/s, "
          f"p50 {figures['p50']:.1f} ms, p99 {figures['p99']:.1f} ms")
    return figures


async def ours(updates: int, chats: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/bench.db"
        await asyncio.to_thread(upgrade, url)
        db = Database(url)
        from core.billers.sandbox.store import seed_samples

        await seed_samples(db)
        async with FakeBotAPI(token=TOKEN) as server:
            settings = Settings(_env_file=None, database_url=url, sandbox=True, telegram_bot_token=SecretStr(TOKEN),
                                telegram_webhook_secret=SecretStr(SECRET), telegram_api_base=server.base_url)
            async with serve(create_app(settings, db=db)) as base:
                seconds, latencies = await drive(server, f"{base}/webhooks/telegram", updates, chats, SECRET)
        await db.dispose()
    return report("ours", seconds, latencies)


async def echo(updates: int, chats: int) -> dict[str, float]:
    async with FakeBotAPI(token="654321:ECHO") as server:
        bot, dp = build_echo_bot(server.base_url, token="654321:ECHO")
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> dict[str, bool]:
            update = Update.model_validate(await request.json(), context={"bot": bot})
            await dp.feed_update(bot, update)
            return {"ok": True}

        async with serve(app) as base:
            seconds, latencies = await drive(server, f"{base}/hook", updates, chats, None)
        await bot.session.close()
    return report("echo", seconds, latencies)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--updates", type=int, default=600)
    parser.add_argument("--chats", type=int, default=30)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    a = await ours(args.updates, args.chats)
    b = await echo(args.updates, args.chats)
    print(f" ratio: throughput {a['rate'] / b['rate']:.2f}x of echo, "
          f"p50 {a['p50'] / b['p50']:.2f}x, p99 {a['p99'] / b['p99']:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
