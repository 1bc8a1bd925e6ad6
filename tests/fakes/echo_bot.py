"""A bare aiogram 3 echo bot pointed at any Bot API base URL (a baseline for benchmarks), and a
helper that runs any dispatcher's long polling in the background and stops it cleanly."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import CallbackQuery, Message

ECHO_TOKEN = "123456:TEST-token"


class LocalAiohttpSession(AiohttpSession):
    """aiogram's own session; only `close` skips the 250 ms wait meant for SSL connections,
    which a plain-HTTP server on 127.0.0.1 does not have."""

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()


def make_bot(base_url: str, token: str = ECHO_TOKEN) -> Bot:
    """A real aiogram Bot whose HTTP calls go to `base_url` (e.g. FakeBotAPI.base_url)."""
    return Bot(token, session=LocalAiohttpSession(api=TelegramAPIServer.from_base(base_url)))


def echo_router() -> Router:
    router = Router(name="echo")

    @router.message(F.text)
    async def echo(message: Message) -> None:
        await message.answer(message.text or "")

    @router.callback_query()
    async def pressed(query: CallbackQuery) -> None:
        await query.answer(f"pressed {query.data}")

    return router


def build_echo_bot(base_url: str, token: str = ECHO_TOKEN) -> tuple[Bot, Dispatcher]:
    """Echo every text message back; answer every callback query."""
    dp = Dispatcher()
    dp.include_router(echo_router())
    return make_bot(base_url, token), dp


async def _drain(dp: Dispatcher, timeout: float) -> None:
    # aiogram keeps the handler tasks of polled updates here and does not wait for them on stop
    tasks = set(getattr(dp, "_handle_update_tasks", ()))
    if tasks:
        await asyncio.wait(tasks, timeout=timeout)


@asynccontextmanager
async def polling(dp: Dispatcher, bot: Bot, *, drain_timeout: float = 5.0,
                  **kwargs: Any) -> AsyncIterator[Bot]:
    """Run `dp.start_polling(bot)` in a background task for the duration of the block.

    On exit: wait for in-flight handlers, stop polling, close the bot session, so no task or
    session is left pending."""
    started = asyncio.Event()

    async def on_startup() -> None:
        started.set()

    dp.startup.register(on_startup)
    kwargs.setdefault("polling_timeout", 10)
    task = asyncio.create_task(dp.start_polling(bot, handle_signals=False, **kwargs))
    try:
        waiter = asyncio.create_task(started.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task.done():
            task.result()  # re-raise a startup failure
        yield bot
    finally:
        dp.startup.handlers[:] = [h for h in dp.startup.handlers if h.callback is not on_startup]
        await _drain(dp, drain_timeout)
        if not task.done():
            with suppress(RuntimeError):  # polling already stopped
                await dp.stop_polling()
        with suppress(asyncio.CancelledError):
            await task
        await _drain(dp, drain_timeout)
        await bot.session.close()


@asynccontextmanager
async def running_echo_bot(base_url: str, token: str = ECHO_TOKEN) -> AsyncIterator[Bot]:
    bot, dp = build_echo_bot(base_url, token)
    async with polling(dp, bot) as running:
        yield running
