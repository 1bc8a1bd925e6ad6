"""The aiogram Bot and Dispatcher wired to the conversation: what polling and the webhook both run.

One router with two handlers (messages, button presses). Each converts the update to an Event,
hands it to `conversation.handle` and renders the replies. Dedupe of re-sent updates and the
one-at-a-time handling of a chat are the conversation's job (it keys them by update id and chat);
this side only makes sure updates of different chats run concurrently.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from aiogram import Bot, Dispatcher, Router
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.base import BaseSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramAPIError
from aiogram.types import CallbackQuery, Message, Update

from bot.channels.telegram.receive import event_from_callback, event_from_message
from bot.channels.telegram.send import TelegramSender
from bot.conversation.events import Event
from bot.conversation.replies import Reply
from core.config import Settings

log = logging.getLogger("fatoura.telegram")

SHUTDOWN_GRACE = 10.0  # seconds given to in-flight updates when the bot stops


class Handles(Protocol):
    """What the channel needs from the dialogue (bot.conversation.engine.Conversation)."""

    async def handle(self, event: Event) -> list[Reply]: ...


class TelegramNotConfigured(RuntimeError):
    """A setting the Telegram bot needs is missing; the message names it."""


def make_bot(settings: Settings, *, session: BaseSession | None = None) -> Bot:
    """The Bot for TELEGRAM_BOT_TOKEN, talking to TELEGRAM_API_BASE (Telegram, a self-hosted Bot
    API server, or a test server). Plain text, no link previews."""
    if settings.telegram_bot_token is None or not settings.telegram_bot_token.get_secret_value():
        raise TelegramNotConfigured("TELEGRAM_BOT_TOKEN is not set: create a bot with @BotFather and set its token")
    session = session or AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_base))
    return Bot(settings.telegram_bot_token.get_secret_value(), session=session,
               default=DefaultBotProperties(link_preview_is_disabled=True))


class TelegramChannel:
    """A Bot, its Dispatcher and the conversation. `feed` runs one webhook update in the
    background; polling runs through `dispatcher` (see runner.py); `close` waits for in-flight
    updates, then closes the HTTP session."""

    def __init__(self, bot: Bot, conversation: Handles, *, sender: TelegramSender | None = None) -> None:
        self.bot = bot
        self.conversation = conversation
        self.sender = sender or TelegramSender(bot)
        from bot.channels.telegram.support import SupportTopics

        # The agents' supergroup (SUPPORT_CHAT_ID), when the deployment has one.
        self.support = SupportTopics.for_conversation(bot, conversation)
        self.dispatcher = Dispatcher(disable_fsm=True)  # state lives in the conversation's store
        self.dispatcher.include_router(self._router())
        self._tasks: set[asyncio.Task[Any]] = set()

    def _router(self) -> Router:
        # Built per channel: an aiogram Router attaches to one dispatcher only.
        router = Router(name="fatoura")

        @router.message()
        async def on_message(message: Message, event_update: Update) -> None:
            if self.support is not None and self.support.owns(message):
                await self.support.on_message(message)
                return
            event = event_from_message(message, event_update.update_id)
            if event is not None:
                await self.process(event)

        @router.callback_query()
        async def on_press(query: CallbackQuery, event_update: Update) -> None:
            # Answer first: the client stops its spinner and won't re-send the press.
            await self.answer(query)
            event = event_from_callback(query, event_update.update_id)
            if event is not None:
                await self.process(event)

        return router

    async def answer(self, query: CallbackQuery) -> None:
        try:
            await self.bot.answer_callback_query(query.id)
        except TelegramAPIError as error:  # too old, or already answered: the press still counts
            log.info("callback query not answered: %s", error.message)

    async def process(self, event: Event) -> list[int]:
        async def early(replies: list) -> None:
            await self.sender.render(event.chat_id, replies, event)

        replies = await self.conversation.handle(event, early)
        return await self.sender.render(event.chat_id, replies, event)

    def feed(self, update: Update) -> asyncio.Task[Any]:
        """Handle one update in the background (the webhook answers Telegram at once)."""
        task = asyncio.get_running_loop().create_task(self._feed(update), name=f"telegram-update-{update.update_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _feed(self, update: Update) -> None:
        try:
            await self.dispatcher.feed_update(self.bot, update)
        except Exception:  # noqa: BLE001 - a background task has no caller to raise to
            log.exception("telegram update %s failed", update.update_id)

    async def wait_idle(self, timeout: float = SHUTDOWN_GRACE) -> None:
        """Wait for the updates being handled (webhook tasks and polled ones)."""
        # aiogram keeps polled updates' tasks here and does not wait for them when polling stops
        tasks = self._tasks | set(getattr(self.dispatcher, "_handle_update_tasks", ()))
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("%d telegram updates cancelled at shutdown", len(pending))
                await asyncio.wait(pending, timeout=1.0)

    async def close(self, timeout: float = SHUTDOWN_GRACE) -> None:
        await self.wait_idle(timeout)
        await self.bot.session.close()
