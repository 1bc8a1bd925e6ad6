"""The web chat: `GET /chat` (the page), `WebSocket /chat/ws`, `GET /chat/files/{token}`, the page's assets.

The frame protocol and the rendering live in `bot/channels/webchat.py`; this module runs the
socket loop. Wire it with `install_webchat(app, conversation)`, at app build time or in the
lifespan once the conversation exists (it includes the router once and keeps what the routes
need on `app.state.webchat`).
"""
from __future__ import annotations

import asyncio
import hashlib
import html
import json
import logging
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

from bot.channels.webchat import (
    CHANNEL,
    EventHandler,
    FileCache,
    FrameBudget,
    FrameError,
    Send,
    WebChatAdapter,
    WebChatHub,
)
from bot.conversation.replies import Reply
from core.errors import N_
from core.i18n import DEFAULT_LANGUAGE, LANGUAGES, translator

log = logging.getLogger("fatoura.webchat")

STATIC = Path(__file__).resolve().parent / "static" / "webchat"
ASSETS = {"chat.js": "text/javascript; charset=utf-8", "chat.css": "text/css; charset=utf-8"}
SOCKET_PATH = "/chat/ws"
FILES_PATH = "/chat/files/"

# The page's own words; the conversation's words come in the frames.
CHROME = {
    "subtitle": N_("Your bills, in this chat"),
    "placeholder": N_("Type a message"),
    "send": N_("Send"),
    "reconnecting": N_("Reconnecting…"),
    "download": N_("Download"),
    "conversation": N_("Conversation"),
    "too_large": N_("This message is too long."),
    "slow_down": N_("Too many messages at once. Please wait a moment."),
    "failed": N_("This message could not be sent. Please try again."),
}
EXPIRED = N_("This download has expired. Ask for the document again in the chat.")

PAGE_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "connect-src 'self'; base-uri 'none'; form-action 'none'"),
    "Cache-Control": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}

router = APIRouter(include_in_schema=False)


@dataclass
class WebChat:
    """What the web chat routes need, kept on `app.state.webchat`."""

    conversation: EventHandler
    adapter: WebChatAdapter = field(default_factory=lambda: WebChatAdapter(files_url=FILES_PATH))
    hub: WebChatHub = field(default_factory=WebChatHub)

    async def push(self, chat_id: str, replies: list[Reply]) -> int:
        """Replies made outside a turn (the outbox) -> the chat's open pages in this process; how many got them."""
        return await self.hub.deliver(chat_id, self.adapter.render(replies))


def install_webchat(app: FastAPI, conversation: EventHandler, *, files: FileCache | None = None) -> WebChat:
    """Serve the web chat on `app`, answered by `conversation` (anything with `async handle(event)`)."""
    webchat = WebChat(conversation, WebChatAdapter(files, files_url=FILES_PATH))
    app.state.webchat = webchat
    if not _serves_webchat(app):
        app.include_router(router)
    return webchat


def _serves_webchat(app: FastAPI) -> bool:
    # FastAPI >= 0.16x keeps an included router as one entry; older versions copy its routes.
    return any(getattr(route, "original_router", None) is router or getattr(route, "path", None) == SOCKET_PATH
               for route in app.router.routes)


def _webchat(connection: Request | WebSocket) -> WebChat | None:
    return getattr(connection.app.state, "webchat", None)


# --- the page ---------------------------------------------------------------------------------


def accepted_language(header: str | None) -> str | None:
    """The first of our languages an Accept-Language header asks for, by q then order."""
    choices = []
    for position, part in enumerate((header or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        base = tag.strip().replace("_", "-").split("-", 1)[0].lower()
        if base in LANGUAGES and quality > 0:
            choices.append((-quality, position, base))
    return min(choices)[2] if choices else None


@lru_cache(maxsize=None)
def _asset(name: str) -> tuple[bytes, str]:
    content = (STATIC / name).read_bytes()
    return content, hashlib.sha256(content).hexdigest()[:12]


@lru_cache(maxsize=None)
def _template() -> str:
    return (STATIC / "chat.html").read_text(encoding="utf-8")


def _strings(language: str) -> dict[str, str]:
    t = translator(language)
    return {key: t._(msgid) for key, msgid in CHROME.items()}


def render_page(language: str, *, explicit: bool) -> str:
    t = translator(language)
    strings = _strings(language)
    config = {
        "lang": language,
        # The page sends navigator.language unless the URL chose one (?lang=ar).
        "language_hint": language if explicit else None,
        "socket": SOCKET_PATH,
        "rtl_languages": [code for code in LANGUAGES if translator(code).rtl],
        "strings": {code: _strings(code) for code in LANGUAGES},
    }
    # Inside <script type="application/json">: no "</script>" or "<!--" can appear.
    blob = json.dumps(config, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    values = {
        "lang": language,
        "dir": "rtl" if t.rtl else "ltr",
        "config": blob,
        "css": f"/chat/assets/chat.css?v={_asset('chat.css')[1]}",
        "js": f"/chat/assets/chat.js?v={_asset('chat.js')[1]}",
        **{key: html.escape(value) for key, value in strings.items()},
    }
    page = _template()
    for key, value in values.items():
        page = page.replace("{{" + key + "}}", value)
    return page


@router.get("/chat", response_class=HTMLResponse)
async def chat_page(request: Request, lang: str | None = None) -> HTMLResponse:
    explicit = (lang or "").lower() if (lang or "").lower() in LANGUAGES else None
    language = explicit or accepted_language(request.headers.get("accept-language")) or DEFAULT_LANGUAGE
    return HTMLResponse(render_page(language, explicit=explicit is not None), headers=PAGE_HEADERS)


@router.get("/chat/assets/{name}")
async def chat_asset(name: str) -> Response:
    if name not in ASSETS:
        return PlainTextResponse("not found", status_code=404)
    content, _ = _asset(name)
    return Response(content, media_type=ASSETS[name],
                    headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})


# --- downloads --------------------------------------------------------------------------------


def content_disposition(disposition: str, filename: str) -> str:
    """RFC 6266: an ASCII fallback name, and the exact UTF-8 name in filename*."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\;' else "_" for c in filename) or "download"
    value = f'{disposition}; filename="{fallback}"'
    if fallback != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return value


@router.get(FILES_PATH + "{token}")
async def chat_file(request: Request, token: str) -> Response:
    webchat = _webchat(request)
    cached = webchat.adapter.files.get(token) if webchat else None
    if cached is None:
        language = accepted_language(request.headers.get("accept-language")) or DEFAULT_LANGUAGE
        return PlainTextResponse(translator(language)._(EXPIRED), status_code=404)
    headers = {"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"}
    # Images show in the bubble; anything else (and SVG, which could script) is a download.
    inline = cached.mime_type.startswith("image/") and cached.mime_type != "image/svg+xml"
    headers["Content-Disposition"] = content_disposition("inline" if inline else "attachment", cached.filename)
    if inline:
        headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return Response(cached.content, media_type=cached.mime_type, headers=headers)


# --- the socket ---------------------------------------------------------------------------------


@router.websocket(SOCKET_PATH)
async def chat_socket(websocket: WebSocket) -> None:
    webchat = _webchat(websocket)
    if webchat is None:
        await websocket.close(code=1013)  # not wired yet: "try again later"
        return
    await websocket.accept()
    lock = asyncio.Lock()

    async def send(frame: dict[str, Any]) -> None:
        async with lock:  # replies of a turn and an outbox push must not interleave mid-frame
            try:
                await websocket.send_text(json.dumps(frame, ensure_ascii=False))
            except (WebSocketDisconnect, RuntimeError, OSError) as error:
                raise ConnectionError(f"webchat page gone: {error}") from error

    session: str | None = None
    budget = FrameBudget()
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            raw = message.get("text") if message.get("text") is not None else message.get("bytes")
            session = await _on_frame(webchat, raw, session, send, budget)
    except (ConnectionError, WebSocketDisconnect):
        return
    finally:
        if session is not None:
            webchat.hub.detach(session, send)


async def _on_frame(webchat: WebChat, raw: str | bytes | None, session: str | None, send: Send,
                    budget: FrameBudget) -> str | None:
    """Handle one frame; returns the session the socket speaks for (bound by its first valid frame)."""
    try:
        event = webchat.adapter.parse(raw)
        if session is not None and event.chat_id != session:
            raise FrameError("bad_session", "this socket already speaks for another session", event.update_id)
        if not budget.allow():
            raise FrameError("slow_down", "too many frames; wait a few seconds", event.update_id)
    except FrameError as error:
        await send(error.frame())
        return session
    if session is None:
        session = event.chat_id
        webchat.hub.attach(session, send)
    async def early(replies: list) -> None:
        for frame in webchat.adapter.render(replies, source_message_id=event.source_message_id):
            await send(frame)

    try:
        replies = await webchat.conversation.handle(event, early)
    except Exception:  # noqa: BLE001 - logged with its trace; the page is told and the socket lives on
        log.exception("%s conversation failed on a %s frame", CHANNEL, event.kind.value)
        await send(FrameError("unavailable", "the message could not be handled", event.update_id).frame())
        return session
    for frame in webchat.adapter.render(replies, source_message_id=event.source_message_id):
        await send(frame)
    await send({"type": "ack", "id": event.update_id})
    return session
