"""`fatoura whatsapp replay`: handle kept webhook bodies again (those that failed, or one by id).

Every signed body is stored before it is parsed (core.services.inbound); when handling one failed
(the database was away, a bug), its messages were released, so a replay answers them once the
cause is fixed. Messages already answered are not answered twice: their ids stay claimed.
"""
from __future__ import annotations

import json

from bot.channels.whatsapp import CHANNEL
from bot.channels.whatsapp.channel import WhatsAppChannel
from bot.channels.whatsapp.client import GraphClient
from bot.channels.whatsapp.send import WhatsAppSender
from core.config import Settings
from core.db import Database
from core.services import inbound


async def replay(settings: Settings, *, outcomes: tuple[str | None, ...] = (inbound.ERROR, None),
                 webhook_id: int | None = None, db: Database | None = None) -> list[tuple[int, str | None]]:
    """Handle the matching bodies again; returns (body id, outcome now) for each."""
    from bot.conversation.engine import build_conversation
    from core.billers.registry import BillerRegistry

    database = db or Database(settings.database_url)
    billers = BillerRegistry.from_settings(settings, database)
    await billers.load()
    conversation = build_conversation(settings, db=database, billers=billers)
    client = GraphClient.from_settings(settings)
    channel = WhatsAppChannel(database, conversation, WhatsAppSender(client, conversation.store))
    results: list[tuple[int, str | None]] = []
    try:
        for row in await inbound.stored_bodies(database, CHANNEL, outcomes, webhook_id):
            try:
                payload = json.loads(row.body)
            except ValueError:
                results.append((row.id, row.outcome))  # not JSON: nothing to replay
                continue
            await channel.handle_body(row.id, payload)
            (again,) = await inbound.stored_bodies(database, CHANNEL, (), row.id)
            results.append((row.id, again.outcome))
    finally:
        await client.close()
        await conversation.store.close()
        await billers.close()
        if db is None:
            await database.dispose()
    return results
