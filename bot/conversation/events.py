"""What a channel adapter hands to the conversation: one inbound event per platform update."""
from __future__ import annotations

import enum
from dataclasses import dataclass


class EventKind(str, enum.Enum):
    START = "start"  # first contact or /start
    TEXT = "text"  # typed text (commands arrive as COMMAND)
    COMMAND = "command"  # /help, /forget, /menu ... : `text` holds the command name without '/'
    BUTTON = "button"  # a press on a button we sent: `data` holds its payload
    CONTACT = "contact"  # the user shared their own phone number: `text` holds it
    UNSUPPORTED = "unsupported"  # sticker, voice note, photo, location ... : `text` names the kind


@dataclass(frozen=True)
class Event:
    channel: str  # "telegram", "whatsapp", "webchat"
    chat_id: str
    kind: EventKind
    text: str | None = None
    data: str | None = None
    update_id: str | None = None  # the platform's id: a second delivery has no second effect
    message_id: str | None = None  # so a message holding card data can be deleted
    language: str | None = None  # the client's language code, e.g. "ar", "fr-FR"
    user_name: str | None = None
    # For a BUTTON: the id of the message that carried the button, so the reply can replace it.
    source_message_id: str | None = None
