"""The gateway protocol: a checkout in, a payment instruction out; a callback in, a verified event out.

A gateway never touches the database: the checkout service stores what `start` returns and the
confirmation service applies what `verify_callback` returns, exactly once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol, runtime_checkable

from core.errors import FatouraError, N_

# The chat's payment channels, and the invoice "payment means" (seeds 002/003) that allow each.
CHANNEL_CARD = "card"  # CMI 3-D Secure hosted page
CHANNEL_FATOURATI = "fatourati"  # CMI Fatourati 13-digit reference
CHANNEL_TASHILAT = "tashilat"  # Amanpay / M2T cash code at Tashilat agencies
CHANNELS_BY_MEANS = {
    "cmi": (CHANNEL_CARD, CHANNEL_FATOURATI),
    "amanpay": (CHANNEL_TASHILAT,),
}


@dataclass(frozen=True)
class CheckoutView:
    """What a gateway needs to know of a checkout (amount is the TTC total, Decimal, MAD)."""

    token: str
    order_id: str
    amount: Decimal
    issuer: str
    invoice_numbers: tuple[str, ...]
    language: str = "fr"
    customer_name: str | None = None
    email: str | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True)
class Instruction:
    """What the chat shows for one channel."""

    channel: str
    gateway: str
    url: str | None = None  # card: our /pay/{token} page
    reference: str | None = None  # Fatourati reference / Tashilat code, digits only
    display_reference: str | None = None  # as printed: "18 0857 637-947"
    expires_at: datetime | None = None
    qr_png: bytes | None = field(default=None, repr=False)
    where_to_pay: tuple[str, ...] = ()
    links: tuple[tuple[str, str], ...] = ()  # (msgid label, url): Amanpay card, PayDirect, Amanty
    sandbox: bool = False


@dataclass(frozen=True)
class CallbackRequest:
    headers: dict[str, str]  # lower-cased names
    body: bytes
    content_type: str = ""


@dataclass(frozen=True)
class PaymentEvent:
    """A callback whose signature checked out. Amount and order are checked by the confirmation service."""

    gateway: str
    transaction_id: str
    amount: Decimal
    approved: bool
    paid_at: datetime
    order_id: str | None = None
    reference: str | None = None
    reason: str | None = None  # decline / error code or message from the gateway
    raw: dict = field(default_factory=dict, repr=False)


# How a callback ended, for the gateway-specific answer.
OUTCOME_APPLIED = "applied"  # approved and applied now
OUTCOME_DUPLICATE = "duplicate"  # approved, already applied: no second effect
OUTCOME_DECLINED = "declined"  # valid callback, payment refused
OUTCOME_REJECTED = "rejected"  # forged, unknown order, wrong amount, malformed
OUTCOME_HELD = "held"  # valid but needs review (paid after expiry)


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    media_type: str = "text/plain"


class ForgedCallback(FatouraError):
    msgid = N_("The payment notification could not be verified.")


class MalformedCallback(FatouraError):
    msgid = N_("The payment notification could not be read.")


@runtime_checkable
class Gateway(Protocol):
    code: str  # "cmi", "fatourati", "amanpay" (the {gateway} of /webhooks/payments/{gateway})
    channels: tuple[str, ...]
    sandbox: bool

    async def start(self, checkout: CheckoutView, channel: str) -> Instruction: ...

    def verify_callback(self, request: CallbackRequest) -> PaymentEvent: ...

    def answer(self, outcome: str, event: PaymentEvent | None = None) -> Answer: ...
