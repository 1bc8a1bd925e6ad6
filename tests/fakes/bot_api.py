"""A fake Telegram Bot API server that the real aiogram client talks to over HTTP.

It serves `/bot{token}/{method}` and `/file/bot{token}/{path}` on 127.0.0.1, keeps each private
chat's messages (with edits and inline keyboards), queues updates made by scripted users for
`getUpdates` (or pushes them to the webhook set with `setWebhook`), records every call the bot
makes, and refuses what Telegram refuses (lengths, callback data size, markup, parse errors,
unknown messages, "message is not modified") with Telegram's error JSON. A supergroup with
topics (`server.forum(chat_id)`) takes createForumTopic / closeForumTopic / deleteForumTopic and
messages with message_thread_id; its members post in a topic with `forum.post(thread, text, user_id=)`.

    server = FakeBotAPI(token="123:ABC"); await server.start()
    bot = Bot(server.token, session=AiohttpSession(api=TelegramAPIServer.from_base(server.base_url)))
    amina = server.user(1001, first_name="Amina", language_code="ar")
    amina.send_text("/start")
    [reply] = await amina.replies()
"""
from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, Callable
from urllib.parse import urlsplit

from aiohttp import ClientSession, ClientTimeout, web

TEXT_LIMIT, CAPTION_LIMIT, CALLBACK_DATA_LIMIT, ANSWER_TEXT_LIMIT = 4096, 1024, 64, 200
# Fields that are strings in the Bot API: every other form field holds a JSON value.
STRING_FIELDS = {
    "text", "caption", "parse_mode", "callback_query_id", "url", "secret_token", "action",
    "inline_message_id", "business_connection_id", "message_effect_id", "ip_address",
    "language_code", "description", "short_description", "name", "title", "emoji",
}
FILE_FIELDS = ("document", "photo", "audio", "video", "voice", "sticker", "animation", "thumbnail")
CHAT_ACTIONS = {
    "typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice",
    "upload_document", "choose_sticker", "find_location", "record_video_note",
    "upload_video_note",
}
BUTTON_ACTIONS = {
    "callback_data", "url", "web_app", "login_url", "switch_inline_query", "pay", "copy_text",
    "switch_inline_query_current_chat", "switch_inline_query_chosen_chat", "callback_game",
}
DEFAULT_ALLOWED = {"message_reaction", "message_reaction_count", "chat_member"}  # opt-in types
IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"RIFF", b"BM")
# 1x1 transparent PNG, for users who send a photo
TINY_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


class ApiError(Exception):
    def __init__(self, code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code, self.description, self.retry_after = code, description, retry_after

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.code, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def bad(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


@dataclass
class UploadedFile:
    filename: str
    content: bytes
    content_type: str = "application/octet-stream"
    file_id: str = ""
    file_path: str = ""


@dataclass
class Call:
    """One Bot API call made by the bot (getUpdates is not recorded)."""
    method: str
    params: dict[str, Any]
    files: dict[str, UploadedFile]
    chat_id: int | None
    result: Any = None
    error_code: int | None = None
    description: str | None = None
    at: float = field(default_factory=time.monotonic)

    @property
    def ok(self) -> bool:
        return self.error_code is None

    @property
    def text(self) -> str | None:
        """Text or caption as sent (with its markup)."""
        return self.params.get("text", self.params.get("caption"))

    @property
    def message_id(self) -> int | None:
        return self.result.get("message_id") if isinstance(self.result, dict) else None

    def __repr__(self) -> str:
        state = "ok" if self.ok else f"{self.error_code} {self.description}"
        return f"<Call {self.method} chat={self.chat_id} {state} text={self.text!r}>"


@dataclass
class FakeMessage:
    """Current state of one message in a private chat."""
    message_id: int
    chat: dict[str, Any]
    sender: dict[str, Any]
    date: int
    text: str | None = None  # plain text, after entity parsing
    caption: str | None = None
    reply_markup: dict[str, Any] | None = None  # inline keyboards only, as Telegram keeps them
    content: dict[str, Any] = field(default_factory=dict)  # document, photo, contact, ...
    raw_text: str | None = None  # text or caption as sent, with markup
    parse_mode: str | None = None
    edit_date: int | None = None
    deleted: bool = False

    @property
    def from_bot(self) -> bool:
        return bool(self.sender.get("is_bot"))

    @property
    def buttons(self) -> list[dict[str, Any]]:
        """Inline keyboard buttons, row after row."""
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return [button for row in rows for button in row]

    @property
    def button_texts(self) -> list[str]:
        return [b["text"] for b in self.buttons]

    @property
    def callback_data(self) -> list[str]:
        return [b["callback_data"] for b in self.buttons if "callback_data" in b]

    def to_api(self) -> dict[str, Any]:
        data: dict[str, Any] = {"message_id": self.message_id, "date": self.date,
                                "chat": self.chat, "from": self.sender}
        if self.text is not None:
            data["text"] = self.text
            if self.text.startswith("/") and not self.from_bot:
                data["entities"] = [{"type": "bot_command", "offset": 0,
                                     "length": len(self.text.split()[0])}]
        if self.caption is not None:
            data["caption"] = self.caption
        data.update(self.content)
        if self.reply_markup:
            data["reply_markup"] = self.reply_markup
        if self.edit_date:
            data["edit_date"] = self.edit_date
        return data


# ---------------------------------------------------------------- text and markup checks
class _HtmlText(HTMLParser):
    TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler",
            "a", "code", "pre", "blockquote", "tg-emoji", "tg-time"}
    NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.out: list[str] = []
        self.stack: list[str] = []
        self.error: str | None = None

    def fail(self, message: str) -> None:
        self.error = self.error or message

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.TAGS or (tag == "span" and dict(attrs).get("class") != "tg-spoiler"):
            self.fail(f'Unsupported start tag "{tag}"')
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack:
            self.fail(f'Unexpected end tag "{tag}"')
        elif self.stack[-1] != tag:
            self.fail(f'Can\'t find end tag corresponding to start tag "{self.stack[-1]}"')
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if "<" in data:
            self.fail('Unsupported start tag "" (escape "<" as &lt;)')
        self.out.append(data)

    def handle_entityref(self, name: str) -> None:
        self.out.append(self.NAMED.get(name, f"&{name}"))

    def handle_charref(self, name: str) -> None:
        self.out.append(chr(int(name[1:], 16) if name[:1] in "xX" else int(name)))

    def handle_comment(self, data: str) -> None:
        self.fail("Unsupported comment")

    def handle_decl(self, decl: str) -> None:
        self.fail("Unsupported declaration")


def _byte_offset(text: str, i: int) -> int:
    return len(text[:i].encode())


def _parse_markdown_v2(text: str) -> str:
    names = {"*": "Bold", "_": "Italic", "__": "Underline", "~": "Strikethrough",
             "||": "Spoiler", "[": "TextUrl"}
    out: list[str] = []
    stack: list[tuple[str, int]] = []
    i, line_start = 0, True
    while i < len(text):
        c = text[i]
        if c == "\\":
            if i + 1 >= len(text) or not 1 <= ord(text[i + 1]) <= 126:
                raise bad(f"can't parse entities: Character '\\' is reserved and must be escaped "
                          f"with the preceding '\\' at byte offset {_byte_offset(text, i)}")
            out.append(text[i + 1])
            i, line_start = i + 2, False
            continue
        if c == "`":
            fence = "```" if text.startswith("```", i) else "`"
            end = text.find(fence, i + len(fence))
            if end < 0:
                kind = "Pre" if fence == "```" else "Code"
                raise bad(f"can't parse entities: Can't find end of {kind} entity at byte offset "
                          f"{_byte_offset(text, i)}")
            body = text[i + len(fence):end]
            if fence == "```" and "\n" in body:
                body = body.split("\n", 1)[1]  # language line
            out.append(re.sub(r"\\(.)", r"\1", body))
            i, line_start = end + len(fence), False
            continue
        marker = next((m for m in ("__", "||", "*", "_", "~", "[") if text.startswith(m, i)), None)
        if marker:
            if stack and stack[-1][0] == marker and marker != "[":
                stack.pop()
            else:
                stack.append((marker, i))
            i += len(marker)
            continue
        if c == "]" and stack and stack[-1][0] == "[":
            stack.pop()
            if text.startswith("(", i + 1):
                end = text.find(")", i + 2)
                i = (end if end >= 0 else len(text)) + 1
            else:
                i += 1
            continue
        if c == ">" and line_start:
            i += 1
            continue
        if c in "_*[]()~`>#+-=|{}.!":
            raise bad(f"can't parse entities: Character '{c}' is reserved and must be escaped "
                      f"with the preceding '\\'")
        out.append(c)
        i, line_start = i + 1, c == "\n"
    if stack:
        marker, at = stack[-1]
        raise bad(f"can't parse entities: Can't find end of {names[marker]} entity at byte "
                  f"offset {_byte_offset(text, at)}")
    return "".join(out)


def _parse_markdown(text: str) -> str:
    out: list[str] = []
    opened: tuple[str, int] | None = None
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in "_*`[":
            out.append(text[i + 1])
            i += 2
        elif c in "*_`" and (opened is None or opened[0] == c):
            opened = (c, i) if opened is None else None
            i += 1
        elif c == "[" and opened is None and (m := re.match(r"\[([^\]]*)\]\(([^)]*)\)", text[i:])):
            out.append(m[1])
            i += m.end()
        else:
            out.append(c)
            i += 1
    if opened:
        raise bad("can't parse entities: Can't find end of the entity starting at byte offset "
                  f"{_byte_offset(text, opened[1])}")
    return "".join(out)


def visible_text(text: str, parse_mode: str | None) -> str:
    """The text Telegram shows once entities are parsed; raises ApiError like Telegram."""
    mode = (parse_mode or "").lower()
    if not mode:
        return text
    if mode == "html":
        parser = _HtmlText()
        parser.feed(text)
        parser.close()
        if parser.stack and not parser.error:
            parser.fail(f'Can\'t find end tag corresponding to start tag "{parser.stack[-1]}"')
        if parser.error:
            raise bad(f"can't parse entities: {parser.error}")
        return "".join(parser.out)
    if mode == "markdownv2":
        return _parse_markdown_v2(text)
    if mode == "markdown":
        return _parse_markdown(text)
    raise bad(f"unsupported parse_mode {parse_mode!r}")


def _check_url(url: Any) -> None:
    parts = urlsplit(str(url))
    host = parts.hostname or ""
    is_ip = bool(re.fullmatch(r"[\d.]+|\[?[0-9a-f:]+\]?", host))
    if parts.scheme == "tg" or (parts.scheme in ("http", "https") and ("." in host or is_ip)
                                and host != "localhost" and not host.endswith(".")):
        return
    raise bad(f"inline keyboard button URL '{url}' is invalid: Wrong HTTP URL")


def check_markup(markup: Any) -> dict[str, Any] | None:
    """Validate reply_markup; return it if it is an inline keyboard (the kind a message keeps)."""
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise bad("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" in markup:
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise bad("field \"inline_keyboard\" of the InlineKeyboardMarkup must be an Array of Arrays")
        if sum(len(r) for r in rows) > 100:
            raise bad("reply markup is too long")
        for button in itertools.chain.from_iterable(rows):
            if not isinstance(button, dict) or not str(button.get("text", "")).strip():
                raise bad("inline keyboard button text must be non-empty")
            actions = BUTTON_ACTIONS & button.keys()
            if not actions:
                raise bad("text buttons are unallowed in the inline keyboard")
            if len(actions) > 1:
                raise bad(f"can't parse inline keyboard button: several actions {sorted(actions)}")
            if "callback_data" in button:
                size = len(str(button["callback_data"]).encode())
                if not 1 <= size <= CALLBACK_DATA_LIMIT:
                    raise bad("BUTTON_DATA_INVALID")
            if "url" in button:
                _check_url(button["url"])
        return markup if rows else None
    if "keyboard" in markup:
        rows = markup["keyboard"]
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise bad("field \"keyboard\" of the ReplyKeyboardMarkup must be an Array of Arrays")
        for button in itertools.chain.from_iterable(rows):
            text = button if isinstance(button, str) else (button or {}).get("text", "")
            if not str(text).strip():
                raise bad("keyboard button text must be non-empty")
        return None
    if markup.get("remove_keyboard") or markup.get("force_reply"):
        return None
    raise bad("can't find field \"inline_keyboard\", \"keyboard\", \"remove_keyboard\" or \"force_reply\"")


# ---------------------------------------------------------------- scripted users
class FakeUser:
    """A Telegram user in a private chat with the bot; chat id == user id."""

    def __init__(self, server: FakeBotAPI, chat_id: int, first_name: str,
                 last_name: str | None, username: str | None, language_code: str | None) -> None:
        self.server, self.id = server, chat_id
        self.first_name, self.last_name = first_name, last_name
        self.username, self.language_code = username, language_code
        self.blocked = False  # the bot gets 403 "bot was blocked by the user"
        self._mark = 0  # len(server.sent(id)) at this user's last action

    def api_user(self) -> dict[str, Any]:
        data = {"id": self.id, "is_bot": False, "first_name": self.first_name,
                "last_name": self.last_name, "username": self.username,
                "language_code": self.language_code}
        return {k: v for k, v in data.items() if v is not None}

    def api_chat(self) -> dict[str, Any]:
        data = {"id": self.id, "type": "private", "first_name": self.first_name,
                "last_name": self.last_name, "username": self.username}
        return {k: v for k, v in data.items() if v is not None}

    # -- updates (make_* builds one without queueing it, e.g. to POST it to a webhook)
    def make_message_update(self, text: str | None = None, **content: Any) -> dict[str, Any]:
        self._mark = len(self.server.sent(self.id))
        msg = self.server._add_message(self.id, self.api_user(), text=text,
                                       caption=content.pop("caption", None), content=content)
        return self.server._make_update("message", msg.to_api())

    def make_text_update(self, text: str) -> dict[str, Any]:
        return self.make_message_update(text)

    def make_contact_update(self, phone: str, user_id: int | None = None,
                            first_name: str | None = None) -> dict[str, Any]:
        contact = {"phone_number": phone, "first_name": first_name or self.first_name,
                   "user_id": self.id if user_id is None else user_id}
        return self.make_message_update(contact=contact)

    def make_callback_update(self, message: FakeMessage | int, data: str,
                             check: bool = True) -> dict[str, Any]:
        msg = self.server.message(self.id, message if isinstance(message, int) else message.message_id)
        if check and data not in msg.callback_data:
            raise AssertionError(f"message {msg.message_id} has no button with callback_data "
                                 f"{data!r}; it has {msg.callback_data}")
        self._mark = len(self.server.sent(self.id))
        query_id = str(secrets.randbits(63))
        self.server.callbacks[query_id] = {"chat_id": self.id, "data": data, "answer": None,
                                           "message_id": msg.message_id}
        return self.server._make_update("callback_query", {
            "id": query_id, "from": self.api_user(), "message": msg.to_api(),
            "chat_instance": str(self.id * 7), "data": data})

    def make_edited_text_update(self, message: FakeMessage | int, text: str) -> dict[str, Any]:
        msg = self.server.message(self.id, message if isinstance(message, int) else message.message_id)
        msg.text, msg.edit_date = text, int(time.time())
        return self.server._make_update("edited_message", msg.to_api())

    # -- actions: build the update and queue it for getUpdates (or the webhook)
    def send_text(self, text: str) -> dict[str, Any]:
        return self.server.enqueue(self.make_text_update(text))

    def press(self, message: FakeMessage | int, data: str, check: bool = True) -> dict[str, Any]:
        """Tap the inline button carrying `data`; returns the update (query id in
        update["callback_query"]["id"])."""
        return self.server.enqueue(self.make_callback_update(message, data, check))

    def press_button(self, message: FakeMessage | int, label: str) -> dict[str, Any]:
        """Tap the only inline callback button whose text contains `label`."""
        msg = self.server.message(self.id, message if isinstance(message, int) else message.message_id)
        found = [b for b in msg.buttons if label in b["text"] and "callback_data" in b]
        if len(found) != 1:
            raise AssertionError(f"{len(found)} buttons match {label!r} in {msg.button_texts}")
        return self.press(msg, found[0]["callback_data"])

    def share_contact(self, phone: str, user_id: int | None = None) -> dict[str, Any]:
        """Share a contact (own by default, like the request_contact button)."""
        return self.server.enqueue(self.make_contact_update(phone, user_id))

    def send_photo(self, data: bytes = TINY_PNG, caption: str | None = None) -> dict[str, Any]:
        f = self.server._store_file(UploadedFile("photo.png", data, "image/png"), "photos")
        sizes = [{"file_id": f.file_id, "file_unique_id": f.file_id[-8:], "width": 1,
                  "height": 1, "file_size": len(data)}]
        return self.server.enqueue(self.make_message_update(photo=sizes, caption=caption))

    def send_document(self, data: bytes, filename: str = "file.pdf",
                      mime_type: str = "application/pdf",
                      caption: str | None = None) -> dict[str, Any]:
        f = self.server._store_file(UploadedFile(filename, data, mime_type), "documents")
        return self.server.enqueue(self.make_message_update(
            document=self.server._document_json(f), caption=caption))

    def send_voice(self, duration: int = 3) -> dict[str, Any]:
        f = self.server._store_file(UploadedFile("voice.ogg", b"OggS" + bytes(60), "audio/ogg"), "voice")
        return self.server.enqueue(self.make_message_update(voice={
            "file_id": f.file_id, "file_unique_id": f.file_id[-8:], "duration": duration,
            "mime_type": "audio/ogg", "file_size": 64}))

    def send_sticker(self, emoji: str = "👍") -> dict[str, Any]:
        return self.server.enqueue(self.make_message_update(sticker={
            "file_id": "sticker-" + secrets.token_hex(4), "file_unique_id": "st1", "type": "regular",
            "width": 512, "height": 512, "is_animated": False, "is_video": False, "emoji": emoji}))

    def send_location(self, latitude: float = 33.5731, longitude: float = -7.5898) -> dict[str, Any]:
        return self.server.enqueue(self.make_message_update(
            location={"latitude": latitude, "longitude": longitude}))

    def edit_text(self, message: FakeMessage | int, text: str) -> dict[str, Any]:
        return self.server.enqueue(self.make_edited_text_update(message, text))

    # -- reading the chat
    @property
    def messages(self) -> list[FakeMessage]:
        return self.server.messages(self.id)

    @property
    def last_bot_message(self) -> FakeMessage | None:
        return next((m for m in reversed(self.messages) if m.from_bot), None)

    async def replies(self, count: int = 1, timeout: float = 5.0) -> list[Call]:
        """Successful send*/edit*/deleteMessage calls to this chat since this user's last
        action; waits until there are at least `count` of them."""
        def pick(calls: list[Call]) -> list[Call] | None:
            found = [c for c in calls[self._mark:] if c.ok and c.method != "sendChatAction"
                     and c.method.startswith(("send", "edit", "delete", "copy", "forward"))]
            return found if len(found) >= count else None
        return await self.server.wait_for(pick, chat_id=self.id, timeout=timeout)


class FakeForum:
    """A supergroup with topics (forum) where the bot is an admin; members post in its topics."""

    def __init__(self, server: FakeBotAPI, chat_id: int, title: str) -> None:
        self.server, self.id, self.title = server, chat_id, title
        self.topics: dict[int, dict[str, Any]] = {}  # thread id -> name, closed, deleted

    def api_chat(self) -> dict[str, Any]:
        return {"id": self.id, "type": "supergroup", "title": self.title, "is_forum": True}

    def post(self, thread_id: int, text: str, *, user_id: int, first_name: str = "Agent") -> dict[str, Any]:
        """A member writes `text` in a topic; queued for getUpdates (or the webhook)."""
        member = {"id": user_id, "is_bot": False, "first_name": first_name}
        msg = self.server._add_message(self.id, member, text=text,
                                       content={"message_thread_id": thread_id, "is_topic_message": True})
        return self.server.enqueue(self.server._make_update("message", msg.to_api()))

    def thread_messages(self, thread_id: int) -> list[FakeMessage]:
        return [m for m in self.server.messages(self.id) if m.content.get("message_thread_id") == thread_id]


# ---------------------------------------------------------------- the server
class FakeBotAPI:
    def __init__(self, token: str = "123456:TEST-token", *, bot_username: str = "fatoura_test_bot",
                 bot_name: str = "Fatoura", auto_users: bool = False) -> None:
        self.token = token
        self.auto_users = auto_users  # a send to an unknown chat id creates that user (load tests)
        self.throttled = 0  # 429 answers given by the rate limits (injected failures not counted)
        self.bot_user = {"id": int(token.split(":")[0]), "is_bot": True, "first_name": bot_name,
                         "username": bot_username, "can_join_groups": False,
                         "can_read_all_group_messages": False, "supports_inline_queries": False}
        self.base_url = ""
        self.users: dict[int, FakeUser] = {}
        self.forums: dict[int, FakeForum] = {}
        self.calls: list[Call] = []
        self.callbacks: dict[str, dict[str, Any]] = {}  # query id -> chat_id, data, answer
        self.webhook: dict[str, Any] | None = None  # url, secret_token, ...
        self.webhook_deliveries: list[tuple[int, int | str]] = []  # (update_id, status/error)
        self.commands: dict[tuple[str, str], list[dict[str, Any]]] = {}  # (scope, lang) -> list
        self.pending: deque[dict[str, Any]] = deque()  # updates not yet confirmed
        self.allowed_updates: list[str] | None = None
        self.poll_count = 0
        self._chats: dict[int, dict[int, FakeMessage]] = {}
        self._reply_keyboards: dict[int, dict[str, Any] | None] = {}
        self._files: dict[str, UploadedFile] = {}
        self._next_update_id = 100_000
        self._poll_generation = 0
        self._failures: list[dict[str, Any]] = []
        self._rate: dict[str, Any] | None = None
        self._sent_at: deque[tuple[float, int | None]] = deque()
        self._group_sent_at: deque[tuple[float, int | None]] = deque()
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._client: ClientSession | None = None
        self._methods: dict[str, tuple[str, Callable[..., Any]]] = {
            name.lower(): (name, getattr(self, "_m_" + name)) for name in (
                "getMe", "getUpdates", "setWebhook", "deleteWebhook", "getWebhookInfo",
                "sendMessage", "editMessageText", "editMessageReplyMarkup", "editMessageCaption",
                "answerCallbackQuery", "sendDocument", "sendPhoto", "deleteMessage",
                "sendChatAction", "setMyCommands", "getMyCommands", "deleteMyCommands",
                "getChat", "getChatMember", "getFile",
                "createForumTopic", "closeForumTopic", "deleteForumTopic")}
        for name in ("setMyDescription", "setMyShortDescription", "setMyName", "setChatMenuButton"):
            self._methods[name.lower()] = (name, self._m_accept)

    # -- lifecycle
    async def start(self, port: int = 0) -> FakeBotAPI:
        app = web.Application(client_max_size=60 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        app.router.add_get("/_fake/sent", self._sent_report)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1,
                                     access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        self._closing = True
        self._notify()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client:
            await self._client.close()
        if self._runner:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeBotAPI:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- scripting
    def user(self, chat_id: int, first_name: str = "Test", last_name: str | None = None,
             username: str | None = None, language_code: str | None = "fr") -> FakeUser:
        if chat_id not in self.users:
            self.users[chat_id] = FakeUser(self, chat_id, first_name, last_name, username,
                                           language_code)
            self._chats[chat_id] = {}
        return self.users[chat_id]

    def forum(self, chat_id: int = -1001234567890, title: str = "Support") -> FakeForum:
        """A supergroup with topics, the bot an admin of it (chat ids of supergroups are negative)."""
        if chat_id not in self.forums:
            self.forums[chat_id] = FakeForum(self, chat_id, title)
            self._chats[chat_id] = {}
        return self.forums[chat_id]

    def enqueue(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue an update for getUpdates, or push it to the webhook if one is set."""
        self.pending.append(update)
        if self.webhook:
            self._spawn(self._deliver(update))
        self._notify()
        return update

    def sent(self, chat_id: int | None = None, method: str | None = None) -> list[Call]:
        """Recorded calls (failed ones included, see Call.ok), optionally for one chat/method."""
        return [c for c in self.calls if (chat_id is None or c.chat_id == chat_id)
                and (method is None or c.method == method)]

    def errors(self) -> list[Call]:
        return [c for c in self.calls if not c.ok]

    def messages(self, chat_id: int, include_deleted: bool = False) -> list[FakeMessage]:
        return [m for _, m in sorted(self._chats.get(chat_id, {}).items())
                if include_deleted or not m.deleted]

    def message(self, chat_id: int, message_id: int) -> FakeMessage:
        return self._chats[chat_id][message_id]

    def reply_keyboard(self, chat_id: int) -> dict[str, Any] | None:
        """The reply keyboard shown in the chat (None if none or removed)."""
        return self._reply_keyboards.get(chat_id)

    def unanswered_callbacks(self) -> list[str]:
        return [qid for qid, q in self.callbacks.items() if q["answer"] is None]

    def file(self, file_id: str) -> UploadedFile:
        return self._files[file_id]

    async def wait_for(self, predicate: Callable[[list[Call]], Any], *,
                       chat_id: int | None = None, timeout: float = 5.0) -> Any:
        """Wait until predicate(calls) is truthy (calls of one chat if chat_id); return it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            changed = self._changed
            calls = self.sent(chat_id) if chat_id is not None else list(self.calls)
            if value := predicate(calls):
                return value
            if loop.time() >= deadline:
                raise AssertionError(f"condition not met within {timeout}s; calls: {calls[-10:]}")
            try:
                await asyncio.wait_for(changed.wait(), deadline - loop.time())
            except asyncio.TimeoutError:
                pass

    async def settle(self, quiet: float = 0.2, timeout: float = 5.0) -> None:
        """Wait until no call has been recorded for `quiet` seconds."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            count = len(self.calls)
            await asyncio.sleep(quiet)
            if len(self.calls) == count:
                return

    def fail_next(self, method: str, *, error_code: int = 429, description: str | None = None,
                  retry_after: int | None = None, times: int = 1,
                  chat_id: int | None = None) -> None:
        """Make the next `times` calls of `method` fail (429 gets retry_after, default 1)."""
        if error_code == 429 and retry_after is None:
            retry_after = 1
        defaults = {429: f"Too Many Requests: retry after {retry_after}",
                    403: "Forbidden: bot was blocked by the user", 400: "Bad Request: injected",
                    500: "Internal Server Error"}
        self._failures.append({"method": method.lower(), "chat_id": chat_id, "times": times,
                               "error": ApiError(error_code, description or defaults.get(
                                   error_code, "injected error"), retry_after)})

    def rate_limit(self, per_chat: int | None = 1, overall: int | None = 30,
                   window: float = 1.0, per_group: int | None = 20, group_window: float = 60.0) -> None:
        """Answer 429 (with retry_after) to send*/edit* calls beyond `per_chat` per chat or
        `overall` per `window` (Telegram: 1 per chat and 30 per second), or beyond `per_group` per
        `group_window` in a group chat (negative id; Telegram: 20 per minute)."""
        self._rate = {"per_chat": per_chat, "overall": overall, "window": window,
                      "per_group": per_group, "group_window": group_window}

    async def post_update(self, url: str, update: dict[str, Any],
                          secret_token: str | None = None, timeout: float = 10) -> tuple[int, str]:
        """POST an update to a webhook like Telegram does; a method in a 2xx JSON answer is
        executed. Returns (status, body)."""
        headers = {"Content-Type": "application/json"}
        if secret_token:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret_token
        self._client = self._client or ClientSession()
        async with self._client.post(url, data=json.dumps(update), headers=headers,
                                      timeout=ClientTimeout(total=timeout)) as resp:
            status, body = resp.status, await resp.text()
        if 200 <= status < 300 and body.startswith("{"):
            payload = json.loads(body)
            if isinstance(payload, dict) and "method" in payload:
                params = {k: v for k, v in payload.items() if k != "method"}
                await self._execute(payload["method"], self._decode(params), {})
        return status, body

    # -- internals
    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, update: dict[str, Any]) -> None:
        hook = self.webhook or {}
        try:
            status, _ = await self.post_update(hook["url"], update, hook.get("secret_token"))
        except Exception as exc:  # noqa: BLE001 - recorded for the test to inspect
            status = f"{type(exc).__name__}: {exc}"
        self.webhook_deliveries.append((update["update_id"], status))
        if isinstance(status, int) and 200 <= status < 300 and update in self.pending:
            self.pending.remove(update)
        self._notify()

    def _make_update(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        self._next_update_id += 1
        return {"update_id": self._next_update_id, kind: payload}

    def _add_message(self, chat_id: int, sender: dict[str, Any], **fields: Any) -> FakeMessage:
        chat = self._chats[chat_id]
        where = self.forums[chat_id] if chat_id in self.forums else self.users[chat_id]
        msg = FakeMessage(message_id=max(chat, default=0) + 1, chat=where.api_chat(),
                          sender=sender, date=int(time.time()), **fields)
        chat[msg.message_id] = msg
        return msg

    def _store_file(self, upload: UploadedFile, folder: str) -> UploadedFile:
        upload.file_id = f"{folder[:3].upper()}-{secrets.token_urlsafe(12)}"
        ext = upload.filename.rsplit(".", 1)[-1] if "." in upload.filename else "bin"
        upload.file_path = f"{folder}/file_{len(self._files)}.{ext}"
        self._files[upload.file_id] = upload
        return upload

    @staticmethod
    def _document_json(f: UploadedFile) -> dict[str, Any]:
        return {"file_id": f.file_id, "file_unique_id": f.file_id[-8:], "file_name": f.filename,
                "mime_type": f.content_type, "file_size": len(f.content)}

    @staticmethod
    def _decode(raw: dict[str, Any]) -> dict[str, Any]:
        params = {}
        for key, value in raw.items():
            if isinstance(value, str) and key not in STRING_FIELDS:
                try:
                    value = json.loads(value)
                except ValueError:
                    pass
            params[key] = value
        return params

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response(ApiError(401, "Unauthorized").payload(), status=401)
        raw: dict[str, Any] = dict(request.query)
        parts: dict[str, UploadedFile] = {}
        if request.content_type == "application/json":
            raw.update(await request.json())
        elif request.method == "POST" and request.can_read_body:
            for key, value in (await request.post()).items():
                if isinstance(value, web.FileField):
                    parts[key] = UploadedFile(value.filename, value.file.read(), value.content_type)
                else:
                    raw[key] = value
        params = self._decode(raw)
        files = {}
        for key in FILE_FIELDS:
            value = params.get(key)
            if isinstance(value, str) and value.startswith("attach://") and value[9:] in parts:
                files[key] = parts[value[9:]]
            elif key in parts:
                files[key] = parts[key]
        status, body = await self._execute(request.match_info["method"], params, files)
        return web.json_response(body, status=status)

    async def _execute(self, method: str, params: dict[str, Any],
                       files: dict[str, UploadedFile]) -> tuple[int, dict[str, Any]]:
        if method.lower() not in self._methods:
            return 404, ApiError(404, "Not Found").payload()
        name, handler = self._methods[method.lower()]
        call = None
        if name != "getUpdates":
            chat_id = params.get("chat_id")
            if name == "answerCallbackQuery":
                chat_id = self.callbacks.get(str(params.get("callback_query_id")), {}).get("chat_id")
            call = Call(name, params, files, chat_id if isinstance(chat_id, int) else None)
            self.calls.append(call)
        try:
            if call:
                self._check_failures_and_rate(call)
            result = handler(params, files)
            if asyncio.iscoroutine(result):
                result = await result
        except ApiError as err:
            if call:
                call.error_code, call.description = err.code, err.description
                self._notify()
            return err.code, err.payload()
        if call:
            call.result = result
            if self._rate and name.startswith(("send", "edit")) and name != "sendChatAction":
                self._sent_at.append((time.monotonic(), call.chat_id))
                if call.chat_id is not None and call.chat_id < 0:
                    self._group_sent_at.append((time.monotonic(), call.chat_id))
            self._notify()
        return 200, {"ok": True, "result": result}

    def _check_failures_and_rate(self, call: Call) -> None:
        for failure in self._failures:
            if failure["method"] == call.method.lower() and failure["chat_id"] in (None, call.chat_id):
                failure["times"] -= 1
                if failure["times"] <= 0:
                    self._failures.remove(failure)
                raise failure["error"]
        if not self._rate or not call.method.startswith(("send", "edit")) \
                or call.method == "sendChatAction":
            return
        now, window, group_window = time.monotonic(), self._rate["window"], self._rate["group_window"]
        while self._sent_at and self._sent_at[0][0] <= now - window:
            self._sent_at.popleft()
        while self._group_sent_at and self._group_sent_at[0][0] <= now - group_window:
            self._group_sent_at.popleft()
        checks: list[tuple[int | None, list[float], float]] = []
        if call.chat_id is not None and call.chat_id < 0:
            checks.append((self._rate["per_group"],
                           [t for t, chat in self._group_sent_at if chat == call.chat_id], group_window))
        else:
            checks.append((self._rate["per_chat"], [t for t, chat in self._sent_at if chat == call.chat_id], window))
        checks.append((self._rate["overall"], [t for t, _ in self._sent_at], window))
        for limit, times, span in checks:
            if limit is not None and len(times) >= limit:
                wait = max(1, math.ceil(times[-limit] + span - now))
                self.throttled += 1
                raise ApiError(429, f"Too Many Requests: retry after {wait}", wait)

    def _chat(self, params: dict[str, Any]) -> int:
        chat_id = params.get("chat_id")
        if chat_id is None or chat_id == "":
            raise bad("chat_id is empty")
        if isinstance(chat_id, int) and chat_id in self.forums:
            thread = params.get("message_thread_id")
            topic = self.forums[chat_id].topics.get(thread) if thread is not None else None
            if thread is not None and (topic is None or topic["deleted"]):
                raise bad("message thread not found")
            if topic is not None and topic["closed"]:
                raise bad("TOPIC_CLOSED")
            return chat_id
        if isinstance(chat_id, int) and chat_id not in self.users and self.auto_users:
            self.user(chat_id, first_name=f"User {chat_id}")
        if not isinstance(chat_id, int) or chat_id not in self.users:
            raise bad("chat not found")
        if self.users[chat_id].blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return chat_id

    def _target(self, params: dict[str, Any], action: str) -> FakeMessage:
        if "inline_message_id" in params:
            raise bad("inline messages are not supported by the fake server")
        chat_id = self._chat(params)
        msg = self._chats[chat_id].get(params.get("message_id"))  # type: ignore[arg-type]
        if msg is None or msg.deleted:
            raise bad(f"message to {action} not found")
        if action == "edit" and not msg.from_bot:
            raise bad("message can't be edited")
        return msg

    def _visible(self, text: Any, parse_mode: Any, limit: int, what: str) -> str:
        plain = visible_text(str(text), parse_mode)
        if len(plain) > limit:
            raise bad(f"message {what} too long")
        return plain

    def _new_bot_message(self, params: dict[str, Any], **fields: Any) -> dict[str, Any]:
        chat_id = self._chat(params)
        markup = params.get("reply_markup")
        inline = check_markup(markup)
        reply_to = (params.get("reply_parameters") or {}).get("message_id") \
            or params.get("reply_to_message_id")
        if reply_to and reply_to not in self._chats[chat_id]:
            raise bad("message to be replied not found")
        if isinstance(markup, dict) and not inline and "force_reply" not in markup:
            self._reply_keyboards[chat_id] = markup if "keyboard" in markup else None
        if params.get("message_thread_id") is not None and chat_id in self.forums:
            fields["content"] = {**fields.get("content", {}), "message_thread_id": params["message_thread_id"],
                                 "is_topic_message": True}
        msg = self._add_message(chat_id, self.bot_user, reply_markup=inline, **fields)
        return msg.to_api()

    # -- methods
    def _m_getMe(self, p: dict[str, Any], f: Any) -> dict[str, Any]:
        return self.bot_user

    async def _m_getUpdates(self, p: dict[str, Any], f: Any) -> list[dict[str, Any]]:
        if self.webhook:
            raise ApiError(409, "Conflict: can't use getUpdates method while webhook is active; "
                                "use deleteWebhook to delete the webhook first")
        self.poll_count += 1
        self._poll_generation += 1
        generation = self._poll_generation
        self._notify()  # terminates an older long poll
        if p.get("allowed_updates") is not None:
            self.allowed_updates = p["allowed_updates"]
        offset, limit = int(p.get("offset") or 0), int(p.get("limit") or 100)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(float(p.get("timeout") or 0), 50)
        while True:
            changed = self._changed
            if generation != self._poll_generation:
                raise ApiError(409, "Conflict: terminated by other getUpdates request; make sure "
                                    "that only one bot instance is running")
            while self.pending and (self.pending[0]["update_id"] < offset
                                    or not self._allowed(self.pending[0])):
                self.pending.popleft()
            ready = [u for u in self.pending if self._allowed(u)][:limit]
            if ready or self._closing or loop.time() >= deadline:
                return ready
            try:
                await asyncio.wait_for(changed.wait(), deadline - loop.time())
            except asyncio.TimeoutError:
                pass

    def _allowed(self, update: dict[str, Any]) -> bool:
        kind = next(k for k in update if k != "update_id")
        return kind in self.allowed_updates if self.allowed_updates else kind not in DEFAULT_ALLOWED

    def _m_setWebhook(self, p: dict[str, Any], f: Any) -> bool:
        url = str(p.get("url") or "")
        if not url:
            return self._m_deleteWebhook(p, f)
        parts = urlsplit(url)
        local = parts.hostname in ("127.0.0.1", "localhost")
        if parts.scheme != "https" and not (parts.scheme == "http" and local):
            raise bad("bad webhook: An HTTPS URL must be provided for webhook")
        secret = p.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            raise bad("secret token contains unallowed characters")
        if p.get("drop_pending_updates"):
            self.pending.clear()
        if p.get("allowed_updates") is not None:
            self.allowed_updates = p["allowed_updates"]
        self.webhook = {"url": url, "secret_token": secret,
                        "max_connections": p.get("max_connections", 40)}
        self._notify()
        return True

    def _m_deleteWebhook(self, p: dict[str, Any], f: Any) -> bool:
        self.webhook = None
        if p.get("drop_pending_updates"):
            self.pending.clear()
        return True

    def _m_getWebhookInfo(self, p: dict[str, Any], f: Any) -> dict[str, Any]:
        info: dict[str, Any] = {"url": "", "has_custom_certificate": False,
                                "pending_update_count": len(self.pending)}
        if self.webhook:
            info.update(url=self.webhook["url"], max_connections=self.webhook["max_connections"])
            if self.allowed_updates:
                info["allowed_updates"] = self.allowed_updates
        return info

    def _m_sendMessage(self, p: dict[str, Any], f: Any) -> dict[str, Any]:
        if p.get("text") in (None, ""):
            raise bad("message text is empty")
        plain = self._visible(p["text"], p.get("parse_mode"), TEXT_LIMIT, "is")
        if not plain.strip():
            raise bad("message text is empty")
        return self._new_bot_message(p, text=plain, raw_text=p["text"], parse_mode=p.get("parse_mode"))

    def _media_message(self, p: dict[str, Any], f: dict[str, UploadedFile], kind: str) -> dict[str, Any]:
        caption = None
        if p.get("caption"):
            caption = self._visible(p["caption"], p.get("parse_mode"), CAPTION_LIMIT, "caption is")
        upload = f.get(kind)
        if upload is None:
            ref = p.get(kind)
            if not ref:
                raise bad(f"there is no {kind} in the request")
            if str(ref) not in self._files and not str(ref).startswith(("http://", "https://")):
                raise bad("wrong file identifier/HTTP URL specified")
            upload = self._files.get(str(ref)) or UploadedFile(str(ref).rsplit("/", 1)[-1], b"")
        elif not upload.content:
            raise bad("file must be non-empty")
        elif kind == "photo" and not upload.content.startswith(IMAGE_MAGIC):
            raise bad("IMAGE_PROCESS_FAILED")
        if not upload.file_id:
            self._store_file(upload, kind + "s")
        if kind == "photo":
            content: Any = [{"file_id": upload.file_id, "file_unique_id": upload.file_id[-8:],
                             "width": 320, "height": 320, "file_size": len(upload.content)}]
        else:
            content = self._document_json(upload)
        return self._new_bot_message(p, caption=caption, raw_text=p.get("caption"),
                                     parse_mode=p.get("parse_mode"), content={kind: content})

    def _m_sendDocument(self, p: dict[str, Any], f: dict[str, UploadedFile]) -> dict[str, Any]:
        return self._media_message(p, f, "document")

    def _m_sendPhoto(self, p: dict[str, Any], f: dict[str, UploadedFile]) -> dict[str, Any]:
        return self._media_message(p, f, "photo")

    def _edit(self, msg: FakeMessage, markup: Any, **changes: Any) -> dict[str, Any]:
        inline = check_markup(markup)
        if all(getattr(msg, k) == v for k, v in changes.items()) and msg.reply_markup == inline:
            raise bad("message is not modified: specified new message content and reply markup "
                      "are exactly the same as a current content and reply markup of the message")
        for key, value in changes.items():
            setattr(msg, key, value)
        msg.reply_markup, msg.edit_date = inline, int(time.time())
        return msg.to_api()

    def _m_editMessageText(self, p: dict[str, Any], f: Any) -> dict[str, Any]:
        msg = self._target(p, "edit")
        if msg.text is None:
            raise bad("there is no text in the message to edit")
        if p.get("text") in (None, ""):
            raise bad("message text is empty")
        plain = self._visible(p["text"], p.get("parse_mode"), TEXT_LIMIT, "is")
        return self._edit(msg, p.get("reply_markup"), text=plain, raw_text=p["text"])

    def _m_editMessageCaption(self, p: dict[str, Any], f: Any) -> dict[str, Any]:
        msg = self._target(p, "edit")
        caption = self._visible(p.get("caption") or "", p.get("parse_mode"), CAPTION_LIMIT, "caption is")
        return self._edit(msg, p.get("reply_markup"), caption=caption or None)

    def _m_editMessageReplyMarkup(self, p: dict[str, Any], f: Any) -> dict[str, Any]:
        return self._edit(self._target(p, "edit"), p.get("reply_markup"))

    def _m_deleteMessage(self, p: dict[str, Any], f: Any) -> bool:
        self._target(p, "delete").deleted = True
        return True

    def _m_answerCallbackQuery(self, p: dict[str, Any], f: Any) -> bool:
        query = self.callbacks.get(str(p.get("callback_query_id")))
        if query is None or query["answer"] is not None:
            raise bad("query is too old and response timeout expired or query ID is invalid")
        if len(str(p.get("text") or "")) > ANSWER_TEXT_LIMIT:
            raise bad("MESSAGE_TOO_LONG")
        query["answer"] = p
        return True

    def _m_sendChatAction(self, p: dict[str, Any], f: Any) -> bool:
        self._chat(p)
        if p.get("action") not in CHAT_ACTIONS:
            raise bad("wrong parameter action in request")
        return True

    def _m_setMyCommands(self, p: dict[str, Any], f: Any) -> bool:
        commands = p.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise bad("commands must be a list of at most 100 BotCommand")
        for cmd in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", str(cmd.get("command", ""))):
                raise bad("BOT_COMMAND_INVALID")
            if not 1 <= len(str(cmd.get("description", ""))) <= 256:
                raise bad("command description must be 1-256 characters")
        self.commands[self._commands_key(p)] = commands
        return True

    @staticmethod
    def _commands_key(p: dict[str, Any]) -> tuple[str, str]:
        return json.dumps(p.get("scope") or {"type": "default"}), p.get("language_code") or ""

    def _m_getMyCommands(self, p: dict[str, Any], f: Any) -> list[dict[str, Any]]:
        return self.commands.get(self._commands_key(p), [])

    def _m_deleteMyCommands(self, p: dict[str, Any], f: Any) -> bool:
        self.commands.pop(self._commands_key(p), None)
        return True

    def _m_getChat(self, p: dict[str, Any], f: Any) -> dict[str, Any]:
        chat = self.users[self._chat(p)].api_chat()
        return {**chat, "accent_color_id": 0, "max_reaction_count": 11}

    def _m_getChatMember(self, p: dict[str, Any], f: Any) -> dict[str, Any]:
        user = self.users.get(self._chat(p))
        if user is None or p.get("user_id") != user.id:
            raise bad("user not found")
        return {"status": "member", "user": user.api_user()}

    def _m_getFile(self, p: dict[str, Any], f: Any) -> dict[str, Any]:
        upload = self._files.get(str(p.get("file_id")))
        if upload is None:
            raise bad("invalid file_id")
        return {"file_id": upload.file_id, "file_unique_id": upload.file_id[-8:],
                "file_size": len(upload.content), "file_path": upload.file_path}

    def _forum(self, p: dict[str, Any]) -> FakeForum:
        chat_id = p.get("chat_id")
        if isinstance(chat_id, int) and chat_id in self.users:
            raise bad("the chat is not a forum")
        if not isinstance(chat_id, int) or chat_id not in self.forums:
            raise bad("chat not found")
        return self.forums[chat_id]

    def _topic(self, p: dict[str, Any]) -> dict[str, Any]:
        topic = self._forum(p).topics.get(p.get("message_thread_id"))  # type: ignore[arg-type]
        if topic is None or topic["deleted"]:
            raise bad("message thread not found")
        return topic

    def _m_createForumTopic(self, p: dict[str, Any], f: Any) -> dict[str, Any]:
        forum = self._forum(p)
        name = str(p.get("name") or "")
        if not 1 <= len(name) <= 128:
            raise bad("TOPIC_TITLE_EMPTY" if not name else "topic name is too long")
        # Telegram numbers a topic by the id of its creation service message.
        service = self._add_message(forum.id, self.bot_user, content={"forum_topic_created": {"name": name}})
        forum.topics[service.message_id] = {"name": name, "closed": False, "deleted": False}
        return {"message_thread_id": service.message_id, "name": name, "icon_color": 7322096}

    def _m_closeForumTopic(self, p: dict[str, Any], f: Any) -> bool:
        topic = self._topic(p)
        if topic["closed"]:
            raise bad("TOPIC_NOT_MODIFIED")
        topic["closed"] = True
        return True

    def _m_deleteForumTopic(self, p: dict[str, Any], f: Any) -> bool:
        self._topic(p)["deleted"] = True
        for message in self.forums[p["chat_id"]].thread_messages(p["message_thread_id"]):
            message.deleted = True
        return True

    def _m_accept(self, p: dict[str, Any], f: Any) -> bool:
        return True  # recorded under the method name the bot used

    async def _sent_report(self, request: web.Request) -> web.Response:
        """For a test driving the server from another process: every accepted message (chat id,
        text, monotonic time) and how many 429s the rate limits answered."""
        sent = [[c.chat_id, c.text, c.at] for c in self.calls
                if c.ok and c.method.startswith("send") and c.method != "sendChatAction"]
        return web.json_response({"sent": sent, "throttled": self.throttled, "errors": len(self.errors())})

    async def _download(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        upload = next((u for u in self._files.values() if u.file_path == path), None)
        if request.match_info["token"] != self.token or upload is None:
            return web.json_response(ApiError(404, "Not Found").payload(), status=404)
        return web.Response(body=upload.content, content_type=upload.content_type)


async def _serve(port: int, token: str, overall: int | None, per_chat: int | None, per_group: int | None) -> None:
    server = FakeBotAPI(token=token, auto_users=True)
    server.rate_limit(per_chat=per_chat, overall=overall, per_group=per_group)
    await server.start(port)
    print(f"fake Bot API on {server.base_url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


if __name__ == "__main__":
    # A fake Bot API in its own process, for tests and benchmarks that run `fatoura worker`
    # processes against it: python -m tests.fakes.bot_api --port 8081 --overall 200
    import argparse

    parser = argparse.ArgumentParser(description="fake Telegram Bot API server enforcing the rate limits")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", default="123456:TEST-token")
    parser.add_argument("--overall", type=int, default=30, help="messages per second per bot")
    parser.add_argument("--per-chat", type=int, default=1, help="messages per second per chat")
    parser.add_argument("--per-group", type=int, default=20, help="messages per minute per group")
    args = parser.parse_args()
    try:
        asyncio.run(_serve(args.port, args.token, args.overall, args.per_chat, args.per_group))
    except KeyboardInterrupt:
        pass
