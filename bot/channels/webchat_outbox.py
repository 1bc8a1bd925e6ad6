"""The web chat's outbox sender: pushes a message to the chat's open pages in this process."""
from __future__ import annotations

from bot.conversation.outbox_replies import payload_to_replies
from core.db import Database
from core.services.outbox import Claimed, RetryLater


def webchat_sender(webchat, db: Database, billers=None):  # noqa: ANN001, ANN201 - webhooks.webchat.WebChat, a worker Sender
    async def send(message: Claimed) -> str | None:
        replies = await payload_to_replies(message.payload, db, billers)
        if not await webchat.push(message.chat_id, replies):
            # No page of this chat is open here: try again when the customer is back.
            raise RetryLater("no open web chat page", retry_after=30)
        return None

    return send
