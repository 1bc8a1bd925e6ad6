"""WhatsApp webhook envelopes -> inbound messages, delivery statuses and what was not understood.

One POST holds `entry[]`, each with `changes[]`, each with a `value` that may carry `contacts[]`,
`messages[]` and `statuses[]` together. Every one of them is returned; a part this code does not
know (another webhook field, a new message type) comes back in `unknown` with the reason, so the
caller keeps it and answers it politely instead of dropping it.

A customer is keyed on the business-scoped user id (`contacts[].user_id`, `messages[].from_user_id`)
where Meta sends one, and on the phone number (`wa_id`, `from`) otherwise; the phone number, when
present, is kept as the address to send to.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from bot.conversation.events import EventKind

COMMAND_RE = re.compile(r"/([A-Za-z0-9_]{1,64})(?:\s+.*)?", re.DOTALL)
# What a person can send that the conversation can't read: answered "I can only read text".
UNREADABLE = frozenset({"image", "sticker", "audio", "voice", "video", "document", "location", "order",
                        "unsupported"})
# What needs no answer at all: a reaction to one of our messages, a "changed number" notice.
SILENT = frozenset({"reaction", "system", "ephemeral", "request_welcome"})


@dataclass(frozen=True)
class Inbound:
    """One customer message. `kind` is the conversation's EventKind; `data` holds the id of the
    tapped button or list row (or a template quick reply's payload); `context_id` the wamid of
    the message whose button was tapped."""

    wamid: str
    chat_id: str
    kind: EventKind
    address: str | None = None
    name: str | None = None
    text: str | None = None
    data: str | None = None
    context_id: str | None = None
    timestamp: datetime | None = None
    type: str = "text"


@dataclass(frozen=True)
class Status:
    wamid: str
    status: str  # sent, delivered, read, failed
    recipient: str | None = None
    error_codes: tuple[int, ...] = ()
    error: str | None = None


@dataclass
class Envelope:
    messages: list[Inbound] = field(default_factory=list)
    statuses: list[Status] = field(default_factory=list)
    silent: list[str] = field(default_factory=list)  # wamids of messages that need no answer
    unknown: list[str] = field(default_factory=list)  # why parts were not understood


def _timestamp(raw: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(raw), tz=timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _str(value: Any) -> str | None:
    return str(value) if isinstance(value, (str, int)) and str(value) else None


def parse(payload: Any) -> Envelope:
    envelope = Envelope()
    if not isinstance(payload, dict) or payload.get("object") != "whatsapp_business_account":
        envelope.unknown.append(f"object {payload.get('object') if isinstance(payload, dict) else type(payload).__name__!r}")
        return envelope
    entries = payload.get("entry")
    if not isinstance(entries, list):
        envelope.unknown.append("no entry list")
        return envelope
    for entry in entries:
        changes = entry.get("changes") if isinstance(entry, dict) else None
        if not isinstance(changes, list):
            envelope.unknown.append("entry without changes")
            continue
        for change in changes:
            if not isinstance(change, dict) or not isinstance(change.get("value"), dict):
                envelope.unknown.append("change without value")
            elif change.get("field") != "messages":
                envelope.unknown.append(f"field {change.get('field')!r}")
            else:
                _value(change["value"], envelope)
    return envelope


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _value(value: dict[str, Any], envelope: Envelope) -> None:
    contacts = [c for c in _list(value.get("contacts")) if isinstance(c, dict)]
    for message in _list(value.get("messages")):
        if not isinstance(message, dict) or not _str(message.get("id")):
            envelope.unknown.append("message without id")
            continue
        parsed = _message(message, contacts)
        if isinstance(parsed, Inbound):
            envelope.messages.append(parsed)
        elif parsed == "silent":
            envelope.silent.append(str(message["id"]))
        else:
            envelope.unknown.append(parsed)
    for status in _list(value.get("statuses")):
        if not isinstance(status, dict) or not _str(status.get("id")) or not _str(status.get("status")):
            envelope.unknown.append("status without id")
            continue
        errors = [e for e in _list(status.get("errors")) if isinstance(e, dict)]
        codes = tuple(int(e["code"]) for e in errors if isinstance(e.get("code"), int))
        described = "; ".join(f"{e.get('code')} {e.get('title') or e.get('message') or ''}".strip() for e in errors)
        envelope.statuses.append(Status(str(status["id"]), str(status["status"]), _str(status.get("recipient_id")),
                                        codes, described or None))
    if not _list(value.get("messages")) and not _list(value.get("statuses")):
        envelope.unknown.append("messages value without messages or statuses")


def _contact_for(message: dict[str, Any], contacts: list[dict[str, Any]]) -> dict[str, Any]:
    sender, user_id = _str(message.get("from")), _str(message.get("from_user_id"))
    for contact in contacts:
        if (sender and _str(contact.get("wa_id")) == sender) or (user_id and _str(contact.get("user_id")) == user_id):
            return contact
    return contacts[0] if len(contacts) == 1 else {}


def _message(message: dict[str, Any], contacts: list[dict[str, Any]]) -> Inbound | str:
    contact = _contact_for(message, contacts)
    address = _str(message.get("from")) or _str(contact.get("wa_id"))
    chat_id = _str(contact.get("user_id")) or _str(message.get("from_user_id")) or address
    if chat_id is None:
        return "message without sender"
    if len(chat_id) > 64 or (address and len(address) > 32):
        return "sender id too long"
    kind = _str(message.get("type")) or ""
    profile, context = _dict(contact.get("profile")), _dict(message.get("context"))
    base = dict(wamid=str(message["id"]), chat_id=chat_id, address=address, name=_str(profile.get("name")),
                context_id=_str(context.get("id")), timestamp=_timestamp(message.get("timestamp")), type=kind)
    if kind == "text":
        body = str(_dict(message.get("text")).get("body") or "")
        command = COMMAND_RE.fullmatch(body.strip())
        if command:
            return Inbound(kind=EventKind.COMMAND, text=command.group(1).lower(), **base)
        return Inbound(kind=EventKind.TEXT, text=body, **base)
    if kind == "interactive":
        interactive = _dict(message.get("interactive"))
        reply = interactive.get(str(interactive.get("type")))
        if interactive.get("type") in ("button_reply", "list_reply") and isinstance(reply, dict) and _str(reply.get("id")):
            return Inbound(kind=EventKind.BUTTON, data=str(reply["id"]), text=_str(reply.get("title")), **base)
        return Inbound(kind=EventKind.UNSUPPORTED, text=f"interactive {interactive.get('type')}", **base)
    if kind == "button":  # a template's quick-reply button
        button = _dict(message.get("button"))
        return Inbound(kind=EventKind.BUTTON, data=_str(button.get("payload")) or _str(button.get("text")),
                       text=_str(button.get("text")), **base)
    if kind == "contacts":
        for shared in _list(message.get("contacts")):
            for phone in _list(_dict(shared).get("phones")):
                number = (_str(phone.get("wa_id")) or _str(phone.get("phone"))) if isinstance(phone, dict) else None
                if number:
                    return Inbound(kind=EventKind.CONTACT, text=number, **base)
        return Inbound(kind=EventKind.UNSUPPORTED, text="contacts", **base)
    if kind in UNREADABLE:
        return Inbound(kind=EventKind.UNSUPPORTED, text=kind, **base)
    if kind in SILENT:
        return "silent"
    # A type this code does not know yet: the customer still gets the "text only" answer.
    return Inbound(kind=EventKind.UNSUPPORTED, text=kind or "unknown", **base)
