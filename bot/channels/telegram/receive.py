"""Telegram updates -> conversation Events.

Only private chats are customers' chats: the bot answers nothing in groups or channels. Service
messages (pinned message, "write access allowed", ...) are not something the user said, so they
give no Event; an edited message is its own update type and is not handled either (the first
version of the message was already answered).
"""
from __future__ import annotations

import re

from aiogram.enums import ChatType, ContentType
from aiogram.types import CallbackQuery, Message, Update

from bot.channels.telegram import CHANNEL
from bot.conversation.events import Event, EventKind

# "/start", "/help@fatoura_bot", "/link 0612345678": name, optional bot name, optional arguments.
COMMAND_RE = re.compile(r"/([A-Za-z0-9_]{1,64})(?:@([A-Za-z0-9_]{1,64}))?(?:\s+(.*))?", re.DOTALL)

# What a person can send that we can't read: answered as UNSUPPORTED with its kind in `text`.
USER_CONTENT = frozenset(ContentType(kind) for kind in (
    "audio", "animation", "document", "game", "photo", "sticker", "video", "video_note", "voice",
    "contact", "venue", "location", "poll", "dice", "story", "paid_media", "invoice", "giveaway",
    "checklist", "live_photo", "rich_message", "unknown",
) if kind in {member.value for member in ContentType})


def _str(value: int | str | None) -> str | None:
    return None if value is None else str(value)


def event_from_update(update: Update) -> Event | None:
    """The Event for a whole update, or None when it is nothing the conversation answers."""
    if update.message is not None:
        return event_from_message(update.message, update.update_id)
    if update.callback_query is not None:
        return event_from_callback(update.callback_query, update.update_id)
    return None


def event_from_message(message: Message, update_id: int | str | None = None) -> Event | None:
    if message.chat.type != ChatType.PRIVATE:
        return None
    user = message.from_user
    base = dict(channel=CHANNEL, chat_id=str(message.chat.id), update_id=_str(update_id),
                message_id=str(message.message_id),
                language=user.language_code if user else None,
                user_name=user.first_name if user else None)
    if message.text is not None:
        command = COMMAND_RE.fullmatch(message.text.strip())
        if command is None:
            return Event(kind=EventKind.TEXT, text=message.text, **base)
        name, arguments = command.group(1).lower(), command.group(3)
        if name == "start":
            # a deep link t.me/bot?start=PAYLOAD arrives as "/start PAYLOAD"
            return Event(kind=EventKind.START, data=arguments or None, **base)
        return Event(kind=EventKind.COMMAND, text=name, data=arguments or None, **base)
    if message.contact is not None:
        own = user is not None and message.contact.user_id == user.id
        if own:
            return Event(kind=EventKind.CONTACT, text=message.contact.phone_number, **base)
        return Event(kind=EventKind.UNSUPPORTED, text="contact", **base)  # someone else's card
    kind = ContentType(message.content_type)
    if kind not in USER_CONTENT:
        return None  # a service message: nothing was said
    return Event(kind=EventKind.UNSUPPORTED, text=kind.value, **base)


def event_from_callback(query: CallbackQuery, update_id: int | str | None = None) -> Event | None:
    """A press on one of our inline buttons. The message it came from may be too old to be
    accessible (InaccessibleMessage) or absent (inline mode): its chat is then the user's own."""
    message = query.message
    if message is not None and message.chat.type != ChatType.PRIVATE:
        return None
    chat_id = message.chat.id if message is not None else query.from_user.id
    base = dict(channel=CHANNEL, chat_id=str(chat_id), update_id=_str(update_id),
                language=query.from_user.language_code, user_name=query.from_user.first_name,
                source_message_id=_str(message.message_id) if message is not None else None)
    if not query.data:
        return Event(kind=EventKind.UNSUPPORTED, text="callback_game", **base)
    return Event(kind=EventKind.BUTTON, data=query.data, **base)
