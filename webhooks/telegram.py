"""The Telegram webhook: `POST /webhooks/telegram`.

Telegram sends each update as JSON with `X-Telegram-Bot-Api-Secret-Token` set to the secret given
to setWebhook (`fatoura telegram set-webhook`). The route checks it in constant time, validates the
body as an Update, starts handling it in the background and answers 200 at once: Telegram re-sends
an update it got no 2xx for within about a minute, and a slow biller must not cause that.

A re-sent update (same update_id) reaches the conversation again; the conversation keeps the
update ids it handled and gives no second answer.

Wire it with `install_telegram(app, settings, conversation)` in the app's lifespan and
`await close_telegram(app)` when it ends. Without TELEGRAM_BOT_TOKEN and TELEGRAM_WEBHOOK_SECRET the
route answers 404.
"""
from __future__ import annotations

import hmac
import json
import logging

from aiogram.types import Update
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from bot.channels.telegram.bot import Handles, TelegramChannel, make_bot
from bot.channels.telegram.runner import WEBHOOK_PATH, webhook_secret
from core.config import Settings

log = logging.getLogger("fatoura.telegram")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_BODY = 1024 * 1024  # an update is a few KB; anything this big is not from Telegram

router = APIRouter(tags=["telegram"])


class TelegramWebhook:
    """What the route needs, kept on `app.state.telegram`."""

    def __init__(self, channel: TelegramChannel, secret: str) -> None:
        self.channel = channel
        self.secret = secret.encode()


def _refuse(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


@router.post(WEBHOOK_PATH, summary="Telegram Bot API updates")
async def telegram_webhook(request: Request) -> Response:
    hook: TelegramWebhook | None = getattr(request.app.state, "telegram", None)
    if hook is None:
        return _refuse(404, "Telegram is not configured")
    given = request.headers.get(SECRET_HEADER, "").encode()
    if not hmac.compare_digest(given, hook.secret):
        return _refuse(403, "wrong secret token")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return _refuse(413, "body too large")
    try:
        payload = json.loads(body)
        if not isinstance(payload, dict):
            raise ValueError("not a JSON object")
        update = Update.model_validate(payload, context={"bot": hook.channel.bot})
    except (ValueError, ValidationError) as error:  # json's errors are ValueErrors too
        log.info("telegram webhook: refused a body that is not an Update: %s", type(error).__name__)
        return _refuse(400, "not a Telegram update")
    hook.channel.feed(update)
    return Response(status_code=200)


def install_telegram(app: FastAPI, settings: Settings, conversation: Handles) -> TelegramWebhook | None:
    """Serve the webhook for this conversation: includes the route (once) and keeps the bot on
    `app.state.telegram`. Returns None, and the route answers 404, when TELEGRAM_BOT_TOKEN or
    TELEGRAM_WEBHOOK_SECRET is unset. Call it in the lifespan, once the conversation exists."""
    if not any(getattr(route, "path", None) == WEBHOOK_PATH for route in app.router.routes):
        app.include_router(router)
    app.state.telegram = None
    token, secret = settings.telegram_bot_token, settings.telegram_webhook_secret
    if not (token and token.get_secret_value() and secret and secret.get_secret_value()):
        return None
    hook = TelegramWebhook(TelegramChannel(make_bot(settings), conversation), webhook_secret(settings))
    app.state.telegram = hook
    return hook


async def close_telegram(app: FastAPI) -> None:
    """Let the updates in flight finish, then close the bot's HTTP session."""
    hook: TelegramWebhook | None = getattr(app.state, "telegram", None)
    app.state.telegram = None
    if hook is not None:
        await hook.channel.close()
