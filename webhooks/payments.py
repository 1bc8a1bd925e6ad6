"""Payment callbacks and the card payment pages.

Routes (`router`):
  POST /webhooks/payments/{gateway}   a gateway's server-to-server callback -> the gateway's answer
                                      (404 for an unknown gateway; never a 500, whatever the body)
  GET  /pay/{token}                   card checkout: a short localized page that forwards (auto-submit,
                                      with a visible button when JavaScript is off) to POST /pay/{token}
  POST /pay/{token}                   uses the token (once) and answers the auto-submitting form that
                                      posts the signed fields to the CMI 3-D Secure hosted page
  GET|POST /pay/{token}/ok            "payment received, the confirmation arrives in the chat"
  GET|POST /pay/{token}/fail          "payment failed"
  GET|POST /pay/{token}/cancel        "payment cancelled" (CMI's shopurl)
The return pages never mark anything paid: only a verified callback does.

Why two steps for /pay: chat apps fetch every link they show to draw a preview (Telegram,
WhatsApp). If a GET spent the single-use token, the preview robot would spend it before the
customer taps. The GET only shows a page; the token is spent by the POST that the page's own
form sends (robots do not run scripts nor post forms). A second open after that says the payment
is in progress; an expired link says so and points back to the chat.

What the app must hold:
  request.app.state.fatoura   webhooks.state.AppState (settings, db, billers)
  request.app.state.gateways  the gateway registry: get(code) -> Gateway (KeyError/LookupError
                              when unknown); the card gateway also has `gateway_url` and
                              `form_fields(view, ok_url, fail_url, callback_url, shop_url)`.
"""
from __future__ import annotations

import html
import logging
import re
from dataclasses import replace
from datetime import datetime
from typing import Any, Iterable

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from core.db import Database
from core.errors import UnknownGateway
from core.i18n import Translator, pick_language, translator
from core.models import ChatUser, Checkout, utcnow
from core.payments.base import OUTCOME_REJECTED, CallbackRequest
from core.services import checkout as checkouts
from core.services.confirmations import apply_callback

log = logging.getLogger("fatoura.web.payments")

router = APIRouter()

MAX_CALLBACK_BYTES = 256 * 1024
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "origin",  # the token is in our URLs: never send it to the gateway
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
}


def _gateways(request: Request) -> Any:
    gateways = getattr(request.app.state, "gateways", None)
    if gateways is None:
        raise UnknownGateway("app.state.gateways is not set")
    return gateways


def _lookup(gateways: Any, code: str) -> Any | None:
    try:
        return gateways.get(code)
    except (KeyError, LookupError):
        return None


# --- Callbacks ------------------------------------------------------------------------------


async def _read_body(request: Request) -> bytes | None:
    """The body, or None when it is over MAX_CALLBACK_BYTES."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_CALLBACK_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _failure(gateway: Any) -> Response:
    try:
        answer = gateway.answer(OUTCOME_REJECTED, None)
        return Response(content=answer.body, status_code=answer.status, media_type=answer.media_type)
    except Exception:  # noqa: BLE001
        log.exception("gateway %s could not answer a failure", getattr(gateway, "code", "?"))
        return Response(content=b"FAILURE", status_code=400, media_type="text/plain")


@router.post("/webhooks/payments/{gateway}")
async def payment_callback(gateway: str, request: Request) -> Response:
    try:
        gateways = _gateways(request)
    except UnknownGateway:
        return Response(status_code=404)
    found = _lookup(gateways, gateway)
    if found is None:
        return Response(content=b"unknown gateway", status_code=404, media_type="text/plain")
    try:
        body = await _read_body(request)
        if body is None:
            log.warning("payment callback for %s over %d bytes refused", gateway, MAX_CALLBACK_BYTES)
            return _failure(found)
        headers = {k.lower(): v for k, v in request.headers.items()}
        callback = CallbackRequest(headers=headers, body=body, content_type=request.headers.get("content-type", ""))
        state = request.app.state.fatoura
        _, answer = await apply_callback(state.db, gateways, state.billers, gateway, callback)
        return Response(content=answer.body, status_code=answer.status, media_type=answer.media_type)
    except UnknownGateway:
        return Response(content=b"unknown gateway", status_code=404, media_type="text/plain")
    except Exception:  # noqa: BLE001 - a gateway gets its failure answer, never a 500
        log.exception("payment callback for %s failed", gateway)
        return _failure(found)


# --- Pages ----------------------------------------------------------------------------------

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans Arabic",sans-serif;margin:0;background:#f1f4f8;color:#212529}
main{max-width:30rem;margin:3rem auto;background:#fff;border-radius:12px;padding:1.5rem 1.75rem;box-shadow:0 1px 4px rgba(0,0,0,.08)}
h1{font-size:1.3rem;color:#0d47a1;margin:0 0 .75rem}
p{line-height:1.5}
.amount{font-size:1.6rem;font-weight:700;margin:.5rem 0}
.muted{color:#6c757d;font-size:.9rem}
.test{background:#fff3cd;border-radius:6px;padding:.4rem .7rem;font-size:.9rem}
button{font-size:1.05rem;padding:.7rem 1.4rem;border:0;border-radius:8px;background:#0d47a1;color:#fff;cursor:pointer;width:100%}
ul{padding-inline-start:1.2rem}
"""


def _page(t: Translator, title: str, body: str, status: int = 200, script: str = "") -> HTMLResponse:
    direction = "rtl" if t.rtl else "ltr"
    document = (
        f'<!doctype html><html lang="{t.language}" dir="{direction}"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><meta name="robots" content="noindex">'
        f"<title>{html.escape(title)} · Fatoura</title><style>{_STYLE}</style></head>"
        f"<body><main><h1>{html.escape(title)}</h1>{body}</main>{script}</body></html>"
    )
    return HTMLResponse(document, status_code=status, headers=_PAGE_HEADERS)


def _p(text: str, cls: str = "") -> str:
    return f'<p class="{cls}">{html.escape(text)}</p>' if cls else f"<p>{html.escape(text)}</p>"


def _back_to_chat(t: Translator) -> str:
    return _p(t._("You can close this page and go back to the chat."), "muted")


def _hidden(fields: Iterable[tuple[str, Any]]) -> str:
    return "".join(f'<input type="hidden" name="{html.escape(str(k))}" value="{html.escape(str(v))}">'
                   for k, v in fields)


_AUTOSUBMIT = "<script>document.getElementById('go').submit();</script>"


async def _load(db: Database, token: str) -> tuple[Checkout | None, ChatUser | None, bool]:
    """(checkout, its user, whether the token was already used) for a /pay token."""
    if not _TOKEN.match(token or ""):
        return None, None, False
    async with db.session() as session:
        checkout = await session.scalar(select(Checkout).where(Checkout.token == token))
        used = False
        if checkout is None:
            checkout = await session.scalar(select(Checkout).where(Checkout.token == checkouts.used_token(token)))
            used = checkout is not None
        user = await session.get(ChatUser, checkout.user_id) if checkout is not None and checkout.user_id else None
    return checkout, user, used


def _translator(request: Request, user: ChatUser | None) -> Translator:
    if user is not None:
        return translator(user.locale)
    header = request.headers.get("accept-language", "")
    return translator(pick_language(header.split(",")[0].split(";")[0].strip() or None))


def _link_open(checkout: Checkout, now: datetime) -> bool:
    expires = checkouts._aware(checkout.expires_at)
    return checkout.status == checkouts.PENDING and (expires is None or expires > now)


def _closed_page(t: Translator, checkout: Checkout | None, used: bool, now: datetime) -> HTMLResponse | None:
    """The page for a link that cannot pay now, or None when it can."""
    if checkout is None or checkout.channel != checkouts.CHANNEL_CARD:
        return _page(t, t._("Payment link not found"),
                     _p(t._("This payment link is not valid. Go back to the chat to start a payment.")), 404)
    if checkout.status == checkouts.PAID:
        return _page(t, t._("Already paid"), _p(t._("This payment is already done. Your receipt is in the chat.")))
    if used and checkout.status == checkouts.PENDING:
        return _page(t, t._("Payment in progress"), _p(t._(
            "This payment link was already opened and the payment is in progress. Its confirmation will arrive "
            "in the chat. If you closed the payment page, go back to the chat to start again.")))
    if checkout.status == checkouts.PENDING and not _link_open(checkout, now):
        return _page(t, t._("Link expired"), _p(t._(
            "This payment link has expired and nothing was charged. Go back to the chat to start a new payment.")), 410)
    if checkout.status != checkouts.PENDING:
        return _page(t, t._("Link no longer valid"), _p(t._(
            "This payment link is no longer valid. Go back to the chat to start a new payment.")), 410)
    return None


def _summary(t: Translator, checkout: Checkout, sandbox: bool) -> str:
    parts = [_p(checkout.issuer, "muted"), f'<p class="amount">{html.escape(t.amount(checkout.amount_ttc))}</p>']
    if sandbox:
        parts.append(_p(t._("Test payment: no real money is charged."), "test"))
    return "".join(parts)


@router.get("/pay/{token}", response_class=HTMLResponse)
async def pay_page(token: str, request: Request) -> HTMLResponse:
    state = request.app.state.fatoura
    checkout, user, used = await _load(state.db, token)
    t = _translator(request, user)
    closed = _closed_page(t, checkout, used, utcnow())
    if closed is not None:
        return closed
    gateway = _lookup(_gateways(request), checkout.gateway or "")
    body = (_summary(t, checkout, bool(getattr(gateway, "sandbox", False)))
            + _p(t._("You are going to the secure payment page of the bank (CMI). Fatoura never sees your card."))
            + f'<form id="go" method="post" action="/pay/{html.escape(token)}">'
            + f'<button type="submit">{html.escape(t._("Pay {amount} by card", amount=t.amount(checkout.amount_ttc)))}'
            + "</button></form>")
    return _page(t, t._("Card payment"), body, script=_AUTOSUBMIT)


@router.post("/pay/{token}", response_class=HTMLResponse)
async def pay_form(token: str, request: Request) -> HTMLResponse:
    state = request.app.state.fatoura
    checkout, user, used = await _load(state.db, token)
    t = _translator(request, user)
    closed = _closed_page(t, checkout, used, utcnow())
    if closed is not None:
        return closed
    gateway = _lookup(_gateways(request), checkout.gateway or "")
    if gateway is None or not hasattr(gateway, "form_fields"):
        log.error("no card gateway %r for checkout %s", checkout.gateway, checkout.id)
        return _page(t, t._("Card payment"), _p(t._("Card payment is not available right now. "
                                                     "Go back to the chat to choose another payment method.")), 503)
    if not await checkouts.consume_pay_token(state.db, token):
        return _closed_page(t, checkout, True, utcnow()) or _page(t, t._("Payment in progress"), "")
    base = state.settings.public_base_url.rstrip("/")
    try:
        view = replace(await checkouts.view_of(state.db, checkout), token=token)
        fields = gateway.form_fields(view, ok_url=f"{base}/pay/{token}/ok", fail_url=f"{base}/pay/{token}/fail",
                                     callback_url=f"{base}/webhooks/payments/{checkout.gateway}",
                                     shop_url=f"{base}/pay/{token}/cancel")
        action = gateway.gateway_url
    except Exception:  # noqa: BLE001
        log.exception("card form for checkout %s failed", checkout.id)
        return _page(t, t._("Card payment"), _p(t._("Card payment is not available right now. "
                                                     "Go back to the chat to choose another payment method.")), 503)
    items = fields.items() if hasattr(fields, "items") else fields
    body = (_summary(t, checkout, bool(getattr(gateway, "sandbox", False)))
            + _p(t._("Taking you to the secure payment page…"))
            + f'<form id="go" method="post" action="{html.escape(str(action))}" accept-charset="UTF-8">'
            + _hidden(items)
            + f'<button type="submit">{html.escape(t._("Continue to the payment page"))}</button></form>')
    return _page(t, t._("Card payment"), body, script=_AUTOSUBMIT)


async def _return_page(request: Request, token: str, kind: str) -> HTMLResponse:
    state = request.app.state.fatoura
    checkout, user, _ = await _load(state.db, token)
    t = _translator(request, user)
    if checkout is None:
        return _page(t, t._("Payment link not found"),
                     _p(t._("This payment link is not valid. Go back to the chat to start a payment.")), 404)
    if kind == "ok":
        return _page(t, t._("Payment received"), _p(t._(
            "Thank you. Your payment was received; its confirmation and your receipt arrive in the chat "
            "in a moment.")) + _back_to_chat(t))
    if kind == "fail":
        return _page(t, t._("Payment failed"), _p(t._(
            "The payment did not go through and nothing was charged. In the chat you can try again or "
            "choose another payment method.")) + _back_to_chat(t))
    return _page(t, t._("Payment cancelled"), _p(t._(
        "You left the payment page and nothing was charged. In the chat you can pay later or choose another "
        "payment method.")) + _back_to_chat(t))


@router.api_route("/pay/{token}/ok", methods=["GET", "POST"], response_class=HTMLResponse)
async def pay_ok(token: str, request: Request) -> HTMLResponse:
    return await _return_page(request, token, "ok")


@router.api_route("/pay/{token}/fail", methods=["GET", "POST"], response_class=HTMLResponse)
async def pay_fail(token: str, request: Request) -> HTMLResponse:
    return await _return_page(request, token, "fail")


@router.api_route("/pay/{token}/cancel", methods=["GET", "POST"], response_class=HTMLResponse)
async def pay_cancel(token: str, request: Request) -> HTMLResponse:
    return await _return_page(request, token, "cancel")
