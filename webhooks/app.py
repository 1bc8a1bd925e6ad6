"""The ASGI app (`webhooks.app:app`). `create_app(settings)` builds one; tests build their own."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse

from core.billers.registry import BillerRegistry
from core.config import Settings, get_settings
from core.db import Database
from core.i18n import compile_catalogs
from bot.channels.webchat_outbox import webchat_sender
from bot.conversation.engine import build_conversation
from core.payments.registry import GatewayRegistry
from fatoura.worker import Delivery
from webhooks.agents import Console
from webhooks.agents import router as agents_router
from webhooks.biller_events import router as biller_events_router
from webhooks.metrics import METRICS
from webhooks.payments import router as payments_router
from webhooks.receipts import router as receipts_router
from webhooks.telegram import close_telegram, install_telegram
from webhooks.telegram import router as telegram_router
from webhooks.webchat import install_webchat
from webhooks.whatsapp import close_whatsapp, install_whatsapp
from webhooks.state import AppState

log = logging.getLogger("fatoura.web")


def create_app(settings: Settings | None = None, *, db: Database | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        compile_catalogs()
        database = db or Database(settings.database_url)
        billers = BillerRegistry.from_settings(settings, database)
        await billers.load()
        app.state.fatoura = AppState(settings=settings, db=database, billers=billers)
        app.state.gateways = GatewayRegistry.from_settings(settings)
        conversation = build_conversation(settings, db=database, billers=billers, gateways=app.state.gateways)
        app.state.conversation = conversation
        webchat = install_webchat(app, conversation)
        # This process holds the web chat's pages, so it delivers their outbox messages itself,
        # claiming only those of the chats open here: a message waits for its customer's return.
        webchat_delivery = Delivery(database, {"webchat": webchat_sender(webchat, database, billers)},
                                    chats=webchat.hub.open_chats)
        webchat_stop = asyncio.Event()
        webchat_task = asyncio.create_task(webchat_delivery.run(webchat_stop, idle_seconds=1.0), name="webchat-outbox")
        install_telegram(app, settings, conversation)
        from core.services.agents import Sessions

        app.state.agents = Console(conversation.desk, Sessions(database, settings.secret_key.get_secret_value(),
                                                               settings.agent_session_minutes),
                                   billers, conversation.store, secure=settings.public_base_url.startswith("https"))
        whatsapp = install_whatsapp(app, settings, conversation, database, conversation.store)
        if whatsapp is not None and whatsapp.channel is not None:
            from bot.channels.whatsapp.outbox import whatsapp_sender

            # In-process, it shares the conversation's state (the menus) even without Redis.
            app.state.senders["whatsapp"] = whatsapp_sender(settings, database, conversation.store,
                                                            whatsapp.channel.sender.client, billers)
        try:
            yield
        finally:
            webchat_stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(webchat_task, 10)
            await close_whatsapp(app)
            await close_telegram(app)
            await conversation.store.close()
            await billers.close()
            if db is None:
                await database.dispose()

    app = FastAPI(title="Fatoura", version="0.1.0", lifespan=lifespan)
    app.state.senders = {}  # in-process outbox senders a worker of this process may add (WhatsApp's)
    app.include_router(telegram_router)

    @app.middleware("http")
    async def count_requests(request: Request, call_next):
        started = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception:
            METRICS.observe_request(request.method, request.url.path, 500, time.perf_counter() - started)
            raise
        route = request.scope.get("route")
        METRICS.observe_request(request.method, getattr(route, "path", "unmatched"), response.status_code,
                                time.perf_counter() - started)
        return response

    @app.get("/healthz")
    async def healthz(request: Request) -> dict[str, str]:
        from sqlalchemy import text

        state: AppState = request.app.state.fatoura
        async with state.db.session() as session:
            await session.execute(text("SELECT 1"))
        return {"status": "ok", "database": state.db.dialect}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(METRICS.render(), media_type="text/plain; version=0.0.4")

    app.include_router(payments_router)
    app.include_router(biller_events_router)
    app.include_router(receipts_router)
    app.include_router(agents_router)
    if settings.sandbox:
        from webhooks.sandbox_billers import router as sandbox_billers
        from webhooks.sandbox_gateways import router as sandbox_gateways

        app.include_router(sandbox_billers)
        app.include_router(sandbox_gateways)
    return app


def _lazy_app() -> FastAPI:
    return create_app()


app = _lazy_app()
