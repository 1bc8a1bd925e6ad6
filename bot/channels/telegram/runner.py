"""Running the bot: long polling (`fatoura telegram polling`, or inside `fatoura demo`) and
pointing Telegram at our webhook (`fatoura telegram set-webhook`).

Only one process may poll a token, and polling can't run while a webhook is set: polling here
deletes the webhook first (with a warning). Production runs the webhook (`webhooks/telegram.py`)
on any number of web processes; `set-webhook` is a release step, run once, not at every start.
"""
from __future__ import annotations

import asyncio
import logging
import sys
from urllib.parse import urlsplit

from aiogram import Bot
from aiogram.client.session.base import BaseSession
from aiogram.exceptions import TelegramAPIError

from bot.channels.telegram.bot import Handles, TelegramChannel, TelegramNotConfigured, make_bot
from bot.channels.telegram.limits import ALLOWED_UPDATES, SECRET_TOKEN_RE
from core.config import Settings

log = logging.getLogger("fatoura.telegram")

WEBHOOK_PATH = "/webhooks/telegram"
POLLING_TIMEOUT = 30  # seconds one getUpdates call waits for news


def webhook_url(settings: Settings) -> str:
    return settings.public_base_url.rstrip("/") + WEBHOOK_PATH


def webhook_secret(settings: Settings) -> str:
    """TELEGRAM_WEBHOOK_SECRET, checked against Telegram's rule for secret_token."""
    secret = settings.telegram_webhook_secret.get_secret_value() if settings.telegram_webhook_secret else ""
    if not secret:
        raise TelegramNotConfigured("TELEGRAM_WEBHOOK_SECRET is not set: choose a random string "
                                    "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
    if not SECRET_TOKEN_RE.fullmatch(secret):
        raise TelegramNotConfigured("TELEGRAM_WEBHOOK_SECRET may hold only A-Z, a-z, 0-9, _ and -, "
                                    "1 to 256 characters (Telegram's rule)")
    return secret


async def _prepare_polling(bot: Bot) -> None:
    """Check the token (getMe) and drop a webhook, which would make getUpdates fail."""
    me = await bot.me()
    info = await bot.get_webhook_info()
    if info.url:
        log.warning("bot @%s had a webhook (%s); deleting it to poll instead", me.username, info.url)
        await bot.delete_webhook(drop_pending_updates=False)
    log.info("polling as @%s", me.username)


async def _poll(channel: TelegramChannel, *, handle_signals: bool) -> None:
    """Poll until stopped by a signal, or until this task is cancelled: aiogram's start_polling
    left alone on cancellation would keep its getUpdates loop running, so it is shielded and
    stopped through stop_polling instead."""
    polling = asyncio.get_running_loop().create_task(channel.dispatcher.start_polling(
        channel.bot, handle_as_tasks=True, handle_signals=handle_signals, close_bot_session=False,
        allowed_updates=ALLOWED_UPDATES, polling_timeout=POLLING_TIMEOUT))
    try:
        await asyncio.shield(polling)
    except asyncio.CancelledError:
        try:
            await channel.dispatcher.stop_polling()
        except RuntimeError:  # not started yet
            polling.cancel()
        await asyncio.wait({polling})
        if not polling.cancelled() and polling.exception() is not None:
            log.warning("polling ended with %r", polling.exception())
        raise
    finally:
        await channel.close()


async def start_polling_task(settings: Settings, conversation: Handles, *,
                             session: BaseSession | None = None) -> asyncio.Task[None]:
    """Start long polling in the current event loop (e.g. beside the web app in `fatoura demo`)
    and return its task. Raises TelegramNotConfigured / TelegramAPIError at once when the token
    is missing or refused. Cancel the task to stop: in-flight updates get a few seconds to finish,
    then the HTTP session closes."""
    channel = TelegramChannel(make_bot(settings, session=session), conversation)
    try:
        await _prepare_polling(channel.bot)
    except BaseException:
        await channel.bot.session.close()
        raise
    return asyncio.get_running_loop().create_task(_poll(channel, handle_signals=False), name="telegram-polling")


async def run_polling(settings: Settings) -> int:
    """`fatoura telegram polling`: the conversation on this deployment's database, shared state
    and billers, fed by long polling until SIGINT/SIGTERM."""
    try:
        from bot.conversation.engine import build_conversation
    except ImportError as error:  # the engine is being written alongside this channel
        print(f"the conversation engine is not available: {error}", file=sys.stderr)
        return 2
    from core.db import Database, upgrade_async
    from core.i18n import compile_catalogs

    try:
        bot = make_bot(settings)
    except TelegramNotConfigured as error:
        print(error, file=sys.stderr)
        return 2
    compile_catalogs()
    await upgrade_async(settings.database_url)
    db = Database(settings.database_url)
    conversation = build_conversation(settings, db=db)
    channel = TelegramChannel(bot, conversation)
    try:
        await _prepare_polling(bot)
        await _poll(channel, handle_signals=True)
    except TelegramAPIError as error:
        print(f"Telegram refused: {error.message}", file=sys.stderr)
        return 1
    finally:
        await channel.close()  # a second close is harmless; covers a failure before polling
        await conversation.store.close()
        await db.dispose()
    return 0


async def set_webhook(settings: Settings, drop_pending: bool = False, *,
                      session: BaseSession | None = None) -> int:
    """`fatoura telegram set-webhook`: point Telegram at {PUBLIC_BASE_URL}/webhooks/telegram with
    TELEGRAM_WEBHOOK_SECRET as secret_token. Returns a process exit code."""
    try:
        secret = webhook_secret(settings)
        url = webhook_url(settings)
        parts = urlsplit(url)
        if parts.scheme != "https" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise TelegramNotConfigured(f"PUBLIC_BASE_URL must be an https URL Telegram can reach (it is {url!r})")
        bot = make_bot(settings, session=session)
    except TelegramNotConfigured as error:
        print(error, file=sys.stderr)
        return 2
    try:
        await bot.set_webhook(url, secret_token=secret, allowed_updates=ALLOWED_UPDATES,
                              drop_pending_updates=drop_pending)
        info = await bot.get_webhook_info()
    except TelegramAPIError as error:
        print(f"Telegram refused the webhook {url}: {error.message}", file=sys.stderr)
        return 1
    finally:
        await bot.session.close()
    print(f"webhook set: {info.url} ({info.pending_update_count} updates pending)")
    return 0
