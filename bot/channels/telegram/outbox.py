"""The worker's Telegram sender: an outbox row -> the conversation's replies -> Bot API calls.

Telegram's refusals become the worker's verdicts: a chat that blocked the bot is final, a flood
wait is retried after what Telegram asked.
"""
from __future__ import annotations

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError, TelegramRetryAfter

from bot.channels.telegram.bot import make_bot
from bot.channels.telegram.send import TelegramSender
from bot.conversation.outbox_replies import payload_to_replies
from core.config import Settings
from core.db import Database
from core.services.outbox import Claimed, PermanentFailure, RetryLater


def telegram_sender(settings: Settings, db: Database, bot: Bot | None = None, billers=None):  # noqa: ANN001, ANN201
    """A worker Sender; `billers` renders invoice PDFs (default: this deployment's)."""
    from core.billers.registry import BillerRegistry

    sender = TelegramSender(bot or make_bot(settings))
    billers = billers or BillerRegistry.from_settings(settings, db)

    async def send(message: Claimed) -> str | None:
        replies = await payload_to_replies(message.payload, db, billers)
        try:
            sent = await sender.deliver(message.chat_id, replies)
        except TelegramForbiddenError as error:
            raise PermanentFailure(f"telegram refused the chat: {error.message}") from None
        except TelegramRetryAfter as error:
            raise RetryLater("telegram flood control", retry_after=float(error.retry_after)) from None
        except TelegramBadRequest as error:
            if "chat not found" in error.message.lower():
                raise PermanentFailure(error.message) from None
            raise
        return str(sent[0]) if sent else None

    return send
