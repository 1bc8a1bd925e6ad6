"""Support agents in a Telegram supergroup with topics (SUPPORT_CHAT_ID): one forum topic per handoff.

Outbound (the worker's "support" sender): the desk queues "topic_open" (createForumTopic, then the
reason), "topic_message" (what the customer wrote, and the console's replies), "topic_close" and
"topic_delete" (the customer's /forget) on channel "support"; see core.services.handoff.

Inbound (`SupportTopics.on_message`, called by the channel's router for the support chat): what
an agent writes in a ticket's topic goes to the customer, `/close` closes the conversation. Only
members registered as agents (`fatoura agents add --telegram-id`) are relayed; the bot must be an
admin of the group with the "manage topics" right (and so sees every message).
"""
from __future__ import annotations

import logging
import re
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest, TelegramForbiddenError, TelegramRetryAfter
from aiogram.types import Message
from sqlalchemy import select

from core.config import Settings
from core.db import Database
from core.errors import N_, FatouraError
from core.i18n import translator
from core.models import HandoffTicket
from core.services.agents import agent_by_telegram_id
from core.services.handoff import PENDING, Desk
from core.services.outbox import Claimed, PermanentFailure, RetryLater

log = logging.getLogger("fatoura.telegram.support")

CLOSE_RE = re.compile(r"/close(?:@\w+)?\s*", re.IGNORECASE)
NOT_AN_AGENT = N_("Only Fatoura agents can answer here. An administrator can add you with: "
                  "fatoura agents add USERNAME --telegram-id {id}")
TEXT_ONLY = N_("Only text messages reach the customer.")
_GONE = ("message thread not found", "topic_deleted", "topic_id_invalid", "topic_closed", "chat not found")


async def _thread_of(db: Database, ticket_id: int) -> tuple[bool, str | None]:
    """(the ticket exists, its topic's thread id)."""
    async with db.session() as session:
        row = (await session.execute(select(HandoffTicket.id, HandoffTicket.support_thread_id)
                                     .where(HandoffTicket.id == ticket_id))).first()
    return (row is not None, row[1] if row else None)


def support_sender(settings: Settings, db: Database, bot: Bot | None = None):  # noqa: ANN201 - a worker Sender
    from bot.channels.telegram.bot import make_bot

    bot = bot or make_bot(settings)
    chat_id = int(settings.support_chat_id or 0)
    desk = Desk(db, topics=True)

    async def send(message: Claimed) -> str | None:
        payload = message.payload
        ticket_id = int(payload.get("ticket_id") or 0)
        try:
            if message.kind == "topic_delete":
                await bot.delete_forum_topic(chat_id, int(payload["thread_id"]))
                return None
            exists, thread = await _thread_of(db, ticket_id)
            if not exists:
                raise PermanentFailure(f"ticket {ticket_id} is gone")
            if message.kind == "topic_open":
                if thread is None:  # a retried open after the topic was made keeps that topic
                    topic = await bot.create_forum_topic(chat_id, str(payload.get("title") or f"#{ticket_id}")[:128])
                    thread = str(topic.message_thread_id)
                    await desk.set_thread(ticket_id, topic.message_thread_id)
            elif thread is None:
                raise RetryLater("the topic is not open yet", retry_after=2)
            if message.kind == "topic_close":
                await bot.close_forum_topic(chat_id, int(thread))
                return None
            sent = await bot.send_message(chat_id, str(payload.get("text") or "—")[:4096],
                                          message_thread_id=int(thread))
            return str(sent.message_id)
        except TelegramRetryAfter as error:
            raise RetryLater("telegram flood control", retry_after=float(error.retry_after)) from None
        except TelegramForbiddenError as error:
            raise PermanentFailure(f"telegram refused the support group: {error.message}") from None
        except TelegramBadRequest as error:
            if any(marker in error.message.lower() for marker in _GONE):
                raise PermanentFailure(error.message) from None
            raise

    return send


class SupportTopics:
    """Agents' messages in the support group's topics -> the desk."""

    def __init__(self, bot: Bot, desk: Desk, chat_id: int) -> None:
        self.bot, self.desk, self.chat_id = bot, desk, chat_id

    @classmethod
    def for_conversation(cls, bot: Bot, conversation: Any) -> "SupportTopics | None":
        settings, desk = getattr(conversation, "settings", None), getattr(conversation, "desk", None)
        chat_id = getattr(settings, "support_chat_id", None)
        return cls(bot, desk, int(chat_id)) if chat_id and desk is not None else None

    def owns(self, message: Message) -> bool:
        return message.chat.id == self.chat_id

    async def on_message(self, message: Message) -> None:
        sender = message.from_user
        thread = message.message_thread_id if message.is_topic_message else None
        if thread is None or sender is None or sender.is_bot:
            return  # the group's general chat, or the bot's own messages
        ticket = await self.desk.ticket_of_thread(thread)
        if ticket is None:
            return
        t = translator(None)
        agent = await agent_by_telegram_id(self.desk.db, sender.id)
        if agent is None:
            return await self._say(thread, t._(NOT_AN_AGENT, id=sender.id))
        if message.text is None:
            return await self._say(thread, t._(TEXT_ONLY))
        try:
            if ticket.status == PENDING:  # writing in a waiting ticket's topic takes it
                await self.desk.claim(ticket.id, agent)
            if CLOSE_RE.fullmatch(message.text.strip()):
                await self.desk.close(ticket.id, agent)
            else:
                await self.desk.reply(ticket.id, agent, message.text, from_topic=True)
        except FatouraError as error:
            await self._say(thread, t.error(error))

    async def _say(self, thread: int, text: str) -> None:
        try:
            await self.bot.send_message(self.chat_id, text, message_thread_id=thread)
        except TelegramAPIError as error:
            log.info("support topic %s: %s", thread, error.message)
