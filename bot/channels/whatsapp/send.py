"""Conversation Replies -> WhatsApp Cloud API messages, within WhatsApp's forms and limits.

How a Reply degrades to fit WhatsApp:
- a Text's data buttons are written into its body as a numbered list too ("1. Unpaid invoices"),
  for screen readers and old phones, and a typed number works like a tap (see channel.py);
- up to 3 data buttons go as reply buttons (titles cut to 20 characters), more as a list (rows
  cut to 24 characters, the full label as the row's description); more than 10 options become
  pages of 8 with "More" / "Previous" rows, turned here without asking the conversation;
- a url button (a payment link) goes as a cta_url message; with data buttons too, the link
  message carries the text and a second message the choices;
- a body too long for an interactive message (1024) goes first as plain text (4096 a message);
- documents and images are uploaded as media, then sent by id (a PDF keeps its file name);
  a media error (131053) uploads once more; a ZIP archive, which WhatsApp refuses, goes as the
  documents inside it;
- `replace` can't edit on WhatsApp: a new message goes; DeleteMessage is skipped (a business
  can't delete the customer's message).

The options of the latest menu and the ids of the messages that carried it are kept in the
StateStore per chat (`wa:menu:{chat}`), so a typed number maps to the right option and a tap on
an older menu can be told apart.
"""
from __future__ import annotations

import io
import logging
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from bot.channels.whatsapp.client import GraphClient, GraphError
from bot.channels.whatsapp.limits import (
    BODY_LIMIT,
    BUTTON_TITLE,
    CAPTION_LIMIT,
    MAX_LIST_ROWS,
    MAX_REPLY_BUTTONS,
    MEDIA_FAILED,
    ROW_DESCRIPTION,
    ROW_TITLE,
    TEXT_LIMIT,
    THROUGHPUT,
    UNDELIVERABLE,
    fit,
)
from bot.conversation.replies import Button, DeleteMessage, Document, Image, Reply, Text, split_text
from core.i18n import Translator
from core.state import StateStore

log = logging.getLogger("fatoura.whatsapp")

RLM = "\u200f"
MENU_TTL = 30 * 24 * 3600
PAGE_SIZE = MAX_LIST_ROWS - 2  # room for "Previous" and "More" rows
MAX_ARCHIVE_FILES = 24  # a year of monthly invoices for two accounts
# What WhatsApp sends as a document, by file extension (it refuses ZIP archives, among others).
DOCUMENT_TYPES = {"pdf": "application/pdf", "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                  "txt": "text/plain"}

# Ids of list rows and reply buttons: "o{n}:{data}" for the conversation's n-th option (data kept
# so a tap still works when the menu state is gone), "~p:{page}" to turn the list's page,
# "~o:1" / "~o:0" for the notifications opt-in question.
OPTION, PAGE, OPT_IN = "o", "~p", "~o"
OWN_NUMBER = re.compile(r"^([^\w\s]+\s*)?\d{1,3}\.\s+")  # "11. No. …", "✅ 1. 00028653"


def menu_key(chat_id: str) -> str:
    return f"wa:menu:{chat_id}"


@dataclass(frozen=True)
class Recipient:
    """Where a chat's messages go: its phone number (wa_id), else its business-scoped user id."""

    chat_id: str
    to: str
    bsuid: bool = False


def option_id(index: int, data: str) -> str:
    return f"{OPTION}{index}:{data}"


def parse_reply_id(reply_id: str) -> tuple[str, int | None, str]:
    """(kind, option number, data) of a button or row id; kind is OPTION, PAGE, OPT_IN or ""."""
    head, _, rest = reply_id.partition(":")
    if head == PAGE:
        return PAGE, _int(rest), rest
    if head == OPT_IN:
        return OPT_IN, None, rest
    if head.startswith(OPTION) and _int(head[1:]) is not None and rest:
        return OPTION, _int(head[1:]), rest
    return "", None, reply_id


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def plain_label(label: str) -> str:
    """A label without the number the conversation may have put in front ("11. No. 03107920"):
    WhatsApp numbers the options itself, and two numbers side by side would mislead."""
    return OWN_NUMBER.sub(lambda m: m.group(1) or "", " ".join(label.split()), count=1) or label


def numbered(options: Sequence[tuple[str, str]]) -> str:
    return "\n".join(f"{index}. {plain_label(label)}" for index, (label, _) in enumerate(options, 1))


def reply_buttons(body: str, choices: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """An interactive message of up to 3 reply buttons: (id, label) pairs; titles made unique."""
    titles: list[str] = []
    for index, (_, label) in enumerate(choices, 1):
        title = fit(label, BUTTON_TITLE)
        if title in titles:
            title = fit(f"{index}. {label}", BUTTON_TITLE)
        titles.append(title)
    return {"type": "interactive", "interactive": {
        "type": "button", "body": {"text": body},
        "action": {"buttons": [{"type": "reply", "reply": {"id": reply_id, "title": title}}
                               for (reply_id, _), title in zip(choices, titles)]}}}


def list_message(body: str, button: str, rows: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """An interactive list of up to 10 rows: (id, label) pairs. A label cut to the row title's 24
    characters keeps its whole text in the description."""
    items, titles = [], set()
    for index, (row_id, label) in enumerate(rows, 1):
        title = fit(label, ROW_TITLE)
        if title in titles:
            title = fit(f"{index}. {label}", ROW_TITLE)
        titles.add(title)
        row: dict[str, Any] = {"id": row_id, "title": title}
        plain = " ".join(label.split())
        if title != plain:
            row["description"] = fit(plain, ROW_DESCRIPTION)
        items.append(row)
    return {"type": "interactive", "interactive": {
        "type": "list", "body": {"text": body},
        "action": {"button": fit(button, BUTTON_TITLE), "sections": [{"rows": items}]}}}


def cta_url(body: str, label: str, url: str) -> dict[str, Any]:
    return {"type": "interactive", "interactive": {
        "type": "cta_url", "body": {"text": body},
        "action": {"name": "cta_url", "parameters": {"display_text": fit(label, BUTTON_TITLE), "url": url}}}}


def text_message(body: str) -> dict[str, Any]:
    return {"type": "text", "text": {"body": body, "preview_url": False}}


class Undeliverable(Exception):
    """WhatsApp can't deliver to this chat (not a WhatsApp user, blocked us): stop sending."""


class WhatsAppSender:
    """Renders Replies into one chat. `deliver` raises the first GraphError (for the outbox);
    `render` (the conversation's path) logs a refused reply and goes on, and stops at a chat that
    can't be reached."""

    def __init__(self, client: GraphClient, store: StateStore) -> None:
        self.client = client
        self.store = store

    # -- entry points
    async def render(self, recipient: Recipient, replies: Sequence[Reply], t: Translator) -> list[str]:
        sent: list[str] = []
        turn = _Render(self, recipient, t)
        for reply in replies:
            try:
                sent += await turn.one(reply)
            except GraphError as error:
                if error.code in UNDELIVERABLE:
                    raise Undeliverable(str(error)) from None
                if error.code in THROUGHPUT:
                    log.warning("chat %s: WhatsApp throughput limit (%s); remaining replies dropped",
                                recipient.chat_id, error.code)
                    break
                log.error("chat %s: WhatsApp refused a %s reply: %s", recipient.chat_id, type(reply).__name__, error)
            except httpx.TransportError as error:
                # Not retried: the message may have gone through, and twice is worse than once.
                log.error("chat %s: the Graph API could not be reached (%s); remaining replies dropped",
                          recipient.chat_id, type(error).__name__)
                break
        await turn.remember()
        return sent

    async def deliver(self, recipient: Recipient, replies: Sequence[Reply], t: Translator) -> list[str]:
        turn = _Render(self, recipient, t)
        sent: list[str] = []
        try:
            for reply in replies:
                sent += await turn.one(reply)
        finally:
            await turn.remember()
        return sent

    async def menu(self, recipient: Recipient, t: Translator, *, page: int = 0, note: str | None = None) -> list[str]:
        """Send the latest menu again (a page of it, or with a note above): for list paging and
        for a tap on a stale menu."""
        state = await self.store.get_json(menu_key(recipient.chat_id))
        if not state or not state.get("options"):
            return []
        body = state.get("body") or ""
        # A page turn shows the choices only (the text above them was read already).
        shown = (f"{note}\n\n{body}" if body else note) if note else ""
        options = [tuple(option) for option in state["options"]]
        turn = _Render(self, recipient, t)
        sent = await turn.options_message(shown, options, bool(state.get("rtl")), page=page, menu_body=body)
        await turn.remember()
        return sent

    async def send(self, recipient: Recipient, message: dict[str, Any]) -> str:
        return await self.client.send(recipient.to, message, bsuid=recipient.bsuid)

    async def upload_and_send(self, recipient: Recipient, kind: str, content: bytes, mime_type: str,
                              filename: str, extra: dict[str, Any]) -> str:
        """Upload, then send by media id; a media error (131053) uploads once more."""
        for attempt in (1, 2):
            media_id = await self.client.upload(content, mime_type, filename)
            try:
                return await self.send(recipient, {"type": kind, kind: {"id": media_id, **extra}})
            except GraphError as error:
                if error.code != MEDIA_FAILED or attempt == 2:
                    raise
                log.info("chat %s: media %s refused (%s); uploading it again", recipient.chat_id, media_id, error)
        raise AssertionError("unreachable")


class _Render:
    """One render: the messages that carried options, and the menu to remember."""

    def __init__(self, sender: WhatsAppSender, recipient: Recipient, t: Translator) -> None:
        self.sender, self.recipient, self.t = sender, recipient, t
        self.prompt_ids: list[str] = []
        self.menu: dict[str, Any] | None = None

    async def send(self, message: dict[str, Any]) -> str:
        return await self.sender.send(self.recipient, message)

    async def remember(self) -> None:
        """Keep the menu when this render showed one; a render without choices (a PDF) leaves
        the previous menu current."""
        if self.menu is not None:
            await self.sender.store.set_json(menu_key(self.recipient.chat_id),
                                             {**self.menu, "ids": self.prompt_ids}, ttl=MENU_TTL)

    async def one(self, reply: Reply) -> list[str]:
        if isinstance(reply, Text):
            return await self.text(reply)
        if isinstance(reply, Document) and reply.mime_type == "application/zip":
            return await self.archive(reply)
        if isinstance(reply, Document):
            return await self.file("document", reply.content, reply.mime_type, reply.filename, reply.caption,
                                   {"filename": reply.filename})
        if isinstance(reply, Image):
            mime = "image/jpeg" if reply.filename.lower().endswith((".jpg", ".jpeg")) else "image/png"
            return await self.file("image", reply.content, mime, reply.filename, reply.caption, {})
        if isinstance(reply, DeleteMessage):
            return []  # WhatsApp has no way for a business to delete the customer's message
        raise TypeError(f"not a reply: {reply!r}")

    def _rtl(self, text: str, rtl: bool) -> str:
        # WhatsApp, like Telegram, takes the direction from the first strong letter.
        return RLM + text if rtl and text and not text.startswith(RLM) else text

    async def plain(self, text: str, rtl: bool, limit: int = TEXT_LIMIT) -> list[str]:
        return [await self.send(text_message(self._rtl(part, rtl)))
                for part in split_text(text, limit) if part.strip()]

    async def text(self, reply: Text) -> list[str]:
        buttons = [b for row in reply.buttons for b in row if not b.request_contact]
        options = [(b.label, b.data) for b in buttons if b.data is not None]
        links = [b for b in buttons if b.url is not None]
        sent: list[str] = []
        body = reply.text.strip()
        if links:
            sent += await self.links(body, links, reply.rtl, carry_text=True)
            body = ""
        if options:
            sent += await self.options_message(body, options, reply.rtl)
        elif not links:
            sent += await self.plain(body, reply.rtl)
        return sent

    async def links(self, body: str, links: list[Button], rtl: bool, carry_text: bool) -> list[str]:
        """One cta_url message per link; the first carries the text when it fits."""
        sent: list[str] = []
        for index, link in enumerate(links):
            text = body if index == 0 and carry_text else ""
            if len(self._rtl(text, rtl)) > BODY_LIMIT:
                sent += await self.plain(text, rtl)
                text = ""
            text = (text or link.label).strip() or link.url or "·"  # the body can't be empty
            sent.append(await self.send(cta_url(self._rtl(text, rtl), link.label, link.url or "")))
        return sent

    async def options_message(self, body: str, options: list[tuple[str, str]], rtl: bool, page: int = 0,
                              menu_body: str | None = None) -> list[str]:
        self.menu = {"body": body if menu_body is None else menu_body, "options": [list(o) for o in options],
                     "rtl": rtl, "page": page}
        t = self.t
        sent: list[str] = []
        paged = len(options) > MAX_LIST_ROWS
        pages = (len(options) + PAGE_SIZE - 1) // PAGE_SIZE if paged else 1
        page = min(max(page, 0), pages - 1)
        first = page * PAGE_SIZE if paged else 0
        shown = options[first:first + PAGE_SIZE] if paged else options
        listing = numbered(options)
        full = f"{body}\n\n{listing}" if body else listing
        if len(self._rtl(full, rtl)) > BODY_LIMIT:
            # The text first, as plain messages; the interactive one holds the numbered choices.
            if body:
                sent += await self.plain(body, rtl)
            full = listing if len(self._rtl(listing, rtl)) <= BODY_LIMIT else numbered_page(options, first, len(shown))
            if len(self._rtl(full, rtl)) > BODY_LIMIT:
                full = fit(full, BODY_LIMIT - 1)
        full = self._rtl(full, rtl)
        rows = [(option_id(first + i + 1, data), plain_label(label)) for i, (label, data) in enumerate(shown)]
        if len(options) <= MAX_REPLY_BUTTONS:
            message = reply_buttons(full, rows)
        else:
            if paged and page > 0:
                rows.append((f"{PAGE}:{page - 1}", t._("◀ Previous")))
            if paged and page < pages - 1:
                rows.append((f"{PAGE}:{page + 1}", t._("More options ({page}/{pages})", page=page + 2, pages=pages)))
            message = list_message(full, t._("Choose"), rows)
        wamid = await self.send(message)
        self.prompt_ids.append(wamid)
        return [*sent, wamid]

    async def archive(self, reply: Document) -> list[str]:
        """WhatsApp refuses ZIP files: the archive's documents go one by one, the caption on the first."""
        sent: list[str] = []
        with zipfile.ZipFile(io.BytesIO(reply.content)) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()][:MAX_ARCHIVE_FILES]
            for index, member in enumerate(members):
                name = member.filename.rsplit("/", 1)[-1]
                mime = DOCUMENT_TYPES.get(name.rsplit(".", 1)[-1].lower())
                if mime is None:
                    log.info("chat %s: %s in %s is not a type WhatsApp sends; left out",
                             self.recipient.chat_id, name, reply.filename)
                    continue
                sent += await self.file("document", archive.read(member), mime, name,
                                        reply.caption if not sent else None, {"filename": name})
        return sent

    async def file(self, kind: str, content: bytes, mime: str, filename: str, caption: str | None,
                   extra: dict[str, Any]) -> list[str]:
        parts = split_text(caption, CAPTION_LIMIT) if caption else []
        if parts:
            extra = {**extra, "caption": parts[0]}
        sent = [await self.sender.upload_and_send(self.recipient, kind, content, mime, filename, extra)]
        rest = "\n".join(parts[1:])
        if rest.strip():
            sent += await self.plain(rest, False)
        return sent


def numbered_page(options: Sequence[tuple[str, str]], first: int, count: int) -> str:
    """The numbered lines of one page only (when all of them don't fit a body)."""
    return "\n".join(f"{first + i + 1}. {plain_label(label)}"
                     for i, (label, _) in enumerate(options[first:first + count]))
