"""`fatoura demo`: the whole product in one process on the embedded defaults.

SQLite file, in-memory state (unless REDIS_URL is set), sandbox billers, the web app with the web
chat and the agent console (a `demo` agent whose password is printed), the outbox worker, the
Telegram bot by long polling when TELEGRAM_BOT_TOKEN is set, and the WhatsApp webhook and sender
when WhatsApp is configured.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging

import uvicorn

from core.config import Settings
from core.db import Database, upgrade_async
from core.i18n import compile_catalogs

log = logging.getLogger("fatoura.demo")


async def prepare(settings: Settings, accounts: int) -> Database:
    from core.billers.sandbox.store import seed_generated, seed_samples

    compile_catalogs()
    await upgrade_async(settings.database_url)
    db = Database(settings.database_url)
    await seed_samples(db)
    if accounts:
        await seed_generated(db, accounts, seed=settings.sandbox_seed)
    return db


async def demo_agent(db: Database) -> str | None:
    """The demo's support agent `demo`, with a fresh password each start (printed, sandbox only)."""
    import secrets

    from sqlalchemy import update

    from core.models import Agent
    from core.services.agents import add_agent, hash_password, list_agents

    password = secrets.token_urlsafe(9)
    if any(agent.username == "demo" for agent in await list_agents(db)):
        async with db.transaction() as session:
            await session.execute(update(Agent).where(Agent.username == "demo")
                                  .values(password_hash=hash_password(password), active=True))
    else:
        await add_agent(db, "demo", password, display_name="Agent Demo")
    return password


async def run_demo(settings: Settings, host: str = "127.0.0.1", port: int = 8000, accounts: int = 1000) -> int:
    from fatoura.worker import build_delivery, build_senders, push_jobs, work
    from webhooks.app import create_app

    if not settings.sandbox:
        settings = settings.model_copy(update={"sandbox": True})
    db = await prepare(settings, accounts)
    agent_password = await demo_agent(db)
    app = create_app(settings, db=db)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))
    stop = asyncio.Event()
    tasks = [asyncio.create_task(server.serve(), name="web")]
    while not server.started and not tasks[0].done():
        await asyncio.sleep(0.05)
    if tasks[0].done():
        return 1
    billers, store = app.state.fatoura.billers, app.state.conversation.store
    senders = {**build_senders(settings, db, billers), **app.state.senders}
    delivery = build_delivery(settings, db, senders, store, billers)
    tasks.append(asyncio.create_task(work(db, senders, stop=stop, delivery=delivery, idle_seconds=settings.outbox_poll_seconds,
                                          jobs=push_jobs(settings, db, store, billers)), name="worker"))
    if settings.telegram_bot_token:
        from bot.channels.telegram.runner import start_polling_task

        tasks.append(await start_polling_task(settings, app.state.conversation))
    base = f"http://{host}:{port}"
    print(f"Fatoura demo is running on sandbox data ({settings.database_url}).")
    print(f"  Web chat:      {base}/chat")
    print(f"  Agent console: {base}/agents    (user: demo, password: {agent_password})")
    print(f"  Health:        {base}/healthz    Metrics: {base}/metrics    API docs: {base}/docs")
    print("  Telegram bot:  " + ("polling" if settings.telegram_bot_token else "off (set TELEGRAM_BOT_TOKEN to run it)"))
    whatsapp = getattr(app.state, "whatsapp", None)
    print("  WhatsApp:      " + (f"webhook {settings.public_base_url}/webhooks/whatsapp"
                                 + ("" if whatsapp.channel else " (bodies kept; set WHATSAPP_TOKEN and "
                                                                 "WHATSAPP_PHONE_NUMBER_ID to answer)")
                                 if whatsapp else "off (set WHATSAPP_APP_SECRET and WHATSAPP_TOKEN to run it)"))
    print("Press Ctrl+C to stop.", flush=True)
    try:
        await tasks[0]
    finally:
        stop.set()
        for task in tasks[1:]:
            task.cancel()
        for task in tasks[1:]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await db.dispose()
    return 0
