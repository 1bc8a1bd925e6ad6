"""The WhatsApp channel wired to the conversation: one webhook body in, replies and status updates out.

What this side adds to the conversation, because WhatsApp asks for it:
- a message id (wamid) is handled once, however often Meta delivers it (core.services.inbound);
- every customer message opens the 24-hour window (`last_inbound_at`) and clears `blocked_at`;
- a first message, whatever it says, is the conversation's START (WhatsApp has no /start), and
  so is a text when no menu of the chat is known any more (30 days after the last one);
- a typed number picks that option of the latest menu; a tap on an older menu (its `context.id`
  is not one of the latest menu's messages) gets the current menu again, not an action;
- the list pages of a long menu turn here, without the conversation;
- once the customer has a linked account, the opt-in to notifications outside the window is
  asked, once, and the answer recorded;
- statuses move the outbox row of that wamid forward; a failed one whose code says the window
  closed is sent again as a template, one that says the number can't be reached marks the chat.
"""
from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, Protocol

from bot.channels.whatsapp import CHANNEL
from bot.channels.whatsapp.client import GraphError
from bot.channels.whatsapp.limits import RE_ENGAGEMENT, UNDELIVERABLE
from bot.channels.whatsapp.receive import Envelope, Inbound, Status, parse
from bot.channels.whatsapp.send import (
    OPT_IN,
    OPTION,
    PAGE,
    Recipient,
    Undeliverable,
    WhatsAppSender,
    menu_key,
    numbered,
    parse_reply_id,
    reply_buttons,
)
from bot.conversation.events import Event, EventKind
from bot.conversation.replies import Reply, Text
from core.db import Database
from core.i18n import Translator, translator
from core.models import ChatUser
from core.services import chat_window, delivery_status, inbound, linking, users

log = logging.getLogger("fatoura.whatsapp")

NUMBER_RE = re.compile(r"\s*(\d{1,2})\s*[.)]?\s*")
SHUTDOWN_GRACE = 10.0


class Handles(Protocol):
    async def handle(self, event: Event) -> list[Reply]: ...


def recipient_of(user: ChatUser | None, chat_id: str, address: str | None = None) -> Recipient:
    """Send to the phone number when one is known (Meta's advice), else to the user id."""
    to = address or (user.whatsapp_address if user else None)
    return Recipient(chat_id, to or chat_id, bsuid=to is None)


def opt_in_question(t: Translator) -> dict[str, Any]:
    body = t._("Shall I also send you here your new invoices, due-date reminders and payment confirmations "
               "when you have not written for a day? Send /notifications to change your answer at any time.")
    choices = [(t._("Yes, notify me"), f"{OPT_IN}:1"), (t._("No, thanks"), f"{OPT_IN}:0")]
    return reply_buttons(("\u200f" if t.rtl else "") + body + "\n\n" + numbered(choices),
                         [(reply_id, label) for label, reply_id in choices])


class WhatsAppChannel:
    def __init__(self, db: Database, conversation: Handles, sender: WhatsAppSender) -> None:
        self.db = db
        self.conversation = conversation
        self.sender = sender
        self.store = sender.store
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- a webhook body, in the background
    def feed(self, webhook_id: int, payload: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(self.handle_body(webhook_id, payload),
                                                      name=f"whatsapp-webhook-{webhook_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def handle_body(self, webhook_id: int, payload: Any) -> Envelope | None:
        try:
            envelope = parse(payload)
            # Messages first: the chat's lock is the first thing awaited, so a chat's messages keep
            # the order their webhooks arrived in.
            for message in envelope.messages:
                await self.on_message(message)
            for status in envelope.statuses:
                await self.on_status(status)
            outcome = inbound.UNHANDLED if envelope.unknown else inbound.HANDLED
            if envelope.unknown:
                log.warning("whatsapp webhook %s: kept parts not understood: %s", webhook_id, "; ".join(envelope.unknown))
            await inbound.set_outcome(self.db, webhook_id, outcome, "; ".join(envelope.unknown) or None)
            return envelope
        except Exception as error:  # noqa: BLE001 - a background task has no caller; the body stays stored
            log.exception("whatsapp webhook %s failed", webhook_id)
            await inbound.set_outcome(self.db, webhook_id, inbound.ERROR, f"{type(error).__name__}: {error}")
            return None

    async def wait_idle(self, timeout: float = SHUTDOWN_GRACE) -> None:
        if self._tasks:
            done, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()

    # -- statuses
    async def on_status(self, status: Status) -> None:
        row = await delivery_status.apply_status(self.db, status.wamid, status.status, status.error)
        if status.status != "failed":
            return
        undeliverable = any(code in UNDELIVERABLE for code in status.error_codes)
        if row is None:
            # A reply of the conversation (not an outbox row) that could not be delivered.
            if undeliverable and status.recipient:
                await chat_window.mark_blocked(self.db, CHANNEL, status.recipient, or_address=True)
            return
        if RE_ENGAGEMENT in status.error_codes:
            await delivery_status.send_again_as_template(self.db, row.id)
        elif undeliverable:
            await chat_window.mark_blocked(self.db, row.channel, row.chat_id)

    # -- customer messages
    async def on_message(self, message: Inbound) -> list[str]:
        """Answer one message, once: a redelivered wamid is skipped."""
        # One message of a chat at a time, in arrival order: the menu state is read and written here.
        async with self.store.lock(f"wa:{message.chat_id}"):
            if not await inbound.claim_message(self.db, CHANNEL, message.wamid):
                return []
            try:
                return await self._first_time(message)
            except BaseException:
                # Unclaimed again, so `fatoura whatsapp replay` can answer it later.
                await inbound.release_message(self.db, CHANNEL, message.wamid)
                raise

    async def _first_time(self, message: Inbound) -> list[str]:
        if message.address and message.address != message.chat_id:
            await chat_window.adopt_business_id(self.db, CHANNEL, message.address, message.chat_id)
        user, created = await users.get_or_create_user(self.db, CHANNEL, message.chat_id)
        await chat_window.record_inbound(self.db, CHANNEL, message.chat_id, address=message.address,
                                         name=message.name)
        recipient = recipient_of(user, message.chat_id, message.address)
        t = translator(user.locale)
        try:
            return await self._answer(message, user, created, recipient, t)
        except Undeliverable as error:
            log.info("chat %s can't be reached on WhatsApp: %s", message.chat_id, error)
            await chat_window.mark_blocked(self.db, CHANNEL, message.chat_id)
            return []

    async def _answer(self, message: Inbound, user: ChatUser, created: bool, recipient: Recipient,
                      t: Translator) -> list[str]:
        menu = await self.store.get_json(menu_key(message.chat_id)) or {}
        kind, data, text = message.kind, message.data, message.text
        if kind is EventKind.COMMAND and text in ("notifications", "notification"):
            return await self._ask_opt_in(recipient, t)
        if kind is EventKind.BUTTON and data:
            action, _, value = parse_reply_id(data)
            if action == OPT_IN:
                return await self._opt_in(user, recipient, t, value == "1")
            if action in (OPTION, PAGE) and message.context_id and menu.get("ids") \
                    and message.context_id not in menu["ids"]:
                return await self.sender.menu(recipient, t, note=t._(
                    "This button belongs to an older message and no longer applies."))
            if action == PAGE:
                turned = await self.sender.menu(recipient, t, page=int(value) if value.isdigit() else 0)
                if turned:
                    return turned
                # The menu is gone (expired state): the conversation answers it as an old button.
            data = value if action == OPTION else data
        elif kind is EventKind.TEXT and (number := NUMBER_RE.fullmatch(text or "")) and menu.get("options"):
            index = int(number.group(1))
            if 1 <= index <= len(menu["options"]):
                kind, data = EventKind.BUTTON, menu["options"][index - 1][1]
        if kind is EventKind.TEXT and (created or not menu):
            # WhatsApp has no /start: a first message, or one after the menu was forgotten, opens the menu.
            kind = EventKind.START
        event = Event(channel=CHANNEL, chat_id=message.chat_id, kind=kind, text=text, data=data,
                      update_id=message.wamid, message_id=message.wamid, user_name=message.name,
                      source_message_id=message.context_id)
        replies = await self.conversation.handle(event)
        fresh = await chat_window.find_user(self.db, CHANNEL, message.chat_id)
        t = translator(fresh.locale) if fresh else t  # the turn may have changed the language
        sent = await self.sender.render(recipient, replies, t)
        if fresh is not None and fresh.whatsapp_opt_in is None and fresh.whatsapp_opt_in_asked_at is None \
                and await linking.list_links(self.db, fresh.id):
            sent += await self._ask_opt_in(recipient, t)
            await chat_window.mark_asked(self.db, fresh.id)
        return sent

    async def _ask_opt_in(self, recipient: Recipient, t: Translator) -> list[str]:
        # Not remembered as the menu: a typed number still picks from the conversation's menu.
        try:
            return [await self.sender.send(recipient, opt_in_question(t))]
        except GraphError as error:
            if error.code in UNDELIVERABLE:
                raise Undeliverable(str(error)) from None
            log.error("chat %s: WhatsApp refused the opt-in question: %s", recipient.chat_id, error)
            return []

    async def _opt_in(self, user: ChatUser, recipient: Recipient, t: Translator, consent: bool) -> list[str]:
        await chat_window.set_opt_in(self.db, user.id, consent)
        text = t._("Noted: I will notify you here, even after a day without messages.") if consent else t._(
            "Noted: I will only write when you write to me.")
        return await self.sender.render(recipient, [Text(text, rtl=t.rtl)], t)
