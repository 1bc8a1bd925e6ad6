"""The worker's Telegram sender: an outbox row -> the conversation's replies -> Bot API calls.

Telegram's refusals become the worker's verdicts: a chat that blocked the bot is final (and the
chat is marked blocked), a flood wait is retried after what Telegram asked. The sender tries each
call once: waiting and retrying is the worker's job, under the limits shared by every worker
(`telegram_rates`: the bot's messages per second, then the chat's).
"""
from __future__ import annotations

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError, TelegramRetryAfter

from bot.channels.telegram.bot import make_bot
from bot.channels.telegram.send import TelegramSender
from bot.conversation.outbox_replies import payload_to_replies
from core.config import Settings
from core.db import Database
from core.ratelimit import Rate
from core.services.outbox import ChatUnreachable, Claimed, PermanentFailure, RetryLater


def telegram_sender(settings: Settings, db: Database, bot: Bot | None = None, billers=None):  # noqa: ANN001, ANN201
    """A worker Sender; `billers` renders invoice PDFs (default: this deployment's)."""
    from core.billers.registry import BillerRegistry

    sender = TelegramSender(bot or make_bot(settings), attempts=1)
    billers = billers or BillerRegistry.from_settings(settings, db)

    async def send(message: Claimed) -> str | None:
        replies = await payload_to_replies(message.payload, db, billers)
        try:
            sent = await sender.deliver(message.chat_id, replies)
        except TelegramForbiddenError as error:
            raise ChatUnreachable(f"telegram refused the chat: {error.message}") from None
        except TelegramRetryAfter as error:
            raise RetryLater("telegram flood control", retry_after=float(error.retry_after)) from None
        except TelegramBadRequest as error:
            if "chat not found" in error.message.lower():
                raise ChatUnreachable(error.message) from None
            raise PermanentFailure(f"telegram refused the message: {error.message}") from None
        return str(sent[0]) if sent else None

    return send


# Sends are spaced exactly; Telegram (and the fake server) count them in a sliding window as they
# arrive. Aiming this much under the ceiling absorbs ~20 ms of network or scheduling jitter, which
# would otherwise let one window see one send too many.
HEADROOM = 0.98


def telegram_rates(settings: Settings):  # noqa: ANN201 - a worker RatesOf
    """Telegram's limits for one message: the bot's rate, then its chat's (a group chat, whose id
    is negative, has a per-minute budget)."""
    bot = Rate.per_second("telegram:bot", settings.telegram_rate_per_second * HEADROOM)

    def rates(message: Claimed) -> list[Rate]:
        chat = str(message.chat_id)
        if chat.startswith("-"):
            return [bot, Rate.per_minute(f"telegram:chat:{chat}", settings.telegram_group_per_minute * HEADROOM)]
        return [bot, Rate.per_second(f"telegram:chat:{chat}", settings.telegram_chat_rate_per_second * HEADROOM)]

    return rates
