"""Biller events: a biller tells Fatoura that it issued an invoice (docs/biller-http-contract.md).

    POST /webhooks/billers/{biller}
    X-Fatoura-Timestamp: 1764619200                      (Unix seconds, when the biller signed)
    X-Fatoura-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>
    {"id": "evt-42", "type": "invoice.issued", "account_ref": "...", "invoice": {"number": "..."}}

An event is refused when its signature is wrong (forged), its timestamp is outside
BILLER_EVENT_TOLERANCE_SECONDS (replayed later), or its id was accepted before (replayed within
the window). The invoice itself is read back from the biller's connector, so an event can only
point at an invoice the biller really holds; it is then announced (core.services.notifications).

Secrets, per biller: BILLER_EVENT_SECRETS {"code": "secret"}, else the "event_secret" of its
HTTP_BILLERS entry, else, for a sandbox biller with SANDBOX on, an HMAC of SECRET_KEY (like the
sandbox gateways' keys: the simulator and the verifier agree, no key is written in the code).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError

from core.billers.base import InvoiceFilter
from core.billers.registry import BillerRegistry
from core.config import Settings
from core.db import Database
from core.errors import BillerUnavailable, FatouraError
from core.models import BillerEvent, utcnow
from core.services import notifications

INVOICE_ISSUED = "invoice.issued"
KNOWN_TYPES = (INVOICE_ISSUED, "invoice.paid")  # paid: accepted; reminders check the status anyway
MAX_BODY = 64 * 1024


class EventRefused(Exception):
    """The event is not accepted; `status` is the HTTP answer (401 forged, 409 replayed, 400 malformed, 404 biller)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def _secret_value(value: Any) -> str | None:
    text = value.get_secret_value() if hasattr(value, "get_secret_value") else value
    return str(text) if text else None


def event_secret(settings: Settings, biller: str) -> str | None:
    explicit = _secret_value(settings.biller_event_secrets.get(biller))
    if explicit:
        return explicit
    conf = settings.http_billers.get(biller) or {}
    if _secret_value(conf.get("event_secret")):
        return _secret_value(conf.get("event_secret"))
    if settings.sandbox:
        from core.billers.catalog import SANDBOX_BILLERS

        if biller in {info.code for info in SANDBOX_BILLERS}:
            key = settings.secret_key.get_secret_value().encode()
            return hmac.new(key, f"fatoura sandbox biller events {biller} v1".encode(), hashlib.sha256).hexdigest()[:32]
    return None


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def signed_headers(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """What a biller (or the sandbox) sends with an event body."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {"Content-Type": "application/json", "X-Fatoura-Timestamp": str(timestamp),
            "X-Fatoura-Signature": sign(secret, timestamp, body)}


def verify(secret: str, body: bytes, timestamp: str | None, signature: str | None, *, tolerance: int,
           now: float | None = None) -> None:
    if not timestamp or not signature or not timestamp.isdigit() or len(timestamp) > 12:
        raise EventRefused(401, "missing or malformed signature headers")
    if not hmac.compare_digest(sign(secret, int(timestamp), body), signature.strip()):
        raise EventRefused(401, "bad signature")
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > tolerance:
        raise EventRefused(409, "timestamp outside the replay window")


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    account_ref: str
    number: str | None


def parse(body: bytes) -> Event:
    if len(body) > MAX_BODY:
        raise EventRefused(400, "body too large")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise EventRefused(400, "body is not JSON") from None
    if not isinstance(data, dict):
        raise EventRefused(400, "body is not a JSON object")
    event_id, kind, account_ref = data.get("id"), data.get("type"), data.get("account_ref")
    invoice = data.get("invoice") if isinstance(data.get("invoice"), dict) else {}
    number = invoice.get("number")
    if not isinstance(event_id, str) or not 1 <= len(event_id) <= 128:
        raise EventRefused(400, "id must be a string of 1-128 characters")
    if kind not in KNOWN_TYPES:
        raise EventRefused(400, f"type must be one of {', '.join(KNOWN_TYPES)}")
    if not isinstance(account_ref, str) or not 1 <= len(account_ref) <= 128:
        raise EventRefused(400, "account_ref must be a string of 1-128 characters")
    if not isinstance(number, str) or not 1 <= len(number) <= 32:
        raise EventRefused(400, "invoice.number must be a string of 1-32 characters")
    return Event(event_id, kind, account_ref, number)


async def receive(settings: Settings, db: Database, billers: BillerRegistry, biller: str, body: bytes,
                  timestamp: str | None, signature: str | None) -> tuple[str, int]:
    """Verify and apply one event; returns (outcome, messages queued). Raises EventRefused."""
    secret = event_secret(settings, biller) if biller in billers else None
    if secret is None:
        raise EventRefused(404, "unknown biller")
    verify(secret, body, timestamp, signature, tolerance=settings.biller_event_tolerance_seconds)
    event = parse(body)
    record = BillerEvent(biller=biller, event_id=event.id, event_type=event.type, received_at=utcnow())
    try:
        async with db.transaction() as session:
            session.add(record)
    except IntegrityError:
        raise EventRefused(409, "event already received") from None
    event_row = record.id
    if event.type != INVOICE_ISSUED:
        return await _done(db, event_row, "ignored", 0)
    try:
        page = await billers.get(biller).list_invoices(event.account_ref,
                                                       InvoiceFilter(status=None, number=event.number))
    except FatouraError as error:
        if not isinstance(error, BillerUnavailable):
            return await _done(db, event_row, f"refused by the biller: {type(error).__name__}", 0)
        await _forget(db, event_row)  # the biller may send it again once it answers
        raise EventRefused(503, "the biller's API did not answer; send the event again later") from None
    except (OSError, TimeoutError):
        await _forget(db, event_row)
        raise EventRefused(503, "the biller's API did not answer; send the event again later") from None
    if not page.items:
        return await _done(db, event_row, "unknown invoice", 0)
    queued = await notifications.announce(db, biller, event.account_ref, page.items,
                                          batch=f"event:{biller}:{event.id}"[:64])
    return await _done(db, event_row, "announced", queued)


async def _done(db: Database, event_row: int, outcome: str, queued: int) -> tuple[str, int]:
    async with db.transaction() as session:
        await session.execute(update(BillerEvent).where(BillerEvent.id == event_row)
                              .values(outcome=f"{outcome}: {queued}"[:64]))
    return outcome, queued


async def _forget(db: Database, event_row: int) -> None:
    async with db.transaction() as session:
        await session.execute(delete(BillerEvent).where(BillerEvent.id == event_row))


async def post_event(base_url: str, settings: Settings, biller: str, payload: dict[str, Any],
                     timeout: float = 10.0) -> tuple[int, str]:
    """Send a signed event to `{base_url}/webhooks/billers/{biller}` as a biller would (the
    sandbox uses it; the key is the biller's event secret). Returns (HTTP status, body)."""
    import httpx

    secret = event_secret(settings, biller)
    if secret is None:
        raise ValueError(f"no event secret for biller {biller!r}")
    body = json.dumps(payload).encode()
    async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
        response = await client.post(f"{base_url.rstrip('/')}/webhooks/billers/{biller}", content=body,
                                     headers=signed_headers(secret, body))
    return response.status_code, response.text


def issued_event(account_ref: str, number: str, event_id: str | None = None) -> dict[str, Any]:
    import secrets

    return {"id": event_id or f"evt-{secrets.token_hex(8)}", "type": INVOICE_ISSUED, "account_ref": account_ref,
            "invoice": {"number": number}}
