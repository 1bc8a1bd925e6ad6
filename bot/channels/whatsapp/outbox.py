"""The worker's WhatsApp sender: an outbox row -> free-form messages inside the 24-hour window,
an approved template outside it (only to a customer who opted in).

WhatsApp's refusals become the worker's verdicts: 131047 (the window closed) -> the template;
131026 / 131049 (can't be delivered) -> the chat is marked and the message dropped;
130429 / 131056 (throughput) -> retried later with backoff; 131053 (media) is uploaded once
more by the renderer. Other refusals of a well-formed request are final: resending the same
request would be refused the same way.
"""
from __future__ import annotations

import logging

from bot.channels.whatsapp import CHANNEL, templates
from bot.channels.whatsapp.channel import recipient_of
from bot.channels.whatsapp.client import GraphClient, GraphError
from bot.channels.whatsapp.limits import MEDIA_FAILED, RE_ENGAGEMENT, THROUGHPUT, UNDELIVERABLE
from bot.channels.whatsapp.send import Recipient, WhatsAppSender
from bot.conversation.outbox_replies import payload_to_replies
from bot.conversation.replies import Document
from core.config import Settings
from core.db import Database
from core.i18n import translator
from core.models import ChatUser
from core.services import chat_window
from core.services.outbox import Claimed, PermanentFailure, RetryLater
from core.state import StateStore

log = logging.getLogger("fatoura.whatsapp")

MAX_BACKOFF = 600.0


def backoff(attempts: int) -> float:
    return min(MAX_BACKOFF, 15.0 * 2 ** attempts)


def whatsapp_sender(settings: Settings, db: Database, store: StateStore, client: GraphClient | None = None,  # noqa: ANN201
                    billers=None):  # noqa: ANN001 - a BillerRegistry, to render invoice PDFs
    templates.check(settings.whatsapp_templates)
    sender = WhatsAppSender(client or GraphClient.from_settings(settings), store)
    languages = {**templates.DEFAULT_LANGUAGES, **settings.whatsapp_template_languages}

    async def refused(error: GraphError, message: Claimed) -> Exception:
        if error.code in UNDELIVERABLE:
            await chat_window.mark_blocked(db, CHANNEL, message.chat_id)
            return PermanentFailure(f"whatsapp can't deliver to this chat: {error}")
        if error.code in THROUGHPUT or error.code == MEDIA_FAILED or error.status >= 500:
            return RetryLater(f"whatsapp: {error}", retry_after=backoff(message.attempts))
        return PermanentFailure(f"whatsapp refused the message: {error}")

    async def as_template(message: Claimed, user: ChatUser, recipient: Recipient) -> str:
        if not user.whatsapp_opt_in:
            raise PermanentFailure("outside the 24-hour window, and the customer did not opt in to notifications")
        replies = await payload_to_replies(message.payload, db, billers)
        document = next((r for r in replies if isinstance(r, Document)), None)
        name, parameters, with_document = templates.choose(message.kind, message.payload, settings.whatsapp_templates,
                                                           document is not None)
        language = languages.get(message.payload.get("language") or user.locale, languages["fr"])
        header = None
        if with_document and document is not None:
            header = {"id": await sender.client.upload(document.content, document.mime_type, document.filename),
                      "filename": document.filename}
        return await sender.send(recipient, templates.message(name, language, parameters, header))

    async def send(message: Claimed) -> str | None:
        user = await chat_window.find_user(db, CHANNEL, message.chat_id)
        if user is None:
            raise PermanentFailure("no such WhatsApp chat (forgotten?)")
        if user.blocked_at is not None:
            raise PermanentFailure("the chat can't be reached on WhatsApp until the customer writes again")
        recipient = recipient_of(user, message.chat_id)
        try:
            if not message.payload.get("template") and chat_window.in_window(user):
                try:
                    replies = await payload_to_replies(message.payload, db, billers)
                    t = translator(message.payload.get("language") or user.locale)
                    sent = await sender.deliver(recipient, replies, t)
                    return sent[0] if sent else None
                except GraphError as error:
                    if error.code != RE_ENGAGEMENT:
                        raise
                    log.info("chat %s: the window closed meanwhile; sending the template", message.chat_id)
            return await as_template(message, user, recipient)
        except GraphError as error:
            raise await refused(error, message) from None

    return send
