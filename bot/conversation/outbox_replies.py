"""Outbox payloads (core.services.outbox) as the conversation's replies, for the channel senders.

A sender claims an outbox row, calls `payload_to_replies(payload, db)` and renders the replies
the same way it renders the conversation's answers. A document is rendered here, at delivery
time: a receipt from its payment id, an invoice ({"kind": "invoice", "link_id", "number",
"language", "filename", "caption"}, sent by a support agent) by its biller.
"""
from __future__ import annotations

import logging
from typing import Any

from bot.conversation.replies import Button, Document, Reply, Text
from core.db import Database

log = logging.getLogger("fatoura.outbox")


def _buttons(rows: Any) -> tuple[tuple[Button, ...], ...]:
    result = []
    for row in rows or ():
        buttons = []
        for spec in row or ():
            if not isinstance(spec, dict) or not spec.get("label"):
                continue
            if spec.get("url"):
                buttons.append(Button(str(spec["label"]), url=str(spec["url"])))
            elif spec.get("data"):
                buttons.append(Button(str(spec["label"]), data=str(spec["data"])))
        if buttons:
            result.append(tuple(buttons))
    return tuple(result)


async def payload_to_replies(payload: dict[str, Any], db: Database, billers: Any = None) -> list[Reply]:
    """Text (with its buttons) first, then the document if any. A receipt whose payment no longer
    exists, or an invoice whose account was unlinked, is left out (the text still goes).
    `billers` (a BillerRegistry) renders invoices; without it, this deployment's is built."""
    replies: list[Reply] = []
    text = payload.get("text")
    buttons = _buttons(payload.get("buttons"))
    if text:
        replies.append(Text(str(text), buttons=buttons, rtl=bool(payload.get("rtl"))))
    document = payload.get("document")
    if isinstance(document, dict) and document.get("kind") == "receipt":
        from core.services.confirmations import receipt_pdf

        language = document.get("language") or payload.get("language") or "fr"
        rendered = await receipt_pdf(db, int(document["payment_id"]), language)
        if rendered is None:
            log.warning("receipt of payment %s is gone; sending the text only", document.get("payment_id"))
        else:
            filename, content = rendered
            replies.append(Document(filename=document.get("filename") or filename, content=content,
                                    caption=document.get("caption")))
    elif isinstance(document, dict) and document.get("kind") == "invoice":
        rendered_invoice = await _invoice_pdf(document, payload, db, billers)
        if rendered_invoice is not None:
            replies.append(rendered_invoice)
    return replies


async def _invoice_pdf(document: dict[str, Any], payload: dict[str, Any], db: Database, billers: Any) -> Document | None:
    from core.billers.registry import BillerRegistry
    from core.config import get_settings
    from core.errors import FatouraError
    from core.models import LinkedAccount
    from core.services.invoices import invoice_pdf

    async with db.session() as session:
        link = await session.get(LinkedAccount, int(document.get("link_id") or 0))
    if link is None:
        log.warning("invoice %s: its account is gone; sending the text only", document.get("number"))
        return None
    number = str(document.get("number") or "")
    try:
        content = await invoice_pdf(billers or BillerRegistry.from_settings(get_settings(), db), link, number,
                                    document.get("language") or payload.get("language") or "fr")
    except FatouraError as error:  # the biller no longer has it: the text says what was meant
        log.warning("invoice %s not rendered: %s", number, type(error).__name__)
        return None
    return Document(filename=document.get("filename") or f"facture-{number}.pdf", content=content,
                    caption=document.get("caption"))
