"""The generic HTTP biller: any biller serving docs/biller-http-contract.md plugs in through it.

Both directions of the wire format live here (records <-> JSON, typed errors <-> error codes) so
the sandbox server (webhooks/sandbox_billers.py) and this client cannot drift apart.
A biller is outside our trust boundary: whatever it answers is validated, and anything off
contract becomes BillerUnavailable rather than an exception the conversation does not expect.
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, NoReturn
from urllib.parse import quote

import httpx

from core import errors
from core.billers.base import (
    AccountQuery,
    BillerAccount,
    BillerInfo,
    BillerInvoice,
    InvoiceFilter,
    InvoicePage,
    PaidNotice,
    Service,
)
from core.models import InvoiceStatus
from core.money import quantize

log = logging.getLogger("fatoura.billers.http")

# code -> (typed error, HTTP status). The table of docs/biller-http-contract.md, section Errors.
ERROR_CODES: dict[str, tuple[type[errors.FatouraError], int]] = {
    "invalid_input": (errors.InvalidInput, 422),
    "invalid_phone_number": (errors.InvalidPhoneNumber, 422),
    "invalid_customer_number": (errors.InvalidCustomerNumber, 422),
    "invalid_subscription_code": (errors.InvalidSubscriptionCode, 422),
    "invalid_payment_code": (errors.InvalidPaymentCode, 422),
    "invalid_email": (errors.InvalidEmail, 422),
    "invalid_amount": (errors.InvalidAmount, 422),
    "invalid_date": (errors.InvalidDate, 422),
    "unknown_biller": (errors.UnknownBiller, 404),
    "unknown_service": (errors.UnknownService, 422),
    "unknown_terminal": (errors.UnknownTerminal, 422),
    "unknown_account": (errors.UnknownAccount, 404),
    "wrong_payment_code": (errors.WrongPaymentCode, 403),
    "wrong_email": (errors.WrongEmail, 403),
    "invoice_not_found": (errors.InvoiceNotFound, 404),
    "mixed_issuers": (errors.MixedIssuers, 422),
}
_CODE_OF = {cls: code for code, (cls, _status) in ERROR_CODES.items()}

IDENTIFIER_KINDS = {"phone", "customer_number", "subscription_code", "marsa_identifier"}
SECRET_KINDS = {"payment_code", "email"}
REF_RE = re.compile(r"[A-Za-z0-9._~:@+\-]{1,128}")
NUMBER_RE = re.compile(r"[A-Za-z0-9\-/]{1,32}")
_AMOUNT_RE = re.compile(r"[0-9]{1,12}(\.[0-9]{1,2})?")
_RATE_RE = re.compile(r"(0(\.[0-9]{1,4})?|1(\.0{1,4})?)")
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
PERIOD_RE = re.compile(r"(0[1-9]|1[0-2])/[0-9]{4}")
MAX_JSON_BYTES = 2 * 1024 * 1024
MAX_PDF_BYTES = 20 * 1024 * 1024
STATUSES = {status.value for status in InvoiceStatus}


class WireError(ValueError):
    """A payload off contract. The client turns it into BillerUnavailable, the server into 4xx."""


def error_code(exc: errors.FatouraError) -> tuple[str, int]:
    """The (code, HTTP status) a server answers for a typed error; the nearest mapped ancestor wins."""
    for cls in type(exc).__mro__:
        if cls in _CODE_OF:
            code = _CODE_OF[cls]
            return code, ERROR_CODES[code][1]
    return "biller_unavailable", 503


# --- reading JSON: strict, because a float or a missing field must not reach a payment ---

def loads(content: bytes) -> Any:
    def refuse(name: str) -> Any:
        raise WireError(f"non-finite number {name}")

    try:
        return json.loads(content, parse_constant=refuse)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise WireError(f"not JSON: {type(exc).__name__}") from None


def _get(obj: Any, key: str, kind: type, *, optional: bool = False) -> Any:
    if not isinstance(obj, dict):
        raise WireError(f"expected an object around {key!r}")
    value = obj.get(key)
    if value is None and optional:
        return None
    # bool is an int subclass: refuse `true` where a count is expected.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise WireError(f"{key!r} must be {kind.__name__}")
    return value


def _text(obj: Any, key: str, *, optional: bool = False, max_len: int = 512) -> str | None:
    value = _get(obj, key, str, optional=optional)
    if value is not None and (not value or len(value) > max_len):
        raise WireError(f"{key!r} empty or longer than {max_len}")
    if value is not None and ("\x00" in value or _unencodable(value)):
        raise WireError(f"{key!r} holds a NUL or an unpaired surrogate")
    return value


def _unencodable(value: str) -> bool:
    # json.loads lets "\ud800" through; a database cannot store it.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def amount_from_wire(value: Any, what: str = "amount") -> Decimal:
    """'249.84' -> Decimal('249.84'). Only strings: a JSON number has already lost the centimes."""
    if not isinstance(value, str) or not _AMOUNT_RE.fullmatch(value):
        raise WireError(f"{what} must be a decimal string like \"249.84\"")
    return quantize(Decimal(value))


def amount_to_wire(value: Decimal) -> str:
    return str(quantize(value))


def _date(obj: Any, key: str, *, optional: bool = False) -> date | None:
    value = _get(obj, key, str, optional=optional)
    if value is None:
        return None
    return date_from_wire(value, key)


def date_from_wire(value: str, what: str) -> date:
    if not _DATE_RE.fullmatch(value):
        raise WireError(f"{what} must be YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise WireError(f"{what} is not a date") from None


def datetime_from_wire(value: Any, what: str) -> datetime:
    if not isinstance(value, str) or len(value) > 40:
        raise WireError(f"{what} must be an ISO 8601 timestamp")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise WireError(f"{what} is not a timestamp") from None
    if parsed.tzinfo is None:
        raise WireError(f"{what} needs an offset")
    return parsed


def datetime_to_wire(value: datetime) -> str:
    # SQLite hands back naive datetimes; they were stored as UTC.
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).isoformat()


def _flat_objects(obj: Any, key: str) -> tuple[dict[str, Any], ...]:
    items = _get(obj, key, list, optional=True) or []
    for item in items:
        if not isinstance(item, dict) or not all(
            isinstance(k, str) and (v is None or isinstance(v, (str, int, bool))) for k, v in item.items()
        ):
            raise WireError(f"{key!r} must hold flat objects of strings, integers, booleans or null")
    return tuple(items)


def _strings(obj: Any, key: str) -> tuple[str, ...]:
    items = _get(obj, key, list, optional=True) or []
    if not all(isinstance(item, str) and 0 < len(item) <= 128 for item in items):
        raise WireError(f"{key!r} must be a list of strings")
    return tuple(items)


def info_from_wire(obj: Any, code: str, name: str | None = None) -> BillerInfo:
    services = []
    for entry in _get(obj, "services", list):
        identifier, secret = _text(entry, "identifier"), _text(entry, "secret", optional=True)
        phone_kind = _text(entry, "phone_kind", optional=True)
        if identifier not in IDENTIFIER_KINDS or (secret is not None and secret not in SECRET_KINDS):
            raise WireError(f"unknown identifier/secret kind {identifier!r}/{secret!r}")
        if phone_kind not in (None, "mobile", "fixe"):
            raise WireError(f"unknown phone kind {phone_kind!r}")
        services.append(Service(
            code=_text(entry, "code", max_len=64), label=_text(entry, "label"), identifier=identifier,
            secret=secret, needs_terminal=bool(_get(entry, "needs_terminal", bool, optional=True)),
            phone_kind=phone_kind,
        ))
    archive_years = _get(obj, "archive_years", int, optional=True)
    return BillerInfo(
        code=code, name=name or _text(obj, "name", optional=True) or code, services=tuple(services),
        issuers=_strings(obj, "issuers"), terminals=_strings(obj, "terminals"), archive_years=archive_years,
    )


def info_to_wire(info: BillerInfo) -> dict[str, Any]:
    return {
        "code": info.code, "name": info.name,
        "services": [{"code": s.code, "label": s.label, "identifier": s.identifier, "secret": s.secret,
                      "needs_terminal": s.needs_terminal, "phone_kind": s.phone_kind} for s in info.services],
        "issuers": list(info.issuers), "terminals": list(info.terminals), "archive_years": info.archive_years,
    }


def account_from_wire(obj: Any, biller: str) -> BillerAccount:
    ref = _text(obj, "account_ref", max_len=128)
    if not REF_RE.fullmatch(ref):
        raise WireError("account_ref has characters outside the contract")
    return BillerAccount(
        biller=biller, service=_text(obj, "service", max_len=64), account_ref=ref,
        identifier=_text(obj, "identifier"), holder_name=_text(obj, "holder_name"),
        customer_number=_text(obj, "customer_number", optional=True),
        customs_code=_text(obj, "customs_code", optional=True), terminal=_text(obj, "terminal", optional=True),
    )


def account_to_wire(account: BillerAccount) -> dict[str, Any]:
    return {"account_ref": account.account_ref, "service": account.service, "identifier": account.identifier,
            "holder_name": account.holder_name, "customer_number": account.customer_number,
            "customs_code": account.customs_code, "terminal": account.terminal}


def invoice_from_wire(obj: Any) -> BillerInvoice:
    number = _text(obj, "number", max_len=32)
    ht = amount_from_wire(_get(obj, "amount_ht", str), "amount_ht")
    ttc = amount_from_wire(_get(obj, "amount_ttc", str), "amount_ttc")
    tva_raw = _get(obj, "amount_tva", str, optional=True)
    tva = ttc - ht if tva_raw is None else amount_from_wire(tva_raw, "amount_tva")
    if tva < 0 or ht + tva != ttc:
        raise WireError(f"invoice {number}: HT + TVA != TTC")
    status = _text(obj, "status", max_len=16)
    period = _text(obj, "billing_period", optional=True, max_len=7)
    rate = _get(obj, "tva_rate", str, optional=True) or "0.20"
    if status not in STATUSES or (period and not PERIOD_RE.fullmatch(period)) or not _RATE_RE.fullmatch(rate):
        raise WireError(f"invoice {number}: bad status, billing period or TVA rate")
    if (_get(obj, "currency", str, optional=True) or "MAD") != "MAD":
        raise WireError(f"invoice {number}: only MAD is supported")
    paid_at = obj.get("paid_at")
    return BillerInvoice(
        number=number, issuer=_text(obj, "issuer", max_len=128), client_name=_text(obj, "client_name"),
        invoice_date=_date(obj, "invoice_date"), due_date=_date(obj, "due_date"),
        amount_ht=ht, amount_tva=tva, amount_ttc=ttc, status=status,
        invoice_type=_text(obj, "invoice_type", optional=True, max_len=64) or "Principale",
        call_number=_text(obj, "call_number", optional=True, max_len=32),
        customer_number=_text(obj, "customer_number", optional=True, max_len=64),
        billing_period=period, tva_rate=Decimal(rate),
        payment_means=_strings(obj, "payment_means"),
        prestations=_flat_objects(obj, "prestations"), messages=_flat_objects(obj, "messages"),
        description=_text(obj, "description", optional=True, max_len=4096),
        paid_at=None if paid_at is None else datetime_from_wire(paid_at, "paid_at"),
        transaction_id=_text(obj, "transaction_id", optional=True, max_len=128),
    )


def invoice_to_wire(invoice: BillerInvoice) -> dict[str, Any]:
    return {
        "number": invoice.number, "issuer": invoice.issuer, "client_name": invoice.client_name,
        "invoice_date": invoice.invoice_date.isoformat(), "due_date": invoice.due_date.isoformat(),
        "amount_ht": amount_to_wire(invoice.amount_ht), "amount_tva": amount_to_wire(invoice.amount_tva),
        "amount_ttc": amount_to_wire(invoice.amount_ttc), "tva_rate": str(invoice.tva_rate),
        "currency": invoice.currency, "status": invoice.status, "invoice_type": invoice.invoice_type,
        "call_number": invoice.call_number, "customer_number": invoice.customer_number,
        "billing_period": invoice.billing_period, "payment_means": list(invoice.payment_means),
        "prestations": list(invoice.prestations), "messages": list(invoice.messages),
        "description": invoice.description,
        "paid_at": datetime_to_wire(invoice.paid_at) if invoice.paid_at else None,
        "transaction_id": invoice.transaction_id,
    }


def page_from_wire(obj: Any) -> InvoicePage:
    items = tuple(invoice_from_wire(item) for item in _get(obj, "items", list))
    total, page, size = _get(obj, "total", int), _get(obj, "page", int), _get(obj, "page_size", int)
    if total < len(items) or page < 1 or not 1 <= size <= 100 or len(items) > size:
        raise WireError("inconsistent page counts")
    return InvoicePage(items=items, total=total, page=page, page_size=size,
                       totals_ttc=amount_from_wire(_get(obj, "totals_ttc", str), "totals_ttc"))


def page_to_wire(page: InvoicePage) -> dict[str, Any]:
    return {"items": [invoice_to_wire(item) for item in page.items], "total": page.total, "page": page.page,
            "page_size": page.page_size, "totals_ttc": amount_to_wire(page.totals_ttc)}


def filter_to_params(filters: InvoiceFilter) -> dict[str, str]:
    params = {"status": filters.status or "all", "page": str(filters.page), "page_size": str(filters.page_size)}
    for key in ("issuer", "number", "billing_period"):
        if getattr(filters, key):
            params[key] = getattr(filters, key)
    for key in ("date_from", "date_to"):
        if getattr(filters, key):
            params[key] = getattr(filters, key).isoformat()
    return params


def notice_to_wire(notice: PaidNotice) -> dict[str, Any]:
    return {"invoice_numbers": list(notice.invoice_numbers), "transaction_id": notice.transaction_id,
            "amount": amount_to_wire(notice.amount), "paid_at": datetime_to_wire(notice.paid_at),
            "channel": notice.channel}


def notice_from_wire(obj: Any) -> PaidNotice:
    numbers = _get(obj, "invoice_numbers", list)
    if not 1 <= len(numbers) <= 100 or not all(isinstance(n, str) and NUMBER_RE.fullmatch(n) for n in numbers):
        raise WireError("invoice_numbers must list 1 to 100 invoice numbers")
    return PaidNotice(
        invoice_numbers=tuple(numbers), transaction_id=_text(obj, "transaction_id", max_len=128),
        amount=amount_from_wire(_get(obj, "amount", str)), paid_at=datetime_from_wire(obj.get("paid_at"), "paid_at"),
        channel=_text(obj, "channel", max_len=64),
    )


# --- the client ---

class HttpBiller:
    """One biller reached over the contract; one httpx client (one connection pool) per biller."""

    def __init__(self, info: BillerInfo, base_url: str, token: str | None = None, *, timeout: float = 10.0,
                 retries: int = 2, backoff: float = 0.2) -> None:
        if not re.match(r"https?://", base_url or ""):
            raise ValueError(f"biller {info.code}: base_url must start with http:// or https://")
        self.info = info
        self._configured_name = info.name if info.services or info.name != info.code else None
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._retries = max(0, retries)
        self._backoff = backoff
        self._client: httpx.AsyncClient | None = None
        self._info_lock = asyncio.Lock()

    def __repr__(self) -> str:  # no token: reprs end up in logs and tracebacks
        return f"HttpBiller({self.info.code!r}, {self.base_url!r})"

    @classmethod
    def from_config(cls, code: str, conf: dict[str, Any], timeout: float = 10.0) -> "HttpBiller":
        """One HTTP_BILLERS entry: base_url, token, name, timeout, retries, info (see the contract doc)."""
        name = conf.get("name") or None
        raw_info = conf.get("info")
        try:
            if raw_info:
                info = info_from_wire(json.loads(raw_info) if isinstance(raw_info, str) else raw_info, code, name)
            else:
                info = BillerInfo(code=code, name=name or code, services=())
            timeout = float(conf.get("timeout") or timeout)
            retries = int(conf.get("retries") or 2)
        except (WireError, ValueError) as exc:
            raise ValueError(f"HTTP_BILLERS[{code!r}]: {exc}") from None
        return cls(info, conf.get("base_url", ""), conf.get("token") or None, timeout=timeout, retries=retries)

    def _http(self) -> httpx.AsyncClient:
        # Created on first use, inside the event loop that will use it.
        if self._client is None:
            headers = {"Accept": "application/json", "User-Agent": "Fatoura-HttpBiller/1"}
            if self._token:
                headers["Authorization"] = f"Bearer {self._token}"
            self._client = httpx.AsyncClient(base_url=self.base_url + "/", headers=headers,
                                             timeout=httpx.Timeout(self._timeout), follow_redirects=False)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _unavailable(self, method: str, path: str, why: str) -> errors.BillerUnavailable:
        log.warning("biller %s: %s %s: %s", self.info.code, method, path, why)
        return errors.BillerUnavailable(f"{self.info.code}: {why}")

    async def _send(self, method: str, path: str, *, params: dict[str, str] | None = None,
                    body: dict[str, Any] | None = None, max_bytes: int = MAX_JSON_BYTES) -> tuple[int, str, bytes]:
        """(status, content type, body) of the first answer below 500; GETs retry transport faults and 5xx."""
        content = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if content is not None else None
        attempts = 1 + (self._retries if method == "GET" else 0)
        why = ""
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
            try:
                async with self._http().stream(method, path.lstrip("/"), params=params, content=content,
                                               headers=headers) as response:
                    if response.status_code >= 500:
                        why = f"HTTP {response.status_code}"
                        continue
                    data = bytearray()
                    async for chunk in response.aiter_bytes():
                        data += chunk
                        if len(data) > max_bytes:
                            raise self._unavailable(method, path, f"answer over {max_bytes} bytes")
                    return response.status_code, response.headers.get("content-type", ""), bytes(data)
            except httpx.HTTPError as exc:  # refused, reset, timeout, bad headers
                why = type(exc).__name__
        raise self._unavailable(method, path, f"{why} after {attempts} attempt(s)")

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        status, _ctype, data = await self._send(method, path, **kwargs)
        if 200 <= status < 300:
            try:
                return loads(data) if data else None
            except WireError as exc:
                raise self._unavailable(method, path, str(exc)) from None
        self._raise_refusal(method, path, status, data)

    def _raise_refusal(self, method: str, path: str, status: int, data: bytes) -> NoReturn:
        """A 4xx with a known code becomes its typed error; anything else means the biller is unusable."""
        code = None
        if 400 <= status < 500:
            try:
                code = _text(_get(loads(data), "error", dict), "code", max_len=64)
            except WireError:
                code = None
        if code in ERROR_CODES:
            cls = ERROR_CODES[code][0]
            if code == "unknown_biller":
                log.warning("biller %s: answers unknown_biller; check its base_url", self.info.code)
            raise cls(f"{self.info.code} answered {code}")
        if status == 401:
            why = "401 unauthorized: check the token in HTTP_BILLERS"
        else:
            why = f"HTTP {status} code {code!r}" if code else f"HTTP {status} off contract"
        raise self._unavailable(method, path, why)

    @staticmethod
    def _account_path(account_ref: str) -> str:
        if not isinstance(account_ref, str) or not REF_RE.fullmatch(account_ref):
            raise errors.UnknownAccount(f"malformed account_ref {account_ref!r}")
        return f"accounts/{quote(account_ref, safe='')}"

    async def load_info(self, *, force: bool = False) -> BillerInfo:
        """Services, issuers and terminals from GET /info, once; the configured code and name win."""
        async with self._info_lock:
            if force or not self.info.services:
                answer = await self._json("GET", "info")
                try:
                    self.info = info_from_wire(answer, self.info.code, self._configured_name)
                except WireError as exc:
                    raise self._unavailable("GET", "info", str(exc)) from None
        return self.info

    async def find_account(self, query: AccountQuery) -> BillerAccount:
        body = {"service": query.service, "identifier": query.identifier, "secret": query.secret,
                "terminal": query.terminal}
        answer = await self._json("POST", "accounts/lookup", body=body)
        try:
            return account_from_wire(answer, self.info.code)
        except WireError as exc:
            raise self._unavailable("POST", "accounts/lookup", str(exc)) from None

    async def list_invoices(self, account_ref: str, filters: InvoiceFilter) -> InvoicePage:
        path = f"{self._account_path(account_ref)}/invoices"
        answer = await self._json("GET", path, params=filter_to_params(filters))
        try:
            return page_from_wire(answer)
        except WireError as exc:
            raise self._unavailable("GET", path, str(exc)) from None

    async def get_invoice(self, account_ref: str, number: str) -> BillerInvoice:
        page = await self.list_invoices(account_ref, InvoiceFilter(status=None, number=number))
        for invoice in page.items:
            if invoice.number == number:
                return invoice
        raise errors.InvoiceNotFound(f"{account_ref} has no invoice {number!r}")

    async def fetch_pdf(self, account_ref: str, number: str, language: str = "fr") -> bytes:
        if not isinstance(number, str) or not NUMBER_RE.fullmatch(number):
            raise errors.InvoiceNotFound(f"malformed invoice number {number!r}")
        path = f"{self._account_path(account_ref)}/invoices/{quote(number, safe='')}/pdf"
        lang = language if language in ("fr", "ar", "en") else "fr"
        status, ctype, data = await self._send("GET", path, params={"lang": lang}, max_bytes=MAX_PDF_BYTES)
        if not 200 <= status < 300:
            self._raise_refusal("GET", path, status, data)
        if not ctype.startswith("application/pdf") or not data.startswith(b"%PDF-"):
            raise self._unavailable("GET", path, "answer is not a PDF")
        return data

    async def notify_paid(self, account_ref: str, notice: PaidNotice) -> None:
        """Any 2xx is an acknowledgement, whatever its body; the biller dedupes on transaction_id."""
        path = f"{self._account_path(account_ref)}/paid"
        status, _ctype, data = await self._send("POST", path, body=notice_to_wire(notice))
        if not 200 <= status < 300:
            self._raise_refusal("POST", path, status, data)
