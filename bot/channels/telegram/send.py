"""Conversation Replies -> Bot API calls, with the real aiogram Bot.

Plain text only (no parse_mode): the conversation's words, amounts and invoice numbers hold
characters that HTML or MarkdownV2 would have to escape, and an unescaped one makes Telegram refuse
the whole message.

How a Reply degrades to fit Telegram:
- a text over 4096 characters goes as several messages, the buttons under the last one;
- data buttons become inline callback buttons, url buttons inline link buttons; a url Telegram
  refuses (e.g. a 127.0.0.1 demo link) is written into the text instead of dropping the message;
- a "share my number" button (request_contact) becomes a one-time reply keyboard. A message can
  carry only one keyboard, so when the same Text also has inline buttons the reply keyboard
  follows in a second, short message holding the button's label; the next plain message (no
  buttons) after a contact was shared removes the reply keyboard;
- `replace` on a Text answering a button press edits the message that carried the button; a
  message Telegram can't edit (too old, deleted, a document) gets a new message instead;
- a caption over 1024 characters: the rest follows as text messages.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import (
    BufferedInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
)

from bot.channels.telegram.limits import (
    CAPTION_LIMIT,
    MAX_RETRY_AFTER,
    SEND_ATTEMPTS,
    TEXT_LIMIT,
    fit_label,
    fit_rows,
    text_parts,
)
from bot.conversation.events import Event, EventKind
from bot.conversation.replies import Button, DeleteMessage, Document, Image, Reply, Text

RLM = "\u200f"
log = logging.getLogger("fatoura.telegram")

Markup = InlineKeyboardMarkup | ReplyKeyboardMarkup | ReplyKeyboardRemove | None
R = TypeVar("R")

# Telegram's answers to an edit that should become a new message instead.
_CANT_EDIT = ("message can't be edited", "message to edit not found", "there is no text in the message",
              "message_id_invalid", "message not found")
_NOT_MODIFIED = "message is not modified"
_BAD_URL = ("url", "button_type_invalid")


def inline_markup(buttons: Sequence[Sequence[Button]]) -> InlineKeyboardMarkup | None:
    rows = fit_rows([[_inline_button(b) for b in row if not b.request_contact] for row in buttons])
    return InlineKeyboardMarkup(inline_keyboard=rows) if rows else None


def _inline_button(button: Button) -> InlineKeyboardButton:
    if button.url is not None:
        return InlineKeyboardButton(text=fit_label(button.label), url=button.url)
    return InlineKeyboardButton(text=fit_label(button.label), callback_data=button.data)


def contact_markup(buttons: Sequence[Sequence[Button]]) -> ReplyKeyboardMarkup | None:
    contact = [b for row in buttons for b in row if b.request_contact]
    if not contact:
        return None
    return ReplyKeyboardMarkup(keyboard=[[KeyboardButton(text=fit_label(contact[0].label), request_contact=True)]],
                               resize_keyboard=True, one_time_keyboard=True)


def _without_url_buttons(text: str, markup: InlineKeyboardMarkup) -> tuple[str, InlineKeyboardMarkup | None]:
    """The links written into the text, the other buttons kept."""
    links = [f"{b.text}: {b.url}" for row in markup.inline_keyboard for b in row if b.url]
    rows = [[b for b in row if not b.url] for row in markup.inline_keyboard]
    rows = [row for row in rows if row]
    text = "\n\n".join([text, *links])
    if len(text) > TEXT_LIMIT:
        text = text[-TEXT_LIMIT:]  # the links matter more than the start of a long text
    return text, InlineKeyboardMarkup(inline_keyboard=rows) if rows else None


def _has_url(markup: Markup) -> bool:
    return isinstance(markup, InlineKeyboardMarkup) and any(b.url for row in markup.inline_keyboard for b in row)


@dataclass
class _Turn:
    """One render: the chat, the event answered, whether a reply keyboard is waiting to go, and
    whether the pressed button's message was replaced already (a second `replace` goes new)."""
    chat_id: int
    event: Event | None
    remove_keyboard: bool
    replaced: bool = False


class TelegramSender:
    """Renders Replies into one chat. `deliver` raises what Telegram refuses; `render` (the
    conversation's path) logs instead, and stops at a chat that blocked the bot."""

    def __init__(self, bot: Bot, *, attempts: int = SEND_ATTEMPTS, max_retry_after: float = MAX_RETRY_AFTER,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.bot = bot
        self.attempts = attempts
        self.max_retry_after = max_retry_after
        self._sleep = sleep
        # Chats shown a "share my number" keyboard not removed yet. In this process only: a
        # CONTACT event removes the keyboard whichever process showed it.
        self._contact_keyboards: set[int] = set()

    # -- entry points
    async def render(self, chat_id: int | str, replies: Sequence[Reply], event: Event | None = None) -> list[int]:
        """Send the replies one by one; a refused reply is logged and the next one still goes.
        Returns the ids of the messages sent or edited."""
        turn = self._turn(chat_id, event)
        sent: list[int] = []
        for reply in replies:
            try:
                sent += await self._one(turn, reply)
            except TelegramForbiddenError as error:
                log.info("chat %s blocked the bot or is gone; its replies are dropped: %s",
                         turn.chat_id, error.message)
                break
            except TelegramRetryAfter as error:
                log.warning("chat %s: flood wait of %s s; remaining replies dropped", turn.chat_id, error.retry_after)
                break
            except TelegramAPIError as error:
                log.error("chat %s: Telegram refused a %s reply: %s", turn.chat_id, type(reply).__name__, error.message)
        return sent

    async def deliver(self, chat_id: int | str, replies: Sequence[Reply], event: Event | None = None) -> list[int]:
        """Send the replies; the first refusal is raised (TelegramForbiddenError: the chat blocked
        the bot; TelegramRetryAfter: a flood wait over `max_retry_after`). For the outbox."""
        turn = self._turn(chat_id, event)
        sent: list[int] = []
        for reply in replies:
            sent += await self._one(turn, reply)
        return sent

    def _turn(self, chat_id: int | str, event: Event | None) -> _Turn:
        chat = int(chat_id)
        contact_shared = event is not None and event.kind is EventKind.CONTACT
        return _Turn(chat, event, contact_shared or chat in self._contact_keyboards)

    async def _one(self, turn: _Turn, reply: Reply) -> list[int]:
        if isinstance(reply, Text):
            return await self._text(turn, reply)
        if isinstance(reply, Document):
            return await self._file(turn, reply.caption, lambda caption: self.bot.send_document(
                turn.chat_id, BufferedInputFile(reply.content, filename=reply.filename), caption=caption))
        if isinstance(reply, Image):
            return await self._file(turn, reply.caption, lambda caption: self.bot.send_photo(
                turn.chat_id, BufferedInputFile(reply.content, filename=reply.filename), caption=caption))
        if isinstance(reply, DeleteMessage):
            await self._delete(turn, reply.message_id)
            return []
        raise TypeError(f"not a reply: {reply!r}")

    # -- replies
    async def _text(self, turn: _Turn, reply: Text) -> list[int]:
        # Telegram takes a message's direction from its first strong letter: an Arabic line that
        # starts with a number or a Latin code would show left to right without this mark.
        parts = [RLM + part if reply.rtl and part else part for part in text_parts(reply.text)]
        if not parts:
            log.warning("chat %s: an empty Text reply was not sent", turn.chat_id)
            return []
        inline = inline_markup(reply.buttons)
        contact = contact_markup(reply.buttons)
        target = self._edit_target(turn, reply)
        sent: list[int] = []
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            markup: Markup = (inline or contact) if last else None
            if index == 0 and target is not None and not isinstance(markup, ReplyKeyboardMarkup):
                edited = await self._edit(turn, target, part, markup)
                turn.replaced = True
                if edited is not None:
                    sent.append(edited)
                    continue
            sent.append(await self._send_text(turn, part, markup))
        if contact is not None:
            if inline is not None:
                sent.append(await self._send_text(turn, contact.keyboard[0][0].text, contact))
            self._contact_keyboards.add(turn.chat_id)
            turn.remove_keyboard = False
        return sent

    @staticmethod
    def _edit_target(turn: _Turn, reply: Text) -> int | None:
        event = turn.event
        if not reply.replace or turn.replaced or event is None or event.kind is not EventKind.BUTTON:
            return None
        source = event.source_message_id
        return int(source) if source and source.isdigit() else None

    async def _send_text(self, turn: _Turn, text: str, markup: Markup) -> int:
        if markup is None and turn.remove_keyboard:
            markup = ReplyKeyboardRemove(remove_keyboard=True)
        try:
            message = await self._call(lambda: self.bot.send_message(turn.chat_id, text, reply_markup=markup))
        except TelegramBadRequest as error:
            if not (_has_url(markup) and any(word in error.message.lower() for word in _BAD_URL)):
                raise
            log.warning("chat %s: Telegram refused a link button (%s); the link goes in the text",
                        turn.chat_id, error.message)
            text, markup = _without_url_buttons(text, markup)  # type: ignore[arg-type]
            message = await self._call(lambda: self.bot.send_message(turn.chat_id, text, reply_markup=markup))
        if isinstance(markup, ReplyKeyboardRemove):
            turn.remove_keyboard = False
            self._contact_keyboards.discard(turn.chat_id)
        return message.message_id

    async def _edit(self, turn: _Turn, message_id: int, text: str,
                    markup: InlineKeyboardMarkup | ReplyKeyboardRemove | None) -> int | None:
        """Edit the message the pressed button came from; None when a new message must go instead."""
        inline = markup if isinstance(markup, InlineKeyboardMarkup) else None
        for attempt in ("as is", "links in text"):
            try:
                await self._call(lambda: self.bot.edit_message_text(
                    text=text, chat_id=turn.chat_id, message_id=message_id, reply_markup=inline))
                return message_id
            except TelegramBadRequest as error:
                reason = error.message.lower()
                if _NOT_MODIFIED in reason:
                    return message_id  # a second press on the same button: already showing this
                if any(s in reason for s in _CANT_EDIT):
                    log.info("chat %s: message %s can't be edited (%s); sending a new one",
                             turn.chat_id, message_id, error.message)
                    return None
                if attempt == "as is" and inline is not None and _has_url(inline) \
                        and any(word in reason for word in _BAD_URL):
                    text, inline = _without_url_buttons(text, inline)
                    continue
                raise
        return None

    async def _file(self, turn: _Turn, caption: str | None,
                    send: Callable[[str | None], Awaitable[Message]]) -> list[int]:
        parts = text_parts(caption, CAPTION_LIMIT) if caption else []
        message = await self._call(lambda: send(parts[0] if parts else None))
        sent = [message.message_id]
        rest = "\n".join(parts[1:])
        for part in text_parts(rest) if rest else []:
            sent.append(await self._send_text(turn, part, None))
        return sent

    async def _delete(self, turn: _Turn, message_id: str) -> None:
        if not message_id.isdigit():
            log.warning("chat %s: not a Telegram message id: %r", turn.chat_id, message_id)
            return
        try:
            await self._call(lambda: self.bot.delete_message(turn.chat_id, int(message_id)))
        except TelegramBadRequest as error:
            # older than 48 hours, or already gone: nothing more we can do
            log.info("chat %s: message %s not deleted: %s", turn.chat_id, message_id, error.message)

    # -- one Bot API call, retried
    async def _call(self, call: Callable[[], Awaitable[R]]) -> R:
        """Retry a 429 after its retry_after (when not over `max_retry_after`) and a 5xx after a
        short pause, `attempts` times in all. Network errors are not retried: the call may have
        gone through, and a message twice is worse than a message late."""
        for attempt in range(1, self.attempts + 1):
            try:
                return await call()
            except TelegramRetryAfter as error:
                if attempt == self.attempts or error.retry_after > self.max_retry_after:
                    raise
                log.info("flood wait: retrying in %s s", error.retry_after)
                await self._sleep(error.retry_after)
            except TelegramServerError:
                if attempt == self.attempts:
                    raise
                await self._sleep(min(2.0 ** (attempt - 1), 5.0))
        raise AssertionError("unreachable")

