"""`fatoura worker`: deliver the outbox through the chat channels, forever or once."""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from core.config import Settings
from core.db import Database
from core.services import outbox

log = logging.getLogger("fatoura.worker")

# A sender delivers one claimed message and returns the platform's message id.
Sender = Callable[[outbox.Claimed], Awaitable[str | None]]


class PermanentFailure(Exception):
    """The platform refused for good (chat blocked the bot, chat gone): no retry."""


class RetryLater(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


async def deliver_due(db: Database, senders: dict[str, Sender], worker: str, limit: int = 20) -> int:
    """Deliver what is due now; returns how many messages were handled."""
    claimed = await outbox.claim_due(db, worker, limit)
    for message in claimed:
        sender = senders.get(message.channel)
        if sender is None:
            await outbox.mark_failed(db, message.id, f"no sender for channel {message.channel}")
            continue
        try:
            provider_id = await sender(message)
        except PermanentFailure as error:
            await outbox.mark_failed(db, message.id, str(error), permanent=True)
        except RetryLater as error:
            await outbox.mark_failed(db, message.id, str(error), retry_after=error.retry_after)
        except Exception as error:  # noqa: BLE001 - any other failure is retried with backoff
            log.warning("outbox message %s failed: %s", message.id, type(error).__name__)
            await outbox.mark_failed(db, message.id, f"{type(error).__name__}: {error}")
        else:
            await outbox.mark_delivered(db, message.id, provider_id)
    return len(claimed)


async def work(db: Database, senders: dict[str, Sender], *, once: bool = False, idle_seconds: float = 1.0,
               stop: asyncio.Event | None = None) -> None:
    worker = outbox.worker_id()
    stop = stop or asyncio.Event()
    while not stop.is_set():
        handled = await deliver_due(db, senders, worker)
        if once and not handled:
            return
        if not handled:
            try:
                await asyncio.wait_for(stop.wait(), idle_seconds)
            except asyncio.TimeoutError:
                pass


def build_senders(settings: Settings) -> dict[str, Sender]:
    senders: dict[str, Sender] = {}
    if settings.telegram_bot_token:
        from bot.channels.telegram.outbox import telegram_sender

        senders["telegram"] = telegram_sender(settings)
    return senders


async def run_worker(settings: Settings, once: bool = False) -> int:
    from core.db import upgrade_async

    await upgrade_async(settings.database_url)
    db = Database(settings.database_url)
    senders = build_senders(settings)
    log.info("worker started; channels: %s", ", ".join(sorted(senders)) or "none configured")
    try:
        await work(db, senders, once=once)
    finally:
        await db.dispose()
    return 0
