"""A scripted customer for the channel-neutral conversation: sends events, presses buttons by label."""
from __future__ import annotations

import itertools

from bot.conversation.events import Event, EventKind
from bot.conversation.replies import Button, Document, Text

_ids = itertools.count(1)


class Chat:
    def __init__(self, conversation, chat_id: str = "c1", channel: str = "webchat", language: str = "fr",
                 early: bool = False) -> None:
        self.conversation = conversation
        self.chat_id = chat_id
        self.channel = channel
        self.language = language
        self.replies: list = []
        self.early = early  # like a live channel: replies flushed before the turn ends land in `sent_early`
        self.sent_early: list = []

    async def _early(self, replies: list) -> None:
        self.sent_early.extend(replies)

    async def _send(self, kind: EventKind, **kw) -> list:
        kw.setdefault("update_id", str(next(_ids)))
        event = Event(channel=self.channel, chat_id=self.chat_id, kind=kind, language=self.language, **kw)
        self.sent_early = []
        self.replies = await self.conversation.handle(event, self._early if self.early else None)
        return self.replies

    async def start(self) -> list:
        return await self._send(EventKind.START, text="/start", user_name="Amina")

    async def say(self, text: str, **kw) -> list:
        return await self._send(EventKind.TEXT, text=text, message_id=str(next(_ids)), **kw)

    async def command(self, name: str) -> list:
        return await self._send(EventKind.COMMAND, text=name)

    async def contact(self, phone: str) -> list:
        return await self._send(EventKind.CONTACT, text=phone)

    async def press_data(self, data: str) -> list:
        return await self._send(EventKind.BUTTON, data=data, source_message_id="1")

    def buttons(self) -> list[Button]:
        return [b for r in self.replies if isinstance(r, Text) for row in r.buttons for b in row]

    def button(self, label: str) -> Button:
        for button in self.buttons():
            if label in button.label:
                return button
        raise AssertionError(f"no button {label!r} in {[b.label for b in self.buttons()]}")

    async def press(self, label: str) -> list:
        return await self.press_data(self.button(label).data)

    @property
    def text(self) -> str:
        return "\n".join(r.text for r in self.replies if isinstance(r, Text))

    @property
    def documents(self) -> list[Document]:
        return [r for r in self.replies if isinstance(r, Document)]
