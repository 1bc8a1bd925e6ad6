"""The web chat channel: the browser's JSON frames -> Event, Reply -> JSON frames for chat.js.

Framework-free: `webhooks/webchat.py` runs the socket and the download route around it.

Browser -> server, one JSON object per WebSocket message (at most 8 KB, text at most 4 KB):
    {"type": "start" | "text" | "button" | "command",
     "session": "<22-char urlsafe token the page keeps in localStorage>",   # the chat id
     "id": "<client message id>",        # the event's update id: a re-send has no second effect
     "text": "...",                      # text: what was typed; command: "help" or "/help"
     "data": "...",                      # button: the payload of the pressed button
     "source_id": "<server message id>", # button: the bubble that carried it (so it can be replaced)
     "language": "ar-MA"}                # optional, navigator.language
Server -> browser:
    {"type": "text", "id", "text", "buttons": [[{"label", "data"} | {"label", "url"}]], "rtl",
     "replace_id"?}                      # replace_id: edit that bubble instead of adding one
    {"type": "document" | "image", "id", "filename", "url", "caption", "mime_type", "size"}
    {"type": "delete", "id"}            # remove the user's own bubble (it held card data)
    {"type": "ack", "id"}               # the client message was handled
    {"type": "error", "code", "message", "ref"?}   # the frame was refused; nothing changed
"""
from __future__ import annotations

import json
import logging
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable, Protocol
from urllib.parse import urlsplit

from bot.conversation.events import Event, EventKind
from bot.conversation.replies import (
    MAX_CALLBACK_BYTES,
    WEBCHAT_LIMITS,
    Button,
    ChannelLimits,
    DeleteMessage,
    Document,
    Image,
    Reply,
    Text,
    split_text,
)

log = logging.getLogger("fatoura.webchat")

CHANNEL = "webchat"
MAX_FRAME_BYTES = 8 * 1024
MAX_TEXT_BYTES = 4 * 1024
FRAME_TYPES = ("start", "text", "button", "command")

SESSION_RE = re.compile(r"[A-Za-z0-9_-]{22}")  # secrets.token_urlsafe(16): 128 random bits
MESSAGE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")  # client ids, and the ids we issue
COMMAND_RE = re.compile(r"/?([A-Za-z0-9_]{1,32})")
TYPED_COMMAND_RE = re.compile(r"/([A-Za-z0-9_]{1,32})(?:@\S*)?\s*")
LANGUAGE_RE = re.compile(r"[A-Za-z]{2,8}(?:[-_][A-Za-z0-9]{1,8}){0,4}")


class EventHandler(Protocol):
    """What the web chat needs from the dialogue (bot.conversation.engine.Conversation)."""

    async def handle(self, event: Event) -> list[Reply]: ...


def new_session_id() -> str:
    return secrets.token_urlsafe(16)


def new_message_id() -> str:
    return "s" + secrets.token_urlsafe(9)


class FrameError(ValueError):
    """A frame the adapter refuses. `code` is stable (the page maps it to a localized notice);
    `message` is for developers; `ref` is the client message id when the frame had a valid one."""

    def __init__(self, code: str, message: str, ref: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref

    def frame(self) -> dict[str, Any]:
        frame = {"type": "error", "code": self.code, "message": self.message}
        if self.ref:
            frame["ref"] = self.ref
        return frame


def _optional_str(frame: dict[str, Any], key: str, ref: str) -> str | None:
    value = frame.get(key)
    if value is not None and not isinstance(value, str):
        raise FrameError("bad_frame", f"{key!r} must be a string", ref)
    return value


def parse_frame(raw: str | bytes | None) -> Event:
    """One browser frame -> the Event it stands for, or FrameError (and nothing happens)."""
    if raw is None:
        raise FrameError("bad_frame", "empty frame")
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
    if size > MAX_FRAME_BYTES:
        raise FrameError("too_large", f"frames are at most {MAX_FRAME_BYTES} bytes")
    try:
        frame = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise FrameError("bad_json", "a frame is one JSON object") from None
    if not isinstance(frame, dict):
        raise FrameError("bad_json", "a frame is one JSON object")

    message_id = frame.get("id")
    if not isinstance(message_id, str) or not MESSAGE_ID_RE.fullmatch(message_id):
        raise FrameError("bad_frame", "'id' must be 1-64 characters of [A-Za-z0-9_-]")
    session = frame.get("session")
    if not isinstance(session, str) or not SESSION_RE.fullmatch(session):
        raise FrameError("bad_session", "'session' must be a 22-character urlsafe token", message_id)
    kind = frame.get("type")
    if kind not in FRAME_TYPES:
        raise FrameError("bad_type", f"'type' must be one of {', '.join(FRAME_TYPES)}", message_id)

    language = frame.get("language")
    if not (isinstance(language, str) and LANGUAGE_RE.fullmatch(language)):
        language = None  # a browser's odd locale is no reason to refuse the message
    base = {"channel": CHANNEL, "chat_id": session, "update_id": message_id, "language": language}

    if kind == "start":
        return Event(kind=EventKind.START, text="/start", **base)
    if kind == "button":
        data = _optional_str(frame, "data", message_id)
        if not data or len(data.encode()) > MAX_CALLBACK_BYTES:
            raise FrameError("bad_frame", f"'data' must be 1-{MAX_CALLBACK_BYTES} bytes", message_id)
        source = _optional_str(frame, "source_id", message_id)
        if source is not None and not MESSAGE_ID_RE.fullmatch(source):
            raise FrameError("bad_frame", "'source_id' is not a message id", message_id)
        return Event(kind=EventKind.BUTTON, data=data, source_message_id=source, **base)

    text = _optional_str(frame, "text", message_id)
    if text is None or not text.strip():
        raise FrameError("bad_frame", "'text' is required", message_id)
    if len(text.encode("utf-8", "surrogatepass")) > MAX_TEXT_BYTES:
        raise FrameError("too_large", f"'text' is at most {MAX_TEXT_BYTES} bytes", message_id)
    text = text.strip()
    if kind == "command":
        match = COMMAND_RE.fullmatch(text)
        if not match:
            raise FrameError("bad_frame", "'text' must be a command name such as 'help'", message_id)
        return _command(match.group(1), message_id, base)
    # Typed "/help" is a command, as on Telegram.
    match = TYPED_COMMAND_RE.fullmatch(text)
    if match:
        return _command(match.group(1), message_id, base)
    return Event(kind=EventKind.TEXT, text=text, message_id=message_id, **base)


def _command(name: str, message_id: str, base: dict[str, Any]) -> Event:
    name = name.lower()
    if name == "start":
        return Event(kind=EventKind.START, text="/start", message_id=message_id, **base)
    return Event(kind=EventKind.COMMAND, text=name, message_id=message_id, **base)


# --- downloads --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CachedFile:
    filename: str
    content: bytes = field(repr=False)
    mime_type: str
    expires_at: float


class FileCache:
    """The documents and images the page may download, for `ttl` seconds, in this process only.

    Bounded by count and by total bytes; the least recently used goes first. Tokens are random
    (the link is the permission), so a chat can't reach another chat's files.
    """

    def __init__(self, *, max_items: int = 256, max_bytes: int = 64 * 1024 * 1024, ttl: float = 15 * 60,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.clock = clock
        self._files: OrderedDict[str, CachedFile] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._files)

    def put(self, filename: str, content: bytes, mime_type: str) -> str:
        token = secrets.token_urlsafe(24)
        self._files[token] = CachedFile(filename, content, mime_type, self.clock() + self.ttl)
        self._bytes += len(content)
        self._evict(keep=token)
        return token

    def get(self, token: str) -> CachedFile | None:
        cached = self._files.get(token)
        if cached is None:
            return None
        if cached.expires_at <= self.clock():
            self._drop(token)
            return None
        self._files.move_to_end(token)
        return cached

    def _drop(self, token: str) -> None:
        self._bytes -= len(self._files.pop(token).content)

    def _evict(self, keep: str) -> None:
        now = self.clock()
        for token in [t for t, f in self._files.items() if f.expires_at <= now and t != keep]:
            self._drop(token)
        while len(self._files) > 1 and (len(self._files) > self.max_items or self._bytes > self.max_bytes):
            oldest = next(iter(self._files))
            if oldest == keep:  # unreachable: the newest is last
                break
            self._drop(oldest)


# --- rendering --------------------------------------------------------------------------------


class WebChatAdapter:
    """Renders replies as frames, degrading them to WEBCHAT_LIMITS; files go to the cache and the
    page gets `{files_url}{token}`."""

    def __init__(self, files: FileCache | None = None, *, files_url: str = "/chat/files/",
                 limits: ChannelLimits = WEBCHAT_LIMITS) -> None:
        self.files = files if files is not None else FileCache()
        self.files_url = files_url
        self.limits = limits

    parse = staticmethod(parse_frame)

    def render(self, replies: Iterable[Reply], *, source_message_id: str | None = None) -> list[dict[str, Any]]:
        """`source_message_id`: the bubble whose button was pressed; the first `replace` reply edits it."""
        frames: list[dict[str, Any]] = []
        replaceable = source_message_id if source_message_id and MESSAGE_ID_RE.fullmatch(source_message_id) else None
        for reply in replies:
            if isinstance(reply, Text):
                parts = split_text(reply.text, self.limits.max_text)
                for index, part in enumerate(parts):
                    frame: dict[str, Any] = {"type": "text", "id": new_message_id(), "text": part,
                                             "buttons": self._buttons(reply.buttons) if index == len(parts) - 1 else [],
                                             "rtl": reply.rtl}
                    if index == 0 and reply.replace and replaceable:
                        frame["replace_id"] = replaceable
                        replaceable = None
                    frames.append(frame)
            elif isinstance(reply, (Document, Image)):
                kind = "document" if isinstance(reply, Document) else "image"
                mime_type = reply.mime_type if isinstance(reply, Document) else _image_type(reply.filename)
                token = self.files.put(reply.filename, reply.content, mime_type)
                frames.append({"type": kind, "id": new_message_id(), "filename": reply.filename,
                               "url": self.files_url + token, "caption": reply.caption,
                               "mime_type": mime_type, "size": len(reply.content)})
            elif isinstance(reply, DeleteMessage):
                if MESSAGE_ID_RE.fullmatch(reply.message_id):
                    frames.append({"type": "delete", "id": reply.message_id})
            else:
                log.warning("webchat cannot render %r", type(reply).__name__)
        return frames

    def _buttons(self, rows: tuple[tuple[Button, ...], ...]) -> list[list[dict[str, str]]]:
        limits, out, count = self.limits, [], 0
        for row in rows:
            # No "share my number" on the web: the user types it.
            cells = [cell for cell in (self._button(b) for b in row if not b.request_contact) if cell]
            for start in range(0, len(cells), limits.max_buttons_per_row):
                chunk = cells[start:start + limits.max_buttons_per_row][:limits.max_buttons - count]
                if chunk:
                    out.append(chunk)
                    count += len(chunk)
        return out

    def _button(self, button: Button) -> dict[str, str] | None:
        label = button.label
        if len(label) > self.limits.max_button_label:
            label = label[:self.limits.max_button_label - 1] + "…"
        if button.data is not None:
            return {"label": label, "data": button.data}
        if button.url is not None:
            scheme = urlsplit(button.url).scheme.lower()
            if scheme in ("http", "https") or (not scheme and button.url.startswith("/")):
                return {"label": label, "url": button.url}
            log.warning("webchat drops a link button with scheme %r", scheme)
        return None


def _image_type(filename: str) -> str:
    extension = filename.rsplit(".", 1)[-1].lower()
    return {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif",
            "webp": "image/webp", "svg": "image/svg+xml"}.get(extension, "application/octet-stream")


# --- connections --------------------------------------------------------------------------------

# Sends one frame to one page; raises ConnectionError when the page has gone.
Send = Callable[[dict[str, Any]], Awaitable[None]]


class WebChatHub:
    """The pages open per chat in this process, so replies made outside a turn (a payment
    confirmation delivered by the outbox) reach them. A chat may be open in several tabs."""

    def __init__(self) -> None:
        self._open: dict[str, list[Send]] = {}

    def attach(self, chat_id: str, send: Send) -> None:
        self._open.setdefault(chat_id, []).append(send)

    def detach(self, chat_id: str, send: Send) -> None:
        senders = self._open.get(chat_id, [])
        if send in senders:
            senders.remove(send)
        if not senders:
            self._open.pop(chat_id, None)

    def is_open(self, chat_id: str) -> bool:
        return bool(self._open.get(chat_id))

    def open_chats(self) -> list[str]:
        return list(self._open)

    async def deliver(self, chat_id: str, frames: list[dict[str, Any]]) -> int:
        """Send frames to every open page of the chat; returns how many pages got them."""
        delivered = 0
        for send in list(self._open.get(chat_id, [])):
            try:
                for frame in frames:
                    await send(frame)
            except ConnectionError as error:  # that page went away mid-send; the others still get theirs
                log.info("webchat page of %s gone: %s", chat_id[:6], error)
                continue
            delivered += 1
        return delivered


class FrameBudget:
    """At most `limit` frames per `window` seconds on one socket: a page never needs more."""

    def __init__(self, limit: int = 30, window: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._started, self._count = clock(), 0

    def allow(self) -> bool:
        now = self.clock()
        if now - self._started >= self.window:
            self._started, self._count = now, 0
        self._count += 1
        return self._count <= self.limit
