"""Messages through our WhatsApp webhook against the fake Graph API: how fast Meta gets its 200,
and how long until the reply reaches the Graph API.

    .venv/bin/python bench/whatsapp_webhook.py [--messages 600] [--customers 30] [--database-url URL]

Each of C customers sends its share of the N messages one after another (a person waits for the
answer); the customers run at once. "ack" is the webhook POST's own time (signature check, raw body
stored, 200): Meta retries what it gets no fast 200 for. "reply" is from the POST to the reply
recorded by the fake Graph API (wamid dedupe, the conversation, the renderer, the Graph API call).
The whole product runs on a temporary SQLite file (or the migrated database at URL, whose
tables get rows) with in-memory state; the fake server, the
customers and the app share one process and one event loop, so both sides pay for the harness.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydantic import SecretStr  # noqa: E402

from core.config import Settings  # noqa: E402
from core.db import Database, upgrade  # noqa: E402
from tests.browser import serve  # noqa: E402
from tests.fakes.graph_api import FakeGraphAPI  # noqa: E402
from webhooks.app import create_app  # noqa: E402

SECRET = "bench-app-secret"
MESSAGES = ["Bonjour", "/help", "/accounts", "/payments", "/language", "/menu"]


def figures(name: str, values: list[float]) -> str:
    values = sorted(values)
    p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
    return f"{name} p50 {statistics.median(values) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"


async def run(messages: int, customers: int, database_url: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = database_url or f"sqlite+aiosqlite:///{tmp}/bench.db"
        await asyncio.to_thread(upgrade, url)
        db = Database(url)
        async with FakeGraphAPI(app_secret=SECRET) as graph:
            settings = Settings(_env_file=None, database_url=url, sandbox=True, whatsapp_token=SecretStr(graph.token),
                                whatsapp_phone_number_id=graph.phone_number_id, whatsapp_app_secret=SecretStr(SECRET),
                                whatsapp_api_base=graph.base_url)
            async with serve(create_app(settings, db=db)) as base:
                graph.webhook_url = base + "/webhooks/whatsapp"
                acks: list[float] = []
                replies: list[float] = []

                async def one(index: int) -> None:
                    customer = graph.customer(f"2126{index:05d}{time.time_ns() % 1000:03d}", f"Client {index}")
                    for n in range(messages // customers):
                        before = len(graph.sent_to(customer.address))
                        started = time.perf_counter()
                        (answer,) = await customer.say(MESSAGES[n % len(MESSAGES)])
                        acks.append(time.perf_counter() - started)
                        assert answer.status_code == 200
                        await graph.wait_for(lambda: len(graph.sent_to(customer.address)) > before, timeout=60)
                        replies.append(time.perf_counter() - started)

                started = time.perf_counter()
                await asyncio.gather(*(one(i) for i in range(customers)))
                seconds = time.perf_counter() - started
        await db.dispose()
    print(f"{len(replies)} messages from {customers} customers in {seconds:.2f} s = {len(replies) / seconds:.0f} "
          f"messages/s; {figures('ack', acks)}; {figures('reply', replies)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=600)
    parser.add_argument("--customers", type=int, default=30)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    asyncio.run(run(args.messages, args.customers, args.database_url))


if __name__ == "__main__":
    main()
