"""`fatoura worker`: deliver the outbox through the chat channels, forever or once."""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from core.config import Settings
from core.db import Database
from core.services import outbox
from core.services.outbox import PermanentFailure, RetryLater

__all__ = ["PermanentFailure", "RetryLater", "Sender", "deliver_due", "work", "run_worker"]

log = logging.getLogger("fatoura.worker")

# A sender delivers one claimed message and returns the platform's message id.
Sender = Callable[[outbox.Claimed], Awaitable[str | None]]


async def deliver_due(db: Database, senders: dict[str, Sender], worker: str, limit: int = 20) -> int:
    """Deliver what is due now; returns how many messages were handled."""
    claimed = await outbox.claim_due(db, worker, limit, channels=sorted(senders))
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


EXPIRE_EVERY = 60.0  # seconds between sweeps of expired checkouts


async def work(db: Database, senders: dict[str, Sender], *, once: bool = False, idle_seconds: float = 1.0,
               stop: asyncio.Event | None = None) -> None:
    """Deliver the outbox and release the invoices of expired checkouts, until `stop` is set."""
    from core.services.checkout import expire_due

    worker = outbox.worker_id()
    stop = stop or asyncio.Event()
    next_sweep = 0.0
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        if loop.time() >= next_sweep:
            try:
                await expire_due(db)
            except Exception:  # noqa: BLE001 - a failed sweep is retried at the next one
                log.exception("expiring checkouts failed")
            next_sweep = loop.time() + EXPIRE_EVERY
        try:
            handled = await deliver_due(db, senders, worker)
        except Exception:  # noqa: BLE001 - the database may be briefly away: wait and go on
            log.exception("outbox delivery round failed")
            handled = 0
        if once and not handled:
            return
        if not handled:
            try:
                await asyncio.wait_for(stop.wait(), idle_seconds)
            except asyncio.TimeoutError:
                pass


def build_senders(settings: Settings, db: Database, billers=None) -> dict[str, Sender]:  # noqa: ANN001
    """The senders this process can run: billers' paid notices always, Telegram and WhatsApp when configured.
    (The web chat's sender lives in the web process that holds the open pages.)"""
    from core.billers.registry import BillerRegistry
    from core.services.confirmations import biller_notice_sender

    billers = billers or BillerRegistry.from_settings(settings, db)
    senders: dict[str, Sender] = {"biller": biller_notice_sender(billers)}
    if settings.telegram_bot_token:
        from bot.channels.telegram.outbox import telegram_sender

        senders["telegram"] = telegram_sender(settings, db, billers=billers)
        if settings.support_chat_id:  # the support agents' Telegram topics
            from bot.channels.telegram.support import support_sender

            senders["support"] = support_sender(settings, db)
    if settings.whatsapp_token and settings.whatsapp_phone_number_id:
        from bot.channels.whatsapp.outbox import whatsapp_sender
        from core.state import make_state

        senders["whatsapp"] = whatsapp_sender(settings, db, make_state(settings.redis_url), billers=billers)
    return senders


async def run_worker(settings: Settings, once: bool = False) -> int:
    from core.db import upgrade_async

    await upgrade_async(settings.database_url)
    db = Database(settings.database_url)
    senders = build_senders(settings, db)
    log.info("worker started; channels: %s", ", ".join(sorted(senders)) or "none configured")
    try:
        await work(db, senders, once=once)
    finally:
        await db.dispose()
    return 0
