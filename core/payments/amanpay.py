"""Amanpay / M2T: a Tashilat cash payment code, and Amanpay's card, PayDirect and Amanty pages.

No public API, callback format or signature of Amanpay is known (../shared/reference/payments.md),
so this is OUR contract, to be replaced piece by piece when M2T's is obtained; every raw callback
is stored by the confirmation service.

Cash code. 12 digits, printed as seed 002 prints one: `18 0857 637-947` (`format_tashilat_code`).
Sandbox: 11 random digits (first not 0, from `secrets`) and a Luhn check digit. It is payable
for `amanpay_expiry_hours` (48 h by default: a cash code has to leave time to reach an agency,
and the checkout service uses the same default).

Callback (`POST /webhooks/payments/amanpay`), JSON:
    {"code": "180857637947",                 the 12-digit cash code (or the code of the order)
     "orderId": "FT240115ABCDEF1234" | null, our order id when known
     "transactionId": "AMP-...",             unique per payment (our transaction id)
     "amount": "1920.00",                    string or JSON number, dot, at most 2 decimals
     "currency": "MAD",                      "MAD" or "504"
     "method": "tashilat",                   tashilat | card | paydirect | amanty
     "status": "paid",                       paid | refused
     "reason": "...",                        optional, for a refusal
     "paidAt": "2024-01-15T13:10:09+01:00",  optional ISO 8601, else the timestamp
     "timestamp": 1705320609}                Unix seconds when sent: refused beyond 10 minutes
    header  x-amanpay-signature: sha256=<lower-case hex HMAC-SHA256 of the RAW BODY, key = amanpay_secret>

Answers: 200 {"status": "ok"} when applied, already applied, or a refusal acknowledged; 400
{"status": "rejected"} for a forged, unreadable, unknown or mismatched callback, and 400
{"status": "held"} for money that could not be applied (paid after the code expired).

Real mode (merchant id + secret + api url set) -- OUR CONTRACT, UNCONFIRMED: `POST
{amanpay_api_url}/v1/payments` with the order, signed the same way, answered
{"code": "...", "expiresAt": "...", "links": {"card": url, "paydirect": url, "amanty": url}}.
"""
from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta
from typing import Any, Callable
from urllib.parse import urlencode

from core.errors import N_
from core.payments.base import (
    CHANNEL_TASHILAT,
    OUTCOME_APPLIED,
    OUTCOME_DECLINED,
    OUTCOME_DUPLICATE,
    Answer,
    CallbackRequest,
    CheckoutView,
    Instruction,
    MalformedCallback,
    PaymentEvent,
)
from core.payments.common import (
    REPLAY_WINDOW,
    check_hmac,
    check_timestamp,
    format_amount,
    header,
    hmac_hex,
    json_safe,
    load_json_object,
    parse_instant,
    parse_wire_amount,
    qr_png,
    random_reference,
    utcnow,
    wire_id,
)

log = logging.getLogger("fatoura.payments.amanpay")

AMANPAY_CODE = "amanpay"
CODE_LENGTH = 12
SIGNATURE_HEADER = "x-amanpay-signature"
SIGNATURE_PREFIX = "sha256="
METHODS = ("tashilat", "card", "paydirect", "amanty")
STATUS_PAID = "paid"
STATUS_REFUSED = "refused"
WHERE_TO_PAY = ("Tashilat",)

# The links next to the cash code (label msgid, method): seed 002's "Carte Amanty PayDirect".
LINK_LABELS = (
    (N_("Pay by card"), "card"),
    (N_("Pay with PayDirect"), "paydirect"),
    (N_("Pay with Amanty"), "amanty"),
)


def new_tashilat_code() -> str:
    """A fresh 12-digit Tashilat cash code (sandbox): random, Luhn check digit last."""
    return random_reference(CODE_LENGTH)


def is_tashilat_code(text: object) -> bool:
    return isinstance(text, str) and len(text) == CODE_LENGTH and text.isascii() and text.isdigit()


def format_tashilat_code(code: str) -> str:
    """'180857637947' -> '18 0857 637-947', as seed 002 prints a cash payment code."""
    if not is_tashilat_code(code):
        raise ValueError("a Tashilat code has 12 digits")
    return f"{code[:2]} {code[2:6]} {code[6:9]}-{code[9:]}"


class AmanpayGateway:
    code = AMANPAY_CODE
    channels = (CHANNEL_TASHILAT,)
    where_to_pay = WHERE_TO_PAY

    def __init__(self, secret: str, public_base_url: str, *, merchant_id: str | None = None,
                 expiry_hours: int = 48, sandbox: bool = False, api_url: str | None = None,
                 replay_window: timedelta = REPLAY_WINDOW, clock: Callable[[], datetime] = utcnow,
                 http_timeout: float = 10.0, transport: Any = None) -> None:
        if not secret:
            raise ValueError("Amanpay needs a signing secret")
        if not sandbox and not (api_url and merchant_id):
            raise ValueError("the real Amanpay gateway needs amanpay_api_url and amanpay_merchant_id")
        if expiry_hours <= 0:
            raise ValueError("amanpay_expiry_hours must be positive")
        self._secret = secret
        self.public_base_url = public_base_url.rstrip("/")
        self.merchant_id = merchant_id
        self.expiry = timedelta(hours=expiry_hours)
        self.sandbox = sandbox
        self.api_url = (api_url or "").rstrip("/")
        self.replay_window = replay_window
        self.clock = clock
        self.http_timeout = http_timeout
        self._transport = transport

    def __repr__(self) -> str:
        return f"AmanpayGateway(merchant_id={self.merchant_id!r}, sandbox={self.sandbox})"

    @property
    def callback_url(self) -> str:
        return f"{self.public_base_url}/webhooks/payments/{self.code}"

    def sandbox_link(self, method: str, code: str, amount: str, language: str = "fr") -> str:
        query = urlencode({"code": code, "amount": amount, "lang": language})
        return f"{self.public_base_url}/sandbox/amanpay/{method}?{query}"

    async def start(self, checkout: CheckoutView, channel: str) -> Instruction:
        if channel != CHANNEL_TASHILAT:
            raise ValueError(f"Amanpay does not serve channel {channel!r}")
        amount = format_amount(checkout.amount)
        expires_at = self.clock() + self.expiry
        if self.sandbox:
            code = new_tashilat_code()
            links = tuple((label, self.sandbox_link(method, code, amount, checkout.language))
                          for label, method in LINK_LABELS)
        else:
            code, expires_at, urls = await self._create_payment(checkout, amount, expires_at)
            links = tuple((label, urls[method]) for label, method in LINK_LABELS if urls.get(method))
        return Instruction(channel=CHANNEL_TASHILAT, gateway=self.code, reference=code,
                           display_reference=format_tashilat_code(code), expires_at=expires_at,
                           qr_png=qr_png(code), where_to_pay=self.where_to_pay, links=links, sandbox=self.sandbox)

    # -- Real mode: OUR CONTRACT, UNCONFIRMED (see the module docstring) ------------------------

    async def _create_payment(self, checkout: CheckoutView, amount: str,
                              expires_at: datetime) -> tuple[str, datetime, dict[str, str]]:
        import httpx

        body = json.dumps({
            "merchantId": self.merchant_id, "orderId": checkout.order_id, "amount": amount, "currency": "MAD",
            "description": ", ".join(checkout.invoice_numbers)[:200],
            "customer": {"name": checkout.customer_name or "", "email": checkout.email or ""},
            "callbackUrl": self.callback_url, "expiresAt": expires_at.isoformat(timespec="seconds"),
            "language": checkout.language, "timestamp": int(time.time()),
        }).encode("utf-8")
        async with httpx.AsyncClient(timeout=self.http_timeout, transport=self._transport) as client:
            response = await client.post(f"{self.api_url}/v1/payments", content=body, headers=self.sign(body))
            response.raise_for_status()
            data = response.json()
        code = str(data.get("code", ""))
        if not is_tashilat_code(code):
            raise ValueError("Amanpay answered without a 12-digit code")
        if isinstance(data.get("expiresAt"), str):
            expires_at = parse_instant(data["expiresAt"], expires_at)
        links = data.get("links") if isinstance(data.get("links"), dict) else {}
        return code, expires_at, {k: v for k, v in links.items() if isinstance(v, str) and v.startswith("https://")}

    # -- Callback --------------------------------------------------------------------------------

    def sign(self, body: bytes) -> dict[str, str]:
        """The headers a body signed with our secret carries (callbacks, and our API requests)."""
        return {SIGNATURE_HEADER: SIGNATURE_PREFIX + hmac_hex(self._secret, body), "content-type": "application/json"}

    def verify_callback(self, request: CallbackRequest) -> PaymentEvent:
        body = request.body if isinstance(request.body, (bytes, bytearray)) else b""
        data = load_json_object(request)
        check_hmac(self._secret, bytes(body), header(request, SIGNATURE_HEADER), prefix=SIGNATURE_PREFIX)
        sent = check_timestamp(data.get("timestamp"), self.clock(), self.replay_window)
        code = data.get("code")
        if not is_tashilat_code(code):
            raise MalformedCallback("code is not 12 digits")
        amount = parse_wire_amount(data.get("amount"))
        currency = str(data.get("currency", "MAD")).strip().upper()
        if currency not in ("MAD", "504"):
            raise MalformedCallback(f"currency {currency[:8]!r}")
        status = data.get("status")
        if status not in (STATUS_PAID, STATUS_REFUSED):
            raise MalformedCallback("status is not paid or refused")
        method = data.get("method", "tashilat")
        if method not in METHODS:
            raise MalformedCallback("unknown method")
        transaction_id = wire_id(data.get("transactionId"), "transactionId")
        order_id = data.get("orderId")
        order_id = wire_id(order_id, "orderId") if order_id not in (None, "") else None
        reason = None
        if status == STATUS_REFUSED:
            given = data.get("reason")
            reason = given[:200] if isinstance(given, str) and given.strip() else "05 refused by Amanpay"
        return PaymentEvent(gateway=self.code, transaction_id=transaction_id, amount=amount,
                            approved=status == STATUS_PAID, paid_at=parse_instant(data.get("paidAt"), sent),
                            order_id=order_id, reference=code, reason=reason, raw=json_safe(data))

    def answer(self, outcome: str, event: PaymentEvent | None = None) -> Answer:
        if outcome in (OUTCOME_APPLIED, OUTCOME_DUPLICATE, OUTCOME_DECLINED):
            status, payload = 200, {"status": "ok"}
        else:
            status, payload = 400, {"status": "held" if outcome == "held" else "rejected"}
        return Answer(status=status, body=json.dumps(payload).encode("utf-8"), media_type="application/json")
