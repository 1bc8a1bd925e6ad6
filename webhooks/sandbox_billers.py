"""The sandbox billers served over the generic HTTP biller contract (docs/biller-http-contract.md).

This lets the HTTP connector be exercised end to end, and gives a real biller a reference server
to compare with. Only SandboxBiller connectors are served: an HTTP biller is never proxied.
Every refusal is the contract's JSON error; garbage input is a 4xx, never a 500.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import re
from datetime import date
from typing import Any, Callable

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from core.billers import http as wire
from core.billers.base import InvoiceFilter
from core.billers.catalog import make_query
from core.billers.sandbox.connector import SandboxBiller
from core.config import Settings
from core.errors import FatouraError, InvalidInput, InvoiceNotFound, UnknownAccount, UnknownBiller

log = logging.getLogger("fatoura.sandbox.billers")

MAX_BODY_BYTES = 64 * 1024
_ISSUER_RE = re.compile(r"[^\x00-\x1f]{1,128}")


def sandbox_token(settings: Settings) -> str:
    """The bearer token of the sandbox billers: an HMAC of SECRET_KEY, so the key itself never travels."""
    key = settings.secret_key.get_secret_value().encode()
    return hmac.new(key, b"fatoura sandbox billers v1", hashlib.sha256).hexdigest()


class _Unauthorized(Exception):
    pass


def _error(code: str, status: int, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


class _ContractRoute(APIRoute):
    """Turns typed errors and bad input into the contract's JSON errors, whatever the endpoint."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except _Unauthorized:
                return _error("unauthorized", 401, "missing or wrong bearer token")
            except FatouraError as exc:
                code, status = wire.error_code(exc)
                # The msgid, not str(exc): some details echo the input, and the input may be a secret.
                return _error(code, status, exc.msgid)
            except (wire.WireError, RequestValidationError) as exc:
                return _error("invalid_input", 400, str(exc) if isinstance(exc, wire.WireError) else "bad request")
            except Exception:  # a fault of ours, not of the input: the contract's "try later"
                log.exception("sandbox biller %s failed", request.url.path)
                return _error("biller_unavailable", 503, "internal error")

        return guarded


router = APIRouter(prefix="/sandbox/billers", tags=["sandbox"], route_class=_ContractRoute)


def _sandbox_biller(biller: str, request: Request) -> SandboxBiller:
    state = request.app.state.fatoura
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    expected = sandbox_token(state.settings)
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise _Unauthorized()
    connector = state.billers.get(biller) if biller in state.billers else None
    if not isinstance(connector, SandboxBiller):
        raise UnknownBiller(f"no sandbox biller {biller!r}")
    return connector


async def _json_body(request: Request) -> dict[str, Any]:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise InvalidInput("body too large")
    data = wire.loads(bytes(body))
    if not isinstance(data, dict):
        raise InvalidInput("body must be a JSON object")
    return data


def _optional_text(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"{key} must be a string")
    return value


def _ref(ref: str) -> str:
    # Checked before any query: a NUL or a stray character would reach the database as is.
    if not wire.REF_RE.fullmatch(ref):
        raise UnknownAccount(f"malformed account_ref {ref!r}")
    return ref


def _number(number: str) -> str:
    if not wire.NUMBER_RE.fullmatch(number):
        raise InvoiceNotFound(f"malformed invoice number {number!r}")
    return number


def _filters(request: Request) -> InvoiceFilter:
    params = request.query_params

    def text(key: str, pattern: re.Pattern[str]) -> str | None:
        raw = params.get(key)
        if raw and not pattern.fullmatch(raw):
            raise InvalidInput(f"malformed {key}")
        return raw or None

    def integer(key: str, default: int) -> int:
        raw = params.get(key)
        if raw is None:
            return default
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 6:
            raise InvalidInput(f"{key} must be a positive integer")
        return int(raw)

    def day(key: str) -> date | None:
        raw = params.get(key)
        return wire.date_from_wire(raw, key) if raw else None

    status = params.get("status") or "all"
    if status != "all" and status not in wire.STATUSES:
        raise InvalidInput(f"unknown status {status!r}")
    return InvoiceFilter(
        status=None if status == "all" else status, issuer=text("issuer", _ISSUER_RE),
        number=text("number", wire.NUMBER_RE), date_from=day("date_from"), date_to=day("date_to"),
        billing_period=text("billing_period", wire.PERIOD_RE),
        page=integer("page", 1), page_size=integer("page_size", 10),
    )


@router.get("/{biller}/info")
async def info(connector: SandboxBiller = Depends(_sandbox_biller)) -> JSONResponse:
    return JSONResponse(wire.info_to_wire(connector.info))


@router.post("/{biller}/accounts/lookup")
async def lookup(request: Request, connector: SandboxBiller = Depends(_sandbox_biller)) -> JSONResponse:
    data = await _json_body(request)
    service, identifier = _optional_text(data, "service"), _optional_text(data, "identifier")
    if not service or not identifier:
        raise InvalidInput("service and identifier are required")
    # make_query again: a real biller validates what it receives, and it is idempotent on
    # values Fatoura already normalised.
    query = make_query(connector.info, service, identifier, _optional_text(data, "secret"),
                       _optional_text(data, "terminal"))
    return JSONResponse(wire.account_to_wire(await connector.find_account(query)))


@router.get("/{biller}/accounts/{ref}/invoices")
async def invoices(ref: str, request: Request, connector: SandboxBiller = Depends(_sandbox_biller)) -> JSONResponse:
    page = await connector.list_invoices(_ref(ref), _filters(request))
    return JSONResponse(wire.page_to_wire(page))


# {number:path}: invoice numbers may hold a "/", which arrives percent-decoded.
@router.get("/{biller}/accounts/{ref}/invoices/{number:path}/pdf")
async def invoice_pdf(ref: str, number: str, request: Request,
                      connector: SandboxBiller = Depends(_sandbox_biller)) -> Response:
    lang = request.query_params.get("lang") or "fr"
    if lang not in ("fr", "ar", "en"):
        raise InvalidInput(f"unknown language {lang!r}")
    ref, number = _ref(ref), _number(number)
    await connector.get_invoice(ref, number)  # unknown account or invoice: a typed 404 before rendering
    pdf = await connector.fetch_pdf(ref, number, language=lang)
    return Response(pdf, media_type="application/pdf")


@router.post("/{biller}/accounts/{ref}/paid")
async def paid(ref: str, request: Request, connector: SandboxBiller = Depends(_sandbox_biller)) -> JSONResponse:
    notice = wire.notice_from_wire(await _json_body(request))
    await connector.notify_paid(_ref(ref), notice)
    return JSONResponse({"status": "ok"})


if __name__ == "__main__":  # `python -m webhooks.sandbox_billers` prints the token for HTTP_BILLERS
    from core.config import get_settings

    print(sandbox_token(get_settings()))
