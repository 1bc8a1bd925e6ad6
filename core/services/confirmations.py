"""Confirmations: a gateway's server-to-server callback, verified and applied exactly once.

`apply_callback` does, in order:
1. store the raw callback (`gateway_callbacks`) in its own transaction, whatever follows;
2. verify it with the gateway (signature / hash): ForgedCallback or MalformedCallback -> REJECTED;
3. find the checkout by order id, else by (gateway, reference): unknown -> REJECTED;
4. check the amount against the checkout's TTC, exactly: else REJECTED, and the customer is told
   that a notification did not match and nothing was marked paid;
5. declined -> checkout `declined`, the customer gets the reason and two buttons
   ("Pc|<checkout_id>" try again with the same channel, "Pn|<checkout_id>" choose another channel);
6. approved, but paid after the expiry, for a cancelled checkout, or for invoices paid meanwhile
   -> HELD: checkout `review`, a Payment row with status `review` (so the same callback again is
   held again, not applied), the customer told; nothing marked paid;
7. approved -> in ONE transaction: the Payment row (unique per gateway + transaction id), the
   checkout `paid`, its invoices `paid`, the chat message (dedupe key `paid:<checkout_id>`) with
   the receipt, and one `biller_notice` outbox row per biller account;
8. after the commit the biller notices are delivered at once (best effort); one that fails stays
   in the outbox and the worker retries it (`biller_notice_sender`).

Exactly once: the checkout row is locked for the whole transaction (SELECT ... FOR UPDATE on
PostgreSQL; on SQLite the transaction starts with a write, which takes the database write lock),
and the unique (gateway, transaction_id) constraint turns a concurrent duplicate into DUPLICATE.
The answer to the gateway is the gateway's own (`gateway.answer(outcome, event)`).

Outbox messages written here (payload format: core.services.outbox):
  kind "payment_paid"      text + receipt document (kind "receipt", payment_id)
  kind "payment_declined"  text + buttons Pc|<id> / Pn|<id>
  kind "payment_mismatch"  text
  kind "payment_held"      text
  kind "biller_notice"     channel "biller", chat_id = biller code; payload
                           {"biller", "account_ref", "invoice_numbers", "transaction_id",
                            "amount" ("123.45"), "paid_at" (ISO 8601), "channel", "checkout_id"}
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from core.billers.base import PaidNotice
from core.billers.registry import BillerRegistry
from core.db import Database
from core.errors import N_, UnknownGateway
from core.i18n import TIMEZONE, Translator, translator
from core.models import ChatUser, Checkout, CheckoutItem, GatewayCallback, Invoice, InvoiceStatus, OutboxMessage, Payment, utcnow
from core.money import format_plain
from core.payments.base import (
    OUTCOME_APPLIED,
    OUTCOME_DECLINED,
    OUTCOME_DUPLICATE,
    OUTCOME_HELD,
    OUTCOME_REJECTED,
    Answer,
    CallbackRequest,
    ForgedCallback,
    MalformedCallback,
    PaymentEvent,
)
from core.services import outbox
from core.services.checkout import (
    CANCELLED,
    DECLINED,
    EXPIRED,
    PAID,
    PENDING,
    REVIEW,
    _covering,
    _lock_checkout,
    effective_expiry,
)

log = logging.getLogger("fatoura.payments")

RETRY_SAME = "Pc"  # Pc|<checkout_id>: try again with the same channel
RETRY_OTHER = "Pn"  # Pn|<checkout_id>: choose another channel
BILLER_CHANNEL = "biller"
BILLER_NOTICE = "biller_notice"
INLINE_NOTICE_TIMEOUT = 5.0
MAX_TRANSACTION_ID = 64

# ISO 8583 response codes CMI returns in ProcReturnCode, for the decline message.
DECLINE_REASONS = {
    "05": N_("The bank refused the payment."),
    "12": N_("The transaction is not valid."),
    "14": N_("The card number is not valid."),
    "33": N_("The card has expired."),
    "51": N_("Insufficient funds."),
    "54": N_("The card has expired."),
    "55": N_("Wrong PIN."),
    "57": N_("This card cannot be used for this payment."),
    "61": N_("The card's spending limit is reached."),
    "91": N_("The bank could not be reached."),
    "99": N_("The payment service had a technical problem."),
}


@dataclass(frozen=True)
class _Result:
    outcome: str
    detail: str
    checkout_id: int | None = None
    notices: tuple[int, ...] = ()


# --- The entry point ------------------------------------------------------------------------


async def apply_callback(db: Database, gateways: Any, billers: BillerRegistry | None, gateway_code: str,
                         request: CallbackRequest, now: datetime | None = None) -> tuple[str, Answer]:
    """Verify and apply one callback; returns (outcome, the answer the gateway expects).

    Raises UnknownGateway when `gateway_code` names no configured gateway (nothing stored).
    Any other failure is logged and answered as REJECTED.
    """
    try:
        gateway = gateways.get(gateway_code)
    except (KeyError, LookupError) as error:
        raise UnknownGateway(f"no gateway {gateway_code!r}") from error
    if gateway is None:
        raise UnknownGateway(f"no gateway {gateway_code!r}")
    now = now or utcnow()
    callback_id = await _store_raw(db, gateway.code, request, now)
    event: PaymentEvent | None = None
    try:
        event = gateway.verify_callback(request)
        _check_event(event)
    except (ForgedCallback, MalformedCallback) as error:
        kind = "forged" if isinstance(error, ForgedCallback) else "malformed"
        log.warning("payment callback %s from %s rejected: %s (%s)", callback_id, gateway.code, kind, error)
        result = _Result(OUTCOME_REJECTED, kind)
        event = None
    except Exception as error:  # noqa: BLE001 - a verifier's bug or odd input must not become a 500
        log.exception("payment callback %s from %s could not be verified", callback_id, gateway.code)
        result = _Result(OUTCOME_REJECTED, f"unreadable: {type(error).__name__}")
        event = None
    else:
        try:
            result = await _apply(db, gateway.code, event, callback_id, now)
        except Exception as error:  # noqa: BLE001
            log.exception("payment callback %s from %s failed", callback_id, gateway.code)
            result = _Result(OUTCOME_REJECTED, f"error: {type(error).__name__}")
    if result.outcome == OUTCOME_REJECTED:
        log.warning("payment callback %s from %s rejected: %s", callback_id, gateway.code, result.detail)
    else:
        log.info("payment callback %s from %s: %s (%s)", callback_id, gateway.code, result.outcome, result.detail)
    await _record_outcome(db, callback_id, result)
    if result.notices and billers is not None:
        for message_id in result.notices:
            try:
                await asyncio.wait_for(deliver_biller_notice(db, billers, message_id), INLINE_NOTICE_TIMEOUT)
            except Exception:  # noqa: BLE001 - the worker retries it
                log.warning("biller notice %s not delivered now; the worker will retry", message_id)
    try:
        answer = gateway.answer(result.outcome, event)
    except Exception:  # noqa: BLE001
        log.exception("gateway %s could not answer %s", gateway.code, result.outcome)
        answer = Answer(status=400, body=b"FAILURE")
    return result.outcome, answer


def _check_event(event: PaymentEvent) -> None:
    if not isinstance(event, PaymentEvent):
        raise MalformedCallback("verifier returned no event")
    if not isinstance(event.amount, Decimal) or not event.amount.is_finite():
        raise MalformedCallback(f"amount {event.amount!r}")
    if len(str(event.transaction_id or "")) > MAX_TRANSACTION_ID:
        raise MalformedCallback("transaction id too long")
    if event.approved and not event.transaction_id:
        raise MalformedCallback("approved without a transaction id")
    if not event.order_id and not event.reference:
        raise MalformedCallback("neither order id nor reference")


def _text_of(body: bytes) -> str:
    # Kept byte for byte where it is UTF-8; other bytes escaped. PostgreSQL text holds no NUL.
    return body.decode("utf-8", "backslashreplace").replace("\x00", "\\x00")


async def _store_raw(db: Database, gateway: str, request: CallbackRequest, now: datetime) -> int:
    headers = {_text_of(str(k).encode())[:200]: _text_of(str(v).encode())[:2000]
               for k, v in (request.headers or {}).items()}
    if request.content_type:
        headers.setdefault("content-type", _text_of(request.content_type.encode())[:200])
    async with db.transaction() as session:
        row = GatewayCallback(gateway=gateway[:32], body=_text_of(request.body or b""), headers=headers,
                              outcome="received", received_at=now)
        session.add(row)
    return row.id


async def _record_outcome(db: Database, callback_id: int, result: _Result) -> None:
    text = f"{result.outcome}: {result.detail}" if result.detail else result.outcome
    if result.checkout_id is not None:
        text += f" #{result.checkout_id}"
    try:
        async with db.transaction() as session:
            await session.execute(update(GatewayCallback).where(GatewayCallback.id == callback_id)
                                  .values(outcome=text[:64]))
    except Exception:  # noqa: BLE001 - the outcome is also in the log
        log.exception("could not record the outcome of callback %s", callback_id)


# --- Applying a verified event --------------------------------------------------------------


def _short(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def _aware(value: datetime | None, default: datetime) -> datetime:
    if not isinstance(value, datetime):
        return default
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _json_safe(value: Any) -> Any:
    try:
        return json.loads(json.dumps(value, default=str, ensure_ascii=False).replace("\\u0000", "\\\\x00"))
    except (TypeError, ValueError):
        return {"repr": repr(value)[:2000]}


async def _find_checkout(db: Database, gateway: str, event: PaymentEvent) -> Checkout | None:
    async with db.session() as session:
        if event.order_id:
            checkout = await session.scalar(select(Checkout).where(Checkout.order_id == str(event.order_id)))
            if checkout is not None:
                return checkout
        if event.reference:
            return await session.scalar(select(Checkout).where(Checkout.gateway == gateway,
                                                               Checkout.reference == str(event.reference))
                                        .order_by(Checkout.id.desc()))
    return None


async def _existing_payment(db: Database, gateway: str, transaction_id: str) -> Payment | None:
    async with db.session() as session:
        return await session.scalar(select(Payment).where(Payment.gateway == gateway,
                                                          Payment.transaction_id == transaction_id))


def _repeat(payment: Payment, checkout_id: int) -> _Result:
    if payment.checkout_id != checkout_id:
        return _Result(OUTCOME_REJECTED, f"transaction already used for checkout {payment.checkout_id}", checkout_id)
    if payment.status == "paid":
        return _Result(OUTCOME_DUPLICATE, "already applied", payment.checkout_id)
    return _Result(OUTCOME_HELD, "already held", payment.checkout_id)


async def _apply(db: Database, gateway: str, event: PaymentEvent, callback_id: int, now: datetime) -> _Result:
    txn = str(event.transaction_id)
    checkout = await _find_checkout(db, gateway, event)
    if checkout is None:
        return _Result(OUTCOME_REJECTED, f"unknown order {event.order_id or event.reference}")
    if checkout.gateway and checkout.gateway != gateway:
        return _Result(OUTCOME_REJECTED, f"checkout belongs to {checkout.gateway}", checkout.id)
    checkout_id = checkout.id
    if event.approved:
        existing = await _existing_payment(db, gateway, txn)
        if existing is not None:
            return _repeat(existing, checkout_id)
    try:
        async with db.transaction() as session:
            checkout = await _lock_checkout(session, db.dialect, checkout_id)
            user = await session.get(ChatUser, checkout.user_id) if checkout.user_id else None
            if event.amount != checkout.amount_ttc:
                if event.approved:
                    await _tell(session, user, "payment_mismatch", f"mismatch:{checkout.id}:{_short(txn)}",
                                lambda t: _mismatch_text(t, checkout, event))
                return _Result(OUTCOME_REJECTED, f"amount {event.amount} != {checkout.amount_ttc}", checkout.id)
            if not event.approved:
                return await _declined(session, checkout, user, event, now)
            payment = await session.scalar(select(Payment).where(Payment.gateway == gateway,
                                                                 Payment.transaction_id == txn))
            if payment is not None:
                return _repeat(payment, checkout.id)
            return await _approved(session, db, gateway, checkout, user, event, callback_id, now)
    except IntegrityError:
        # A concurrent identical callback committed first: the unique constraint refused ours.
        existing = await _existing_payment(db, gateway, txn)
        if existing is None:
            raise
        return _repeat(existing, checkout_id)


async def _tell(session, user: ChatUser | None, kind: str, dedupe_key: str, render,  # noqa: ANN001
                payload_extra: dict | None = None) -> None:
    """Queue a chat message in the user's language, once per dedupe key. Callers hold the
    checkout's lock, so the existence check and the insert cannot interleave with a twin."""
    if user is None:
        return
    if await session.scalar(select(OutboxMessage.id).where(OutboxMessage.dedupe_key == dedupe_key)) is not None:
        return
    t = translator(user.locale)
    text, buttons = render(t)
    payload: dict[str, Any] = {"text": text, "rtl": t.rtl, "language": t.language}
    if buttons:
        payload["buttons"] = buttons
    if payload_extra:
        payload.update(payload_extra)
    outbox.enqueue(session, channel=user.channel, chat_id=user.chat_id, kind=kind, payload=payload,
                   dedupe_key=dedupe_key)


async def _declined(session, checkout: Checkout, user: ChatUser | None, event: PaymentEvent,  # noqa: ANN001
                    now: datetime) -> _Result:
    if checkout.status not in (PENDING, DECLINED):
        # A refusal after the payment was settled, cancelled or expired changes nothing.
        return _Result(OUTCOME_DECLINED, f"ignored, checkout is {checkout.status}", checkout.id)
    checkout.status = DECLINED
    checkout.updated_at = now
    key = f"declined:{checkout.id}:{_short(str(event.transaction_id or event.reason or ''))}"
    await _tell(session, user, "payment_declined", key, lambda t: _declined_text(t, checkout, event))
    return _Result(OUTCOME_DECLINED, f"declined: {str(event.reason or '')[:30]}", checkout.id)


async def _approved(session, db: Database, gateway: str, checkout: Checkout, user: ChatUser | None,  # noqa: ANN001
                    event: PaymentEvent, callback_id: int, now: datetime) -> _Result:
    paid_at = _aware(event.paid_at, now)
    items = (await session.scalars(select(Invoice).join(CheckoutItem, CheckoutItem.invoice_id == Invoice.id)
                                   .where(CheckoutItem.checkout_id == checkout.id)
                                   .order_by(Invoice.number).execution_options(populate_existing=True))).all()
    expiry = effective_expiry(checkout)
    reason = None
    if checkout.status == PAID:
        reason = "second payment for a paid checkout"
    elif checkout.status in (CANCELLED, REVIEW):
        reason = f"checkout {checkout.status}"
    elif expiry is not None and paid_at > expiry:
        reason = "paid after expiry"
    elif checkout.status not in (PENDING, DECLINED, EXPIRED):
        reason = f"checkout {checkout.status}"
    elif any(i.status == InvoiceStatus.PAID.value for i in items):
        reason = "invoices already paid"
    receipt = f"FT-{paid_at.astimezone(TIMEZONE):%y%m%d}-{secrets.token_hex(4).upper()}"
    raw = {"paid_at": paid_at.isoformat(), "callback_id": callback_id, "reference": event.reference,
           "order_id": event.order_id, "fields": _json_safe(event.raw)}
    if reason is not None:
        session.add(Payment(checkout_id=checkout.id, gateway=gateway, transaction_id=str(event.transaction_id),
                            amount=event.amount, status="review", receipt_code=None, raw=raw, created_at=now))
        if checkout.status != PAID:
            checkout.status = REVIEW
            checkout.updated_at = now
        await session.flush()
        await _tell(session, user, "payment_held", f"held:{checkout.id}:{_short(str(event.transaction_id))}",
                    lambda t: _held_text(t, checkout, reason))
        return _Result(OUTCOME_HELD, reason, checkout.id)

    payment = Payment(checkout_id=checkout.id, gateway=gateway, transaction_id=str(event.transaction_id),
                      amount=event.amount, status="paid", receipt_code=receipt, raw=raw, created_at=now)
    session.add(payment)
    await session.flush()  # the unique constraint speaks here for a concurrent duplicate
    checkout.status = PAID
    checkout.updated_at = now
    for invoice in items:
        invoice.status = InvoiceStatus.PAID.value
    # Another live checkout over the same invoices can no longer be paid: close it.
    others = await _covering(session, [i.id for i in items], now, exclude=checkout.id)
    for other in {c.id: c for c in others.values()}.values():
        await session.execute(update(Checkout).where(Checkout.id == other.id, Checkout.status == PENDING)
                              .values(status=CANCELLED, updated_at=now))
    language = user.locale if user is not None else "fr"
    await _tell(session, user, "payment_paid", f"paid:{checkout.id}",
                lambda t: _paid_text(t, checkout, items, payment),
                {"document": {"kind": "receipt", "payment_id": payment.id, "language": language,
                              "filename": receipt_filename(payment, language)},
                 # what a WhatsApp template needs, formatted for the user (outside the 24-hour window)
                 "params": {"amount": translator(language).amount(payment.amount),
                            "transaction_id": str(payment.transaction_id)}})
    notices = []
    by_account: dict[tuple[str, str], list[Invoice]] = {}
    for invoice in items:
        by_account.setdefault((invoice.biller, invoice.account_ref), []).append(invoice)
    for index, ((biller, account_ref), invoices) in enumerate(sorted(by_account.items())):
        message = outbox.enqueue(session, channel=BILLER_CHANNEL, chat_id=biller[:64], kind=BILLER_NOTICE, payload={
            "biller": biller, "account_ref": account_ref, "invoice_numbers": [i.number for i in invoices],
            "transaction_id": str(event.transaction_id),
            "amount": format_plain(sum((i.amount_ttc for i in invoices), Decimal("0.00"))),
            "paid_at": paid_at.isoformat(), "channel": checkout.channel or gateway, "checkout_id": checkout.id,
        }, dedupe_key=f"biller:{checkout.id}:{index}")
        notices.append(message)
    await session.flush()
    return _Result(OUTCOME_APPLIED, f"receipt {receipt}", checkout.id, tuple(m.id for m in notices))


# --- Texts ----------------------------------------------------------------------------------


def _numbers(t: Translator, checkout: Checkout, invoices) -> str:  # noqa: ANN001
    return "\n".join(f"• {i.number}: {t.amount(i.amount_ttc)}" for i in invoices)


def _paid_text(t: Translator, checkout: Checkout, invoices, payment: Payment):  # noqa: ANN001
    lines = [
        t._("Payment received: {amount}. Thank you!", amount=t.amount(payment.amount)),
        t._("Invoices paid ({issuer}):", issuer=checkout.issuer),
        _numbers(t, checkout, invoices),
        t._("Transaction: {transaction_id}", transaction_id=payment.transaction_id),
        t._("Receipt No. {receipt}", receipt=payment.receipt_code),
        t._("Your receipt is attached."),
    ]
    return "\n".join(lines), None


def _declined_text(t: Translator, checkout: Checkout, event: PaymentEvent):
    lines = [t._("Your payment of {amount} was declined.", amount=t.amount(checkout.amount_ttc))]
    reason = _reason(t, event.reason)
    if reason:
        lines.append(t._("Reason: {reason}", reason=reason))
    lines.append(t._("Nothing was charged and your invoices are still unpaid. "
                     "You can try again or choose another payment method."))
    buttons = [[{"label": t._("Try again"), "data": f"{RETRY_SAME}|{checkout.id}"}],
               [{"label": t._("Choose another payment method"), "data": f"{RETRY_OTHER}|{checkout.id}"}]]
    return "\n".join(lines), buttons


def _reason(t: Translator, reason: str | None) -> str | None:
    if not reason:
        return None
    text = str(reason).strip()
    code = text.split()[0].strip(":-") if text else ""
    if code in DECLINE_REASONS:
        return t._(DECLINE_REASONS[code])
    return text[:200]


def _mismatch_text(t: Translator, checkout: Checkout, event: PaymentEvent):
    text = t._("We received a payment notification for {amount} that does not match your payment of {expected}. "
               "No invoice was marked paid. Our team will check it and come back to you.",
               amount=t.amount(event.amount), expected=t.amount(checkout.amount_ttc))
    return text, None


def _held_text(t: Translator, checkout: Checkout, reason: str):
    if reason == "paid after expiry":
        first = t._("We received your payment of {amount}, but its payment reference had already expired.",
                    amount=t.amount(checkout.amount_ttc))
    else:
        first = t._("We received your payment of {amount}, but this payment was no longer open.",
                    amount=t.amount(checkout.amount_ttc))
    rest = t._("No invoice was marked paid yet. Our team will check it and either settle your invoices "
               "or refund you; we will tell you here.")
    return f"{first}\n{rest}", None


# --- The receipt --------------------------------------------------------------------------


def receipt_filename(payment: Payment, language: str = "fr") -> str:
    stem = {"fr": "recu", "ar": "receipt", "en": "receipt"}.get(language, "recu")
    return f"{stem}-{payment.receipt_code or payment.id}.pdf"


async def receipt_pdf(db: Database, payment_id: int, language: str = "fr",
                      biller_name: str | None = None) -> tuple[str, bytes] | None:
    """(filename, PDF bytes) of a payment's receipt, rendered now; None if the payment is gone."""
    from core.documents.receipt_pdf import render_receipt_pdf

    async with db.session() as session:
        payment = await session.get(Payment, payment_id)
        if payment is None:
            return None
        checkout = await session.get(Checkout, payment.checkout_id)
        invoices = (await session.scalars(select(Invoice).join(CheckoutItem, CheckoutItem.invoice_id == Invoice.id)
                                          .where(CheckoutItem.checkout_id == payment.checkout_id)
                                          .order_by(Invoice.due_date, Invoice.number))).all()
    verify_url = None
    if payment.receipt_code:
        from core.config import get_settings
        from core.reports.receipts import verification_url

        verify_url = verification_url(get_settings(), payment.receipt_code)
    pdf = await asyncio.to_thread(render_receipt_pdf, payment, checkout, list(invoices), language,
                                  biller_name=biller_name, verify_url=verify_url)
    return receipt_filename(payment, language), pdf


# --- Biller notices ---------------------------------------------------------------------------


def _notice_of(payload: dict[str, Any]) -> tuple[str, str, PaidNotice]:
    paid_at = datetime.fromisoformat(payload["paid_at"])
    notice = PaidNotice(invoice_numbers=tuple(payload["invoice_numbers"]), transaction_id=payload["transaction_id"],
                        amount=Decimal(payload["amount"]), paid_at=_aware(paid_at, utcnow()),
                        channel=payload.get("channel") or "")
    return payload["biller"], payload["account_ref"], notice


async def send_biller_notice(billers: BillerRegistry, payload: dict[str, Any]) -> None:
    biller, account_ref, notice = _notice_of(payload)
    await billers.get(biller).notify_paid(account_ref, notice)


async def deliver_biller_notice(db: Database, billers: BillerRegistry, message_id: int) -> bool:
    """Deliver one queued biller notice now, if no worker holds it; True when delivered.
    A failure is recorded on the outbox row (backoff) for the worker to retry."""
    now = utcnow()
    async with db.transaction() as session:
        claimed = await session.execute(update(OutboxMessage).where(
            OutboxMessage.id == message_id, OutboxMessage.status == "queued").values(
            status="sending", claimed_by="inline", claimed_at=now))
        if claimed.rowcount != 1:
            return False
        payload = dict((await session.get(OutboxMessage, message_id)).payload or {})
    try:
        await send_biller_notice(billers, payload)
    except BaseException as error:
        await outbox.mark_failed(db, message_id, f"{type(error).__name__}: {error}")
        raise
    await outbox.mark_delivered(db, message_id)
    return True


def biller_notice_sender(billers: BillerRegistry):
    """A fatoura.worker Sender for channel "biller": `senders["biller"] = biller_notice_sender(billers)`."""

    async def send(message) -> str | None:  # noqa: ANN001 - outbox.Claimed
        await send_biller_notice(billers, message.payload)
        return None

    return send
