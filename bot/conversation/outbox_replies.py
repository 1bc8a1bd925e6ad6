"""Outbox payloads (core.services.outbox) as the conversation's replies, for the channel senders.

A sender claims an outbox row, calls `payload_to_replies(payload, db)` and renders the replies
the same way it renders the conversation's answers. A receipt document is rendered here, at
delivery time, from its payment id.
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


async def payload_to_replies(payload: dict[str, Any], db: Database) -> list[Reply]:
    """Text (with its buttons) first, then the document if any. A receipt whose payment no longer
    exists is left out (the text still goes)."""
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
    return replies
