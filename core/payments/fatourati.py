"""CMI Fatourati: a 13-digit reference the customer pays in a bank app, at an ATM or a cash agency.

What we know is in ../shared/reference/payments.md: seed 002 shows a 13-digit reference
(`1089010000162`) that expires (3 hours there: `settings.fatourati_expiry_hours`), and a public
biller-side client shows CMI's aggregator API. Our model of it:

Reference. Sandbox: 12 random digits (first one not 0, drawn with `secrets`) and a Luhn check
digit, so a reference is neither guessable nor mistyped unnoticed. Real mode: CMI issues the
`tokenRef` (see "Real mode" below).

Callback (`POST /webhooks/payments/fatourati`), JSON:
    {"tokenRef": "1089010000162",            13 digits: the reference
     "orderId": "FT240115ABCDEF1234" | null, our order id when the aggregator echoes it
     "totalAmount": "3600.00",               string or JSON number, dot, at most 2 decimals
     "currency": "504",                      504 or "MAD"
     "selectedItems": [...],                 optional, kept in raw
     "fatouratiTransactionNumber": "...",    unique per payment (our transaction id)
     "channel": "CASHPLUS", "operator": "...",  where it was paid (kept in raw)
     "decisionCode": 0,                      0 confirmed, 1 refused
     "paidAt": "2024-01-15T13:10:09+01:00",  optional ISO 8601, else the timestamp
     "timestamp": 1705320609}                Unix seconds when sent
    header  x-signature: <lower-case hex HMAC-SHA256 of the RAW BODY, key = the store API key>

The reference says the callback is "signed in an x-signature header" without saying over what;
signing the raw body is OUR CHOICE (it covers every byte, needs no canonical form, and is what a
replacement verifier would most likely adapt). `timestamp` is also ours: a callback sent more than
10 minutes ago (or ahead) is refused as a replay (ForgedCallback). Answers: 200
{"receiptNumber": "..."} when applied (the same number again for a duplicate), 200
{"receiptNumber": null} for an acknowledged refusal, 400 {"error": ...} when rejected or held.

Real mode (credentials set) -- UNCONFIRMED, from a public client, not from CMI: OAuth2 client
credentials at `{api_url}/oauth/token`, then `POST {api_url}/api/v1/merchants/{merchant}/stores/
{store}/token` answered with a `tokenRef`. It is all in `_request_token`, to be fixed against
CMI's documentation when it is obtained.
"""
from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timedelta
from typing import Any, Callable

from core.payments.base import (
    CHANNEL_FATOURATI,
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
    json_safe,
    hmac_hex,
    load_json_object,
    parse_instant,
    parse_wire_amount,
    qr_png,
    random_reference,
    utcnow,
    wire_id,
)

log = logging.getLogger("fatoura.payments.fatourati")

FATOURATI_CODE = "fatourati"
REFERENCE_LENGTH = 13
SIGNATURE_HEADER = "x-signature"
DECISION_CONFIRMED = 0
DECISION_REFUSED = 1

# Where a Fatourati reference can be paid: the sub-channels of seed 002, as it spells them.
WHERE_TO_PAY = (
    "AttijariNet / Attijari Mobile",
    "BMCE PORTAIL / BMCE DIRECT",
    "CIH ONLINE ET CIH ONLINE MOBILE",
    "BARID BANK MOBILE",
    "CAM Online",
    "CDM Banque Direct",
    "SGMASOGE CASHNET",
    "CASHPLUS",
    "Global Vision FAWATIR",
    "CMIFAWATIRCASH",
    "DAMANEPAY / DAMANCASH",
)

# Leading ISO 8583 code 05, so the confirmation service says "the bank refused the payment".
REFUSED_REASON = "05 refused by Fatourati (decisionCode 1)"


def new_reference() -> str:
    """A fresh 13-digit Fatourati reference (sandbox): random, Luhn check digit last."""
    return random_reference(REFERENCE_LENGTH)


def is_reference(text: object) -> bool:
    return isinstance(text, str) and len(text) == REFERENCE_LENGTH and text.isascii() and text.isdigit()


def receipt_number(event: PaymentEvent) -> str:
    """Our receipt number for Fatourati, the same for the same payment (so a retry gets it again)."""
    digest = hashlib.sha256(f"{event.reference}|{event.transaction_id}".encode()).hexdigest()
    return f"FTR{digest[:12].upper()}"


class FatouratiGateway:
    code = FATOURATI_CODE
    channels = (CHANNEL_FATOURATI,)
    where_to_pay = WHERE_TO_PAY

    def __init__(self, api_key: str, public_base_url: str, *, expiry_hours: int = 3, sandbox: bool = False,
                 api_url: str | None = None, merchant_code: str | None = None, store_code: str | None = None,
                 client_id: str | None = None, client_secret: str | None = None,
                 replay_window: timedelta = REPLAY_WINDOW, clock: Callable[[], datetime] = utcnow,
                 http_timeout: float = 10.0, transport: Any = None) -> None:
        if not api_key:
            raise ValueError("Fatourati needs a signing key")
        if not sandbox and not (api_url and merchant_code):
            raise ValueError("the real Fatourati gateway needs fatourati_api_url and fatourati_merchant_code")
        if expiry_hours <= 0:
            raise ValueError("fatourati_expiry_hours must be positive")
        self._key = api_key
        self.public_base_url = public_base_url.rstrip("/")
        self.expiry = timedelta(hours=expiry_hours)
        self.sandbox = sandbox
        self.api_url = (api_url or "").rstrip("/")
        self.merchant_code = merchant_code
        self.store_code = store_code or merchant_code
        self.client_id = client_id
        self._client_secret = client_secret
        self.replay_window = replay_window
        self.clock = clock
        self.http_timeout = http_timeout
        self._transport = transport  # tests: an httpx.MockTransport

    def __repr__(self) -> str:
        return f"FatouratiGateway(sandbox={self.sandbox}, api_url={self.api_url!r})"

    @property
    def callback_url(self) -> str:
        return f"{self.public_base_url}/webhooks/payments/{self.code}"

    async def start(self, checkout: CheckoutView, channel: str) -> Instruction:
        if channel != CHANNEL_FATOURATI:
            raise ValueError(f"Fatourati does not serve channel {channel!r}")
        format_amount(checkout.amount)
        expires_at = self.clock() + self.expiry
        qr = None
        if self.sandbox:
            reference = new_reference()
        else:
            reference, qr, expires_at = await self._request_token(checkout, expires_at)
        return Instruction(channel=CHANNEL_FATOURATI, gateway=self.code, reference=reference,
                           display_reference=reference, expires_at=expires_at, qr_png=qr or qr_png(reference),
                           where_to_pay=self.where_to_pay, sandbox=self.sandbox)

    # -- Real mode: UNCONFIRMED shape of CMI's aggregator API (see the module docstring) --------

    async def _request_token(self, checkout: CheckoutView, expires_at: datetime) -> tuple[str, bytes | None, datetime]:
        import base64

        import httpx

        total = format_amount(checkout.amount)
        body = {
            "orderId": checkout.order_id,
            "totalAmount": total,
            "currency": "504",
            "items": [{"invoiceNumber": number} for number in checkout.invoice_numbers],
            "client": {"name": checkout.customer_name or "", "email": checkout.email or ""},
            "callbackUrl": self.callback_url,
            "expiryDate": expires_at.isoformat(timespec="seconds"),
        }
        signed = "|".join([self.merchant_code or "", self.store_code or "", checkout.order_id, total, "504"])
        async with httpx.AsyncClient(base_url=self.api_url, timeout=self.http_timeout,
                                     transport=self._transport) as client:
            token = await client.post("/oauth/token", data={"grant_type": "client_credentials",
                                                            "client_id": self.client_id or "",
                                                            "client_secret": self._client_secret or ""})
            token.raise_for_status()
            access = token.json()["access_token"]
            response = await client.post(
                f"/api/v1/merchants/{self.merchant_code}/stores/{self.store_code}/token", json=body,
                headers={"Authorization": f"Bearer {access}",
                         SIGNATURE_HEADER: hmac_hex(self._key, signed.encode("utf-8"))})
            response.raise_for_status()
            data = response.json()
        reference = str(data.get("tokenRef", ""))
        if not is_reference(reference):
            raise ValueError("Fatourati answered without a 13-digit tokenRef")
        qr = None
        if isinstance(data.get("qrCode"), str):
            try:
                qr = base64.b64decode(data["qrCode"], validate=True)
            except ValueError:
                qr = None
        if isinstance(data.get("expiryDate"), str):
            expires_at = parse_instant(data["expiryDate"], expires_at)
        return reference, qr, expires_at

    # -- Callback --------------------------------------------------------------------------------

    def sign(self, body: bytes) -> dict[str, str]:
        """The headers a callback with this raw body carries (the sandbox counter uses this)."""
        return {SIGNATURE_HEADER: hmac_hex(self._key, body), "content-type": "application/json"}

    def verify_callback(self, request: CallbackRequest) -> PaymentEvent:
        body = request.body if isinstance(request.body, (bytes, bytearray)) else b""
        data = load_json_object(request)  # size and content type first: no HMAC over 10 MB
        check_hmac(self._key, bytes(body), header(request, SIGNATURE_HEADER))
        now = self.clock()
        sent = check_timestamp(data.get("timestamp"), now, self.replay_window)
        reference = data.get("tokenRef")
        if isinstance(reference, int) and not isinstance(reference, bool):
            reference = str(reference).zfill(REFERENCE_LENGTH)
        if not is_reference(reference):
            raise MalformedCallback("tokenRef is not 13 digits")
        amount = parse_wire_amount(data.get("totalAmount"))
        currency = str(data.get("currency", "504")).strip().upper()
        if currency not in ("504", "MAD"):
            raise MalformedCallback(f"currency {currency[:8]!r}")
        decision = data.get("decisionCode")
        if isinstance(decision, str) and decision.strip() in ("0", "1"):
            decision = int(decision)
        if isinstance(decision, bool) or not isinstance(decision, int) or decision not in (DECISION_CONFIRMED, DECISION_REFUSED):
            raise MalformedCallback("decisionCode is not 0 or 1")
        transaction_id = wire_id(data.get("fatouratiTransactionNumber"), "fatouratiTransactionNumber")
        order_id = data.get("orderId")
        order_id = wire_id(order_id, "orderId") if order_id not in (None, "") else None
        approved = decision == DECISION_CONFIRMED
        return PaymentEvent(gateway=self.code, transaction_id=transaction_id, amount=amount, approved=approved,
                            paid_at=parse_instant(data.get("paidAt"), sent), order_id=order_id,
                            reference=reference, reason=None if approved else REFUSED_REASON,
                            raw=json_safe(data))

    def answer(self, outcome: str, event: PaymentEvent | None = None) -> Answer:
        if outcome in (OUTCOME_APPLIED, OUTCOME_DUPLICATE) and event is not None:
            return _json(200, {"receiptNumber": receipt_number(event)})
        if outcome == OUTCOME_DECLINED:
            return _json(200, {"receiptNumber": None})
        return _json(400, {"error": outcome if outcome in ("rejected", "held") else "rejected"})


def _json(status: int, payload: dict) -> Answer:
    return Answer(status=status, body=json.dumps(payload).encode("utf-8"), media_type="application/json")


