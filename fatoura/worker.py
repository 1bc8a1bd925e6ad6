"""`fatoura worker`: the delivery engine. Any number of workers share one database and one Redis.

Each worker keeps up to WORKER_CONCURRENCY sends in flight: it claims due outbox rows (SKIP
LOCKED on PostgreSQL, so two workers never hold the same row), books a slot on the channel's
shared rate limits (core.ratelimit), sends, and marks the row delivered right after the
platform's answer. A refused message is retried with backoff or ends dead with its reason; a
chat that blocked the bot is marked so. Beside delivery it runs the periodic jobs: expired
checkouts, and the push sync of linked accounts (new invoices and reminders), elected so that
one worker runs each round.
"""
from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import datetime, timedelta

from core.config import Settings
from core.db import Database
from core.models import utcnow
from core.ratelimit import Limiter, Rate, wait_for_slot
from core.services import outbox
from core.services.outbox import ChatUnreachable, PermanentFailure, RetryLater

__all__ = ["PermanentFailure", "RetryLater", "Sender", "Delivery", "deliver_due", "work", "run_worker"]

log = logging.getLogger("fatoura.worker")

# A sender delivers one claimed message and returns the platform's message id.
Sender = Callable[[outbox.Claimed], Awaitable[str | None]]
# The rate limits one message is sent under (the bot's first, then the chat's).
RatesOf = Callable[[outbox.Claimed], Sequence[Rate]]
# A last look before sending a claimed batch: message id -> why to skip it (absent: send it).
Check = Callable[[Sequence[outbox.Claimed]], Awaitable[dict[int, str]]]
# Not now: when a message must wait (a reminder at night), else None.
Hold = Callable[[outbox.Claimed], "datetime | None"]

MAX_SLOT_WAIT = 1.0  # seconds a claimed message may wait for its rate slot before it is put back


class _DeliveredMarks:
    """Group commit of "delivered" marks: a mark is written at once when none is being written,
    else with the others that arrived meanwhile, in the next statement. No timer, so a quiet
    worker marks each message alone, and a busy one writes a statement per round trip, not per
    message. `mark` returns once the row is marked."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._pending: list[tuple[int, str | None, asyncio.Future]] = []
        self._writer: asyncio.Task | None = None

    async def mark(self, message_id: int, provider_id: str | None) -> None:
        done = asyncio.get_running_loop().create_future()
        self._pending.append((message_id, provider_id, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        await done

    async def _write(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await outbox.mark_delivered_many(self.db, [(m, p) for m, p, _ in batch])
            except Exception as error:  # noqa: BLE001 - each sender sees the failure of its own mark
                for *_, done in batch:
                    if not done.done():  # its sender may have been cancelled meanwhile
                        done.set_exception(error)
            else:
                for *_, done in batch:
                    if not done.done():
                        done.set_result(None)


class Delivery:
    """Delivers claimed outbox rows through `senders` (channel -> Sender)."""

    def __init__(self, db: Database, senders: dict[str, Sender], *, worker: str | None = None,
                 limiter: Limiter | None = None, rates: dict[str, RatesOf] | None = None,
                 check: Check | None = None, hold: Hold | None = None, concurrency: int = 16,
                 claim_timeout: timedelta = outbox.CLAIM_TIMEOUT, max_attempts: int = outbox.MAX_ATTEMPTS,
                 chats: Callable[[], Collection[str]] | None = None) -> None:
        self.db = db
        self.chats = chats  # only these chats' messages (the web chat's pages open in this process)
        self.senders = senders
        self.worker = worker or outbox.worker_id()
        self.limiter = limiter
        self.rates = rates or {}
        self.check = check
        self.hold = hold
        self.concurrency = max(1, concurrency)
        self.claim_timeout = claim_timeout
        self.max_attempts = max_attempts
        self._marks = _DeliveredMarks(db)

    @classmethod
    def from_settings(cls, settings: Settings, db: Database, senders: dict[str, Sender], *,
                      limiter: Limiter | None = None, rates: dict[str, RatesOf] | None = None,
                      check: Check | None = None, hold: Hold | None = None) -> "Delivery":
        return cls(db, senders, limiter=limiter, rates=rates, check=check, hold=hold,
                   concurrency=settings.worker_concurrency,
                   claim_timeout=timedelta(seconds=settings.outbox_claim_timeout),
                   max_attempts=settings.outbox_max_attempts)

    async def claim(self, limit: int) -> list[outbox.Claimed]:
        return await outbox.claim_due(self.db, self.worker, limit, channels=sorted(self.senders),
                                      claim_timeout=self.claim_timeout,
                                      chat_ids=self.chats() if self.chats is not None else None)

    async def claim_checked(self, limit: int) -> list[tuple[outbox.Claimed, str | None]]:
        """Claim, then take the last look at the batch: (message, reason to skip it or None)."""
        claimed = await self.claim(limit)
        reasons = await self.check(claimed) if self.check is not None and claimed else {}
        return [(message, reasons.get(message.id)) for message in claimed]

    async def handle(self, message: outbox.Claimed, skip: str | None = None) -> str:
        """Send one claimed message and record the verdict; returns the new status."""
        sender = self.senders.get(message.channel)
        if sender is None:
            await outbox.mark_failed(self.db, message.id, f"no sender for channel {message.channel}",
                                     max_attempts=self.max_attempts)
            return outbox.QUEUED
        if skip:
            await outbox.mark_skipped(self.db, message.id, skip)
            return outbox.SKIPPED
        until = self.hold(message) if self.hold is not None else None
        if until is not None:
            await outbox.defer(self.db, message.id, until)
            return outbox.QUEUED
        rates = self.rates.get(message.channel)
        if self.limiter is not None and rates is not None:
            limits = rates(message)
            booking = await wait_for_slot(self.limiter, limits, _cost(message), MAX_SLOT_WAIT)
            if not booking.booked:
                await outbox.defer(self.db, message.id, utcnow() + timedelta(seconds=booking.wait))
                return outbox.QUEUED
        try:
            provider_id = await sender(message)
        except ChatUnreachable as error:
            await outbox.mark_unreachable(self.db, message.id, message.channel, message.chat_id, str(error))
            return outbox.DEAD
        except PermanentFailure as error:
            await outbox.mark_failed(self.db, message.id, str(error), permanent=True)
            return outbox.DEAD
        except RetryLater as error:
            if self.limiter is not None and rates is not None and error.retry_after:
                for rate in limits[1:]:  # the chat waits what the platform asked; other chats go on
                    await self.limiter.hold(rate, error.retry_after)
            await outbox.mark_failed(self.db, message.id, str(error), retry_after=error.retry_after,
                                     max_attempts=self.max_attempts)
            return outbox.QUEUED
        except Exception as error:  # noqa: BLE001 - any other failure (5xx, network) is retried with backoff
            log.warning("outbox message %s failed: %s", message.id, type(error).__name__)
            await outbox.mark_failed(self.db, message.id, f"{type(error).__name__}: {error}",
                                     max_attempts=self.max_attempts)
            return outbox.QUEUED
        await self._marks.mark(message.id, provider_id)
        return outbox.DELIVERED

    async def round(self, limit: int = 20) -> int:
        """Claim what is due now and deliver it one by one; returns how many were handled."""
        claimed = await self.claim_checked(limit)
        for message, skip in claimed:
            await self.handle(message, skip)
        return len(claimed)

    async def run(self, stop: asyncio.Event, idle_seconds: float = 0.5, once: bool = False) -> None:
        """Keep up to `concurrency` sends in flight until `stop` is set; then finish those in flight."""
        inflight: set[asyncio.Task] = set()
        refill = max(1, self.concurrency // 2)  # claim in batches, not one row per finished send
        listener = await outbox.Listener().start(self.db)
        try:
            while not stop.is_set():
                free = self.concurrency - len(inflight)
                claimed: list[tuple[outbox.Claimed, str | None]] = []
                if free >= refill or not inflight:
                    listener.event.clear()  # a wake-up from now on interrupts the idle wait below
                    try:
                        claimed = await self.claim_checked(free)
                    except Exception:  # noqa: BLE001 - the database may be briefly away: wait and go on
                        log.exception("claiming outbox messages failed")
                    for message, skip in claimed:
                        inflight.add(asyncio.create_task(self._guarded(message, skip)))
                if once and not claimed and not inflight:
                    return
                if claimed and len(inflight) < self.concurrency:
                    continue
                # Busy: wait for a send to finish. Idle: for a wake-up, or the next look at the outbox.
                waiters = {*inflight, asyncio.ensure_future(stop.wait())}
                if not inflight:
                    waiters.add(asyncio.ensure_future(listener.event.wait()))
                done, _ = await asyncio.wait(waiters, timeout=None if inflight else idle_seconds,
                                             return_when=asyncio.FIRST_COMPLETED)
                for task in waiters - inflight:
                    task.cancel()
                inflight -= done
        finally:
            if inflight:
                await asyncio.gather(*inflight, return_exceptions=True)
            await listener.close()

    async def _guarded(self, message: outbox.Claimed, skip: str | None) -> None:
        try:
            await self.handle(message, skip)
        except Exception:  # noqa: BLE001 - the row stays claimed and is taken back after the claim timeout
            log.exception("delivering outbox message %s failed", message.id)


def _cost(message: outbox.Claimed) -> int:
    """Platform calls one message takes: its text, plus its document."""
    return 1 + (1 if message.payload.get("document") else 0)


async def deliver_due(db: Database, senders: dict[str, Sender], worker: str, limit: int = 20) -> int:
    """Deliver what is due now, one by one, without rate limits; returns how many were handled."""
    return await Delivery(db, senders, worker=worker).round(limit)


EXPIRE_EVERY = 60.0  # seconds between sweeps of expired checkouts


async def _every(seconds: float, job: Callable[[], Awaitable[object]], name: str, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await job()
        except Exception:  # noqa: BLE001 - a failed round is retried at the next one
            log.exception("%s failed", name)
        try:
            await asyncio.wait_for(stop.wait(), seconds)
        except asyncio.TimeoutError:
            pass


async def work(db: Database, senders: dict[str, Sender], *, once: bool = False, idle_seconds: float = 0.5,
               stop: asyncio.Event | None = None, delivery: Delivery | None = None,
               jobs: Sequence[tuple[float, Callable[[], Awaitable[object]], str]] = ()) -> None:
    """Deliver the outbox and run the periodic jobs (expired checkouts, push sync), until `stop` is set."""
    from core.services.checkout import expire_due

    stop = stop or asyncio.Event()
    delivery = delivery or Delivery(db, senders)
    if once:
        await expire_due(db)
        for _, job, _name in jobs:
            await job()
        await delivery.run(stop, idle_seconds, once=True)
        return
    periodic = [asyncio.create_task(_every(EXPIRE_EVERY, lambda: expire_due(db), "expiring checkouts", stop))]
    periodic += [asyncio.create_task(_every(seconds, job, name, stop)) for seconds, job, name in jobs]
    try:
        await delivery.run(stop, idle_seconds)
    finally:
        stop.set()
        await asyncio.gather(*periodic, return_exceptions=True)


def build_senders(settings: Settings, db: Database, billers=None) -> dict[str, Sender]:  # noqa: ANN001
    """The senders this process can run: billers' paid notices always, Telegram and WhatsApp when configured.
    (The web chat's messages are delivered by the web process that holds the pages: webhooks.app.)"""
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


def build_rates(settings: Settings) -> dict[str, RatesOf]:
    """The platforms' rate limits, per channel, for the shared limiter."""
    rates: dict[str, RatesOf] = {}
    if settings.telegram_bot_token:
        from bot.channels.telegram.outbox import telegram_rates

        rates["telegram"] = telegram_rates(settings)
    return rates


def build_delivery(settings: Settings, db: Database, senders: dict[str, Sender], state, billers) -> Delivery:  # noqa: ANN001
    """The delivery engine with the shared limiter and the push's last look before a send."""
    from core.ratelimit import make_limiter
    from core.services.notifications import QuietHours, quiet_hold, unwanted

    async def check(messages: Sequence[outbox.Claimed]) -> dict[int, str]:
        return await unwanted(db, billers, messages)

    return Delivery.from_settings(settings, db, senders, limiter=make_limiter(state), rates=build_rates(settings),
                                  check=check, hold=quiet_hold(QuietHours.parse(settings.quiet_hours)))


def push_jobs(settings: Settings, db: Database, state, billers):  # noqa: ANN001, ANN201
    """The push sync as a periodic job, when PUSH_SYNC_MINUTES is not 0."""
    from core.services.notifications import sync_round

    if settings.push_sync_minutes <= 0:
        return []
    seconds = settings.push_sync_minutes * 60
    return [(min(seconds, 60.0), lambda: sync_round(settings, db, state, billers), "push sync")]


async def run_worker(settings: Settings, once: bool = False) -> int:
    from core.billers.registry import BillerRegistry
    from core.db import upgrade_async
    from core.state import make_state

    await upgrade_async(settings.database_url)
    db = Database(settings.database_url)
    state = make_state(settings.redis_url)
    billers = BillerRegistry.from_settings(settings, db)
    senders = build_senders(settings, db, billers)
    delivery = build_delivery(settings, db, senders, state, billers)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info("worker %s started; channels: %s", delivery.worker, ", ".join(sorted(senders)) or "none configured")
    try:
        await work(db, senders, once=once, idle_seconds=settings.outbox_poll_seconds, stop=stop, delivery=delivery,
                   jobs=push_jobs(settings, db, state, billers))
    finally:
        await billers.close()
        await state.close()
        await db.dispose()
    return 0
