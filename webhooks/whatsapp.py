"""The WhatsApp webhook: `GET /webhooks/whatsapp` (Meta's verify handshake) and
`POST /webhooks/whatsapp` (messages and statuses).

A POST is checked first: `X-Hub-Signature-256` must be `sha256=` + the HMAC-SHA256 of the raw
body bytes with the app secret (compared in constant time). A missing signature answers 401, a
wrong one 403, a body over 1 MB 413. A signed body is then stored raw, before it is parsed,
and answered at once (200; 400 when it is not JSON): the handling runs in the background, so a
slow biller never makes Meta retry. Without WHATSAPP_APP_SECRET the route answers 404.

Wire it with `install_whatsapp(app, settings, conversation, db)` in the lifespan and
`await close_whatsapp(app)` when it ends.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from bot.channels.whatsapp import CHANNEL
from bot.channels.whatsapp.channel import Handles, WhatsAppChannel
from bot.channels.whatsapp.client import GraphClient
from bot.channels.whatsapp.send import WhatsAppSender
from core.config import Settings
from core.db import Database
from core.services import inbound
from core.state import StateStore

log = logging.getLogger("fatoura.whatsapp")

WEBHOOK_PATH = "/webhooks/whatsapp"
SIGNATURE_HEADER = "X-Hub-Signature-256"
MAX_BODY = 1024 * 1024

router = APIRouter(tags=["whatsapp"])


def signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def signature_ok(secret: bytes, body: bytes, given: str) -> bool:
    return hmac.compare_digest(signature(secret, body).encode(), given.strip().lower().encode())


class WhatsAppWebhook:
    """What the routes need, kept on `app.state.whatsapp`."""

    def __init__(self, channel: WhatsAppChannel | None, db: Database, app_secret: str, verify_token: str | None) -> None:
        self.channel = channel  # None when sending is not configured: bodies are still kept
        self.db = db
        self.app_secret = app_secret.encode()
        self.verify_token = verify_token.encode() if verify_token else None


def _refuse(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


@router.get(WEBHOOK_PATH, summary="WhatsApp webhook verification (hub.challenge)")
async def whatsapp_verify(request: Request) -> Response:
    hook: WhatsAppWebhook | None = getattr(request.app.state, "whatsapp", None)
    if hook is None or hook.verify_token is None:
        return _refuse(404, "WhatsApp is not configured")
    query = request.query_params
    given = query.get("hub.verify_token", "").encode()
    if query.get("hub.mode") != "subscribe" or not hmac.compare_digest(given, hook.verify_token):
        return _refuse(403, "verification failed")
    return PlainTextResponse(query.get("hub.challenge", ""))


@router.post(WEBHOOK_PATH, summary="WhatsApp Cloud API messages and statuses")
async def whatsapp_webhook(request: Request) -> Response:
    hook: WhatsAppWebhook | None = getattr(request.app.state, "whatsapp", None)
    if hook is None:
        return _refuse(404, "WhatsApp is not configured")
    given = request.headers.get(SIGNATURE_HEADER)
    if not given:
        return _refuse(401, f"{SIGNATURE_HEADER} is missing")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return _refuse(413, "body too large")
    if not given.isascii() or not signature_ok(hook.app_secret, bytes(body), given):
        log.info("whatsapp webhook: refused a body with a wrong signature")
        return _refuse(403, "wrong signature")
    webhook_id = await inbound.store_body(hook.db, CHANNEL, bytes(body))
    try:
        payload = json.loads(body)
    except ValueError as error:  # json's decode errors, and undecodable bytes
        await inbound.set_outcome(hook.db, webhook_id, inbound.REFUSED, f"not JSON: {error}")
        return _refuse(400, "not JSON")
    if hook.channel is None:
        await inbound.set_outcome(hook.db, webhook_id, inbound.UNHANDLED, "WhatsApp sending is not configured")
    else:
        hook.channel.feed(webhook_id, payload)
    return Response(status_code=200)


def install_whatsapp(app: FastAPI, settings: Settings, conversation: Handles, db: Database,
                     store: StateStore) -> WhatsAppWebhook | None:
    """Serve the webhook for this conversation; None (and 404s) without WHATSAPP_APP_SECRET.
    Without WHATSAPP_TOKEN / WHATSAPP_PHONE_NUMBER_ID the bodies are kept but not answered."""
    if not any(getattr(route, "path", None) == WEBHOOK_PATH for route in app.router.routes):
        app.include_router(router)
    app.state.whatsapp = None
    secret = settings.whatsapp_app_secret.get_secret_value() if settings.whatsapp_app_secret else ""
    if not secret:
        return None
    channel = None
    if settings.whatsapp_token and settings.whatsapp_token.get_secret_value() and settings.whatsapp_phone_number_id:
        channel = WhatsAppChannel(db, conversation, WhatsAppSender(GraphClient.from_settings(settings), store))
    verify = settings.whatsapp_verify_token.get_secret_value() if settings.whatsapp_verify_token else None
    hook = WhatsAppWebhook(channel, db, secret, verify)
    app.state.whatsapp = hook
    return hook


async def close_whatsapp(app: FastAPI) -> None:
    hook: WhatsAppWebhook | None = getattr(app.state, "whatsapp", None)
    app.state.whatsapp = None
    if hook is not None and hook.channel is not None:
        await hook.channel.wait_idle()
        await hook.channel.sender.client.close()
