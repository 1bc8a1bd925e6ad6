"""What the conversation answers: channel-neutral replies that each adapter renders and degrades.

Button payloads are short strings (`Button.data`) that must fit Telegram's 64-byte callback data;
the conversation builds them with `bot.conversation.callbacks`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

MAX_CALLBACK_BYTES = 64


@dataclass(frozen=True)
class Button:
    label: str
    data: str | None = None  # payload sent back in a BUTTON event
    url: str | None = None  # a link button instead
    request_contact: bool = False  # "share my number" (Telegram reply keyboard; others: ignored)

    def __post_init__(self) -> None:
        if (self.data is None) == (self.url is None) and not self.request_contact:
            raise ValueError("a button has either data or a url")
        if self.data is not None and len(self.data.encode()) > MAX_CALLBACK_BYTES:
            raise ValueError(f"button data over {MAX_CALLBACK_BYTES} bytes: {self.data!r}")


@dataclass(frozen=True)
class Text:
    """A message, with rows of buttons under it. `replace` asks to edit the message the pressed
    button came from instead of sending a new one (channels that can't edit send a new one)."""

    text: str
    buttons: tuple[tuple[Button, ...], ...] = ()
    replace: bool = False
    rtl: bool = False


@dataclass(frozen=True)
class Document:
    filename: str
    content: bytes = field(repr=False)
    mime_type: str = "application/pdf"
    caption: str | None = None


@dataclass(frozen=True)
class Image:
    content: bytes = field(repr=False)
    filename: str = "image.png"
    caption: str | None = None


@dataclass(frozen=True)
class DeleteMessage:
    """Delete the user's message (it held card data). Channels that can't delete skip it."""

    message_id: str


Reply = Text | Document | Image | DeleteMessage


@dataclass(frozen=True)
class ChannelLimits:
    """What a channel can show; adapters split or number what doesn't fit."""

    max_text: int = 4096
    max_buttons_per_row: int = 8
    max_buttons: int = 100
    max_button_label: int = 64
    can_edit: bool = True
    can_delete: bool = True


TELEGRAM_LIMITS = ChannelLimits(max_text=4096, max_buttons_per_row=8, max_buttons=100, max_button_label=64)
WHATSAPP_LIMITS = ChannelLimits(max_text=1024, max_buttons_per_row=1, max_buttons=10, max_button_label=24,
                                can_edit=False, can_delete=False)
WEBCHAT_LIMITS = ChannelLimits(max_text=20000, max_buttons_per_row=4, max_buttons=200, max_button_label=80,
                               can_edit=True, can_delete=True)


def split_text(text: str, limit: int) -> list[str]:
    """Split on line breaks (then spaces) so each part fits `limit` characters."""
    if len(text) <= limit:
        return [text]
    parts, current = [], ""
    for line in text.split("\n"):
        while len(line) > limit:
            cut = line.rfind(" ", 0, limit)
            cut = cut if cut > 0 else limit
            if current:
                parts.append(current)
                current = ""
            parts.append(line[:cut])
            line = line[cut:].lstrip()
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit:
            parts.append(current)
            current = line
        else:
            current = candidate
    if current:
        parts.append(current)
    return parts
