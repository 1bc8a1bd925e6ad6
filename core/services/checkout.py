"""Checkout: from a linked account's unpaid invoices to a payment instruction for one channel.

The rules, from the seeds:
- All unpaid invoices of the chosen account are selected by default (Maroc Telecom portal); the
  customer unticks what to pay later. One payment holds invoices of ONE issuer (PortNet).
- Only the channels that EVERY selected invoice's payment means allow are offered
  (`core.payments.base.CHANNELS_BY_MEANS`: "cmi" -> card, fatourati; "amanpay" -> tashilat).
- Totals HT / TVA / TTC are the sums of the invoices' printed amounts (Decimal, centime, half-up).
- A new checkout never covers an invoice already paid, or one that another live checkout covers
  (`AlreadyCovered` names that checkout so the chat can show it again or cancel it).

Checkout states (`Checkout.status`):
  pending    waiting for the customer / gateway (card link open, reference or code to pay)
  paid       a verified, approved callback was applied (see core.services.confirmations)
  declined   the gateway refused the payment (a new checkout may be made at once)
  expired    the link / reference / code expired unpaid (`expire_due`, or seen late)
  cancelled  the customer cancelled it, or the gateway could not start it
  review     money arrived when it could not be applied (after expiry, after a cancel, or for
             invoices paid meanwhile): held for a person to settle or refund

A card checkout's `expires_at` is when its /pay link stops opening (30 min); CMI's hosted page
may keep a session up to 45 min more (`sessionTimeout` <= 2700 s), so a card checkout stays
live, and its callback is accepted, until `expires_at + CARD_CALLBACK_GRACE`. A reference's
expiry is the gateway's (Fatourati: `settings.fatourati_expiry_hours`; Tashilat: what Amanpay
answers, else TASHILAT_DEFAULT_EXPIRY).

The /pay/{token} token is single use: `consume_pay_token` swaps the stored token for a digest of
it (`used_token`), so the link can still be recognised ("payment in progress") but never serves a
second form. No schema change was needed for that.
"""
from __future__ import annotations

import hashlib
import json
import logging
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Iterable, Sequence

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.billers.base import BillerInvoice, InvoiceFilter
from core.billers.registry import BillerRegistry
from core.config import Settings
from core.db import Database
from core.errors import (
    N_,
    AlreadyCovered,
    ChannelNotAllowed,
    CheckoutClosed,
    CheckoutNotFound,
    EmptySelection,
    InvoiceAlreadyPaid,
    InvoiceNotFound,
    MixedIssuers,
    PaymentUnavailable,
    UnknownAccount,
)
from core.models import ChatUser, Checkout, CheckoutItem, Invoice, InvoiceStatus, LinkedAccount, Payment, utcnow
from core.money import Totals
from core.payments.base import (
    CHANNEL_CARD,
    CHANNEL_FATOURATI,
    CHANNEL_TASHILAT,
    CHANNELS_BY_MEANS,
    CheckoutView,
    Instruction,
)

log = logging.getLogger("fatoura.checkout")

# Checkout states
PENDING = "pending"
PAID = "paid"
DECLINED = "declined"
EXPIRED = "expired"
CANCELLED = "cancelled"
REVIEW = "review"

STATE_LABELS = {
    PENDING: N_("Pending"),
    PAID: N_("Paid"),
    DECLINED: N_("Declined"),
    EXPIRED: N_("Expired"),
    CANCELLED: N_("Cancelled"),
    REVIEW: N_("Under review"),
}
# The labels the invoice list already uses for the means (translated in every catalog).
CHANNEL_LABELS = {
    CHANNEL_CARD: N_("Bank card (CMI)"),
    CHANNEL_FATOURATI: N_("Fatourati"),
    CHANNEL_TASHILAT: N_("Tashilat"),
}
CHANNEL_ORDER = (CHANNEL_CARD, CHANNEL_FATOURATI, CHANNEL_TASHILAT)
REFERENCE_CHANNELS = frozenset({CHANNEL_FATOURATI, CHANNEL_TASHILAT})

CARD_EXPIRY = timedelta(minutes=30)
CARD_CALLBACK_GRACE = timedelta(minutes=45)
TASHILAT_DEFAULT_EXPIRY = timedelta(hours=48)

_SYNC_PAGE = 100
_SYNC_CAP = 1000
_USED_PREFIX = "u."


# --- Channels -----------------------------------------------------------------------------------


def channels_of(payment_means: Iterable[str]) -> set[str]:
    return {channel for means in payment_means or () for channel in CHANNELS_BY_MEANS.get(str(means).lower(), ())}


def allowed_channels(invoices: Iterable[Any]) -> tuple[str, ...]:
    """The channels EVERY invoice allows (its payment means through CHANNELS_BY_MEANS), in the
    chat's order (card, fatourati, tashilat). Empty selection -> ()."""
    allowed: set[str] | None = None
    for invoice in invoices:
        mine = channels_of(invoice.payment_means)
        allowed = mine if allowed is None else allowed & mine
    if not allowed:
        return ()
    return tuple(c for c in CHANNEL_ORDER if c in allowed) + tuple(sorted(allowed - set(CHANNEL_ORDER)))


# --- Expiry and liveness ----------------------------------------------------------------------


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def effective_expiry(checkout: Checkout) -> datetime | None:
    """Until when the checkout may still be paid (a card session may outlive the link)."""
    expires = _aware(checkout.expires_at)
    if expires is not None and checkout.channel == CHANNEL_CARD:
        expires += CARD_CALLBACK_GRACE
    return expires


def is_live(checkout: Checkout, now: datetime) -> bool:
    """Pending and not past its (effective) expiry: it covers its invoices."""
    expires = effective_expiry(checkout)
    return checkout.status == PENDING and (expires is None or expires > now)


def state_of(checkout: Checkout, now: datetime) -> str:
    """The state to show: a pending checkout past its expiry shows as expired before `expire_due` runs."""
    if checkout.status == PENDING and not is_live(checkout, now):
        return EXPIRED
    return checkout.status


def pay_url(settings: Settings, token: str) -> str:
    return f"{settings.public_base_url.rstrip('/')}/pay/{token}"


def used_token(token: str) -> str:
    """What a consumed /pay token is stored as (fits the 64-character column)."""
    return _USED_PREFIX + hashlib.sha256(token.encode()).hexdigest()[:60]


# --- Storing the biller's invoices ----------------------------------------------------------


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str, ensure_ascii=False))


def _merge_status(local: str, remote: str) -> str:
    """The biller's word wins when it says paid or cancelled; 'unpaid' never undoes what we know
    (our own confirmation may be ahead of the biller, a reference may cover the invoice)."""
    if remote in (InvoiceStatus.PAID.value, InvoiceStatus.CANCELLED.value):
        return remote
    if local in (InvoiceStatus.PAID.value, InvoiceStatus.PENDING.value):
        return local
    return InvoiceStatus.UNPAID.value if remote == InvoiceStatus.UNPAID.value else local


def _apply_fields(row: Invoice, link: LinkedAccount, item: BillerInvoice, now: datetime) -> None:
    row.biller, row.account_ref, row.number = link.biller, link.account_ref, item.number
    row.invoice_type = item.invoice_type or "Principale"
    row.issuer = item.issuer
    row.client_name = item.client_name
    row.call_number = item.call_number
    row.customer_number = item.customer_number
    row.billing_period = item.billing_period
    row.invoice_date = item.invoice_date
    row.due_date = item.due_date
    if row.status in (None, InvoiceStatus.UNPAID.value):
        # Amounts of an invoice being paid are frozen in its checkout; only refresh the others.
        row.amount_ht, row.amount_tva, row.amount_ttc = item.amount_ht, item.amount_tva, item.amount_ttc
        row.tva_rate = item.tva_rate
    row.currency = item.currency or "MAD"
    row.payment_means = [str(m) for m in item.payment_means]
    row.prestations = _json_safe(list(item.prestations))
    row.messages = _json_safe(list(item.messages))
    row.description = item.description
    row.fetched_at = now


async def _fetch_all(billers: BillerRegistry, link: LinkedAccount) -> list[BillerInvoice]:
    connector = billers.get(link.biller)
    first = await connector.list_invoices(link.account_ref, InvoiceFilter(status=None, page_size=_SYNC_PAGE))
    items = list(first.items)
    for page in range(2, min(first.pages, _SYNC_CAP // _SYNC_PAGE) + 1):
        items += (await connector.list_invoices(link.account_ref,
                                                InvoiceFilter(status=None, page=page, page_size=_SYNC_PAGE))).items
    return items


async def sync_invoices(db: Database, billers: BillerRegistry, link: LinkedAccount) -> list[Invoice]:
    """Upsert the account's invoices from its biller into `invoices`; returns the stored rows.

    Status merge: the biller's paid/cancelled wins; its 'unpaid' keeps our pending/paid.
    """
    items = await _fetch_all(billers, link)
    now = utcnow()
    for attempt in range(3):
        try:
            async with db.transaction() as session:
                existing = {row.number: row for row in (await session.scalars(select(Invoice).where(
                    Invoice.biller == link.biller, Invoice.account_ref == link.account_ref))).all()}
                for item in items:
                    row = existing.get(item.number)
                    if row is None:
                        row = Invoice(status=InvoiceStatus.UNPAID.value)
                        _apply_fields(row, link, item, now)
                        row.status = _merge_status(InvoiceStatus.UNPAID.value, item.status)
                        session.add(row)
                        existing[item.number] = row
                    else:
                        _apply_fields(row, link, item, now)
                        row.status = _merge_status(row.status, item.status)
                rows = list(existing.values())
            return sorted(rows, key=lambda r: (r.due_date or datetime.min.date(), r.number))
        except IntegrityError:  # a concurrent sync inserted the same invoice: read it back
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


# --- What the customer can select -------------------------------------------------------------


@dataclass(frozen=True)
class IssuerGroup:
    """The invoices of one issuer in an account. `invoices` are payable and selected by default;
    `covered` are unpaid but held by a live checkout (shown as 'payment in progress')."""

    issuer: str
    invoices: tuple[Invoice, ...]
    covered: tuple[Invoice, ...]
    totals: Totals
    channels: tuple[str, ...]

    @property
    def selected_ids(self) -> tuple[int, ...]:
        return tuple(invoice.id for invoice in self.invoices)


@dataclass(frozen=True)
class Selectable:
    link: LinkedAccount
    groups: tuple[IssuerGroup, ...]

    @property
    def issuers(self) -> tuple[str, ...]:
        return tuple(group.issuer for group in self.groups)

    @property
    def selected_ids(self) -> tuple[int, ...]:
        """Every payable invoice (the portal's default); only valid as one checkout if one issuer."""
        return tuple(i for group in self.groups for i in group.selected_ids)

    def group(self, issuer: str) -> IssuerGroup | None:
        return next((g for g in self.groups if g.issuer == issuer), None)


async def _covering(session: AsyncSession, invoice_ids: Sequence[int], now: datetime,
                    exclude: int | None = None) -> dict[int, Checkout]:
    """invoice id -> the live checkout covering it."""
    if not invoice_ids:
        return {}
    rows = (await session.execute(
        select(CheckoutItem.invoice_id, Checkout)
        .join(Checkout, Checkout.id == CheckoutItem.checkout_id)
        .where(CheckoutItem.invoice_id.in_(list(invoice_ids)), Checkout.status == PENDING)
        .order_by(Checkout.id)
    )).all()
    covered: dict[int, Checkout] = {}
    for invoice_id, checkout in rows:
        if checkout.id != exclude and is_live(checkout, now):
            covered.setdefault(invoice_id, checkout)
    return covered


async def selectable(db: Database, billers: BillerRegistry, user_id: int, link_id: int,
                     now: datetime | None = None) -> Selectable:
    """The unpaid invoices of one of the user's accounts, synced from the biller, grouped by
    issuer, all selected by default. Raises UnknownAccount if the link is not the user's."""
    now = now or utcnow()
    async with db.session() as session:
        link = await session.scalar(select(LinkedAccount).where(LinkedAccount.id == link_id,
                                                                LinkedAccount.user_id == user_id))
    if link is None:
        raise UnknownAccount(f"user {user_id} has no link {link_id}")
    rows = await sync_invoices(db, billers, link)
    open_rows = [r for r in rows if r.status in (InvoiceStatus.UNPAID.value, InvoiceStatus.PENDING.value)]
    async with db.session() as session:
        covered = await _covering(session, [r.id for r in open_rows], now)
    by_issuer: dict[str, tuple[list[Invoice], list[Invoice]]] = {}
    for row in sorted(open_rows, key=lambda r: (r.due_date or datetime.min.date(), r.number)):
        payable, held = by_issuer.setdefault(row.issuer, ([], []))
        (held if row.id in covered else payable).append(row)
    groups = tuple(
        IssuerGroup(issuer=issuer, invoices=tuple(payable), covered=tuple(held), totals=Totals.of(payable),
                    channels=allowed_channels(payable))
        for issuer, (payable, held) in sorted(by_issuer.items())
    )
    return Selectable(link=link, groups=groups)


# --- Creating a checkout ---------------------------------------------------------------------


def _new_order_id(now: datetime) -> str:
    # Unique per attempt (CMI's oid); letters and digits only, 18 characters.
    return f"FT{now:%y%m%d}{secrets.token_hex(5).upper()}"


def _gateway_for(gateways: Any, channel: str) -> Any:
    try:
        gateway = gateways.for_channel(channel)
    except (KeyError, LookupError) as error:
        raise PaymentUnavailable(f"no gateway for {channel}") from error
    if gateway is None:
        raise PaymentUnavailable(f"no gateway for {channel}")
    return gateway


async def _lock_invoices(session: AsyncSession, dialect: str, ids: Sequence[int]) -> None:
    """Serialise checkouts over the same invoices. PostgreSQL: row locks in id order. SQLite: the
    first statement of the transaction is a write, which takes the database's write lock (waiting
    for it) before anything is read, so two checkouts never validate against the same state."""
    ids = sorted(set(ids))
    if dialect == "postgresql":
        await session.execute(select(Invoice.id).where(Invoice.id.in_(ids)).order_by(Invoice.id).with_for_update())
    else:
        await session.execute(update(Invoice).where(Invoice.id.in_(ids)).values(status=Invoice.status))


async def _resolve(db: Database, user: ChatUser, selection: Sequence[int | str],
                   link_id: int | None) -> tuple[list[Invoice], dict[int, LinkedAccount]]:
    ids = [s for s in selection if isinstance(s, int) and not isinstance(s, bool)]
    numbers = [s for s in selection if isinstance(s, str)]
    if len(ids) + len(numbers) != len(selection):
        raise InvoiceNotFound(f"bad selection {selection!r}")
    async with db.session() as session:
        links_q = select(LinkedAccount).where(LinkedAccount.user_id == user.id)
        if link_id is not None:
            links_q = links_q.where(LinkedAccount.id == link_id)
        links = (await session.scalars(links_q)).all()
        if not links:
            raise InvoiceNotFound(f"user {user.id} has no such account")
        owned = or_(*(and_(Invoice.biller == l.biller, Invoice.account_ref == l.account_ref) for l in links))
        conditions = []
        if ids:
            conditions.append(Invoice.id.in_(ids))
        if numbers:
            conditions.append(Invoice.number.in_(numbers))
        rows = (await session.scalars(select(Invoice).where(owned, or_(*conditions)))).all()
    found = {}
    for row in rows:
        if row.id in ids or row.number in numbers:
            found[row.id] = row
    missing_ids = set(ids) - set(found)
    by_number: dict[str, list[Invoice]] = {}
    for row in found.values():
        by_number.setdefault(row.number, []).append(row)
    missing_numbers = [n for n in numbers if n not in by_number]
    ambiguous = [n for n in numbers if len(by_number.get(n, ())) > 1 and not any(r.id in ids for r in by_number[n])]
    if missing_ids or missing_numbers or ambiguous:
        raise InvoiceNotFound(f"not found / ambiguous for user {user.id}: ids {sorted(missing_ids)}, "
                              f"numbers {missing_numbers + ambiguous}")
    link_of = {}
    for row in found.values():
        link_of[row.id] = next(l for l in links if l.biller == row.biller and l.account_ref == row.account_ref)
    return sorted(found.values(), key=lambda r: (r.due_date or datetime.min.date(), r.number)), link_of


def _check_payable(invoices: Sequence[Invoice], channel: str) -> tuple[str, ...]:
    issuers = sorted({i.issuer for i in invoices})
    billers = {i.biller for i in invoices}
    if len(issuers) > 1 or len(billers) > 1:
        raise MixedIssuers(issuers=tuple(issuers))
    allowed = allowed_channels(invoices)
    if channel not in allowed:
        raise ChannelNotAllowed(channel=channel, allowed=allowed)
    return allowed


async def create_checkout(db: Database, user: ChatUser, selection: Sequence[int | str], channel: str,
                          gateways: Any, settings: Settings, *, billers: BillerRegistry | None = None,
                          link_id: int | None = None, now: datetime | None = None) -> tuple[Checkout, Instruction]:
    """One checkout for the selected invoices (ids, or invoice numbers of the user's accounts)
    through `channel`; returns the stored checkout and the instruction the chat shows.

    Raises EmptySelection, InvoiceNotFound, MixedIssuers(issuers=...), ChannelNotAllowed(channel=,
    allowed=), InvoiceAlreadyPaid(numbers=), AlreadyCovered(numbers=, checkout_id=; .checkout),
    PaymentUnavailable (no gateway for the channel, or the gateway failed to start).
    With `billers`, the invoices' accounts are synced from the biller first (fresh statuses).
    """
    now = now or utcnow()
    if not selection:
        raise EmptySelection("no invoice selected")
    invoices, link_of = await _resolve(db, user, selection, link_id)
    if billers is not None:
        for link in {l.id: l for l in link_of.values()}.values():
            await sync_invoices(db, billers, link)
        invoices, link_of = await _resolve(db, user, [i.id for i in invoices], link_id)
    _check_payable(invoices, channel)
    gateway = _gateway_for(gateways, channel)
    ids = [i.id for i in invoices]

    if channel == CHANNEL_CARD:
        expires_at = now + CARD_EXPIRY
    elif channel == CHANNEL_FATOURATI:
        expires_at = now + timedelta(hours=settings.fatourati_expiry_hours)
    else:
        expires_at = now + TASHILAT_DEFAULT_EXPIRY

    for attempt in range(3):
        try:
            async with db.transaction() as session:
                await _lock_invoices(session, db.dialect, ids)
                fresh = (await session.scalars(select(Invoice).where(Invoice.id.in_(ids))
                                               .execution_options(populate_existing=True))).all()
                if len(fresh) != len(ids):
                    raise InvoiceNotFound("an invoice disappeared")
                paid = sorted(i.number for i in fresh if i.status == InvoiceStatus.PAID.value)
                if paid:
                    raise InvoiceAlreadyPaid(numbers=", ".join(paid))
                gone = sorted(i.number for i in fresh if i.status == InvoiceStatus.CANCELLED.value)
                if gone:
                    raise InvoiceNotFound(f"cancelled by the biller: {', '.join(gone)}")
                _check_payable(fresh, channel)
                covered = await _covering(session, ids, now)
                if covered:
                    other = next(iter(covered.values()))
                    session.expunge(other)  # keep it readable after the rollback
                    numbers = sorted(i.number for i in fresh if i.id in covered)
                    raise AlreadyCovered(numbers=", ".join(numbers), checkout_id=other.id, checkout=other)
                totals = Totals.of(fresh)
                first = fresh[0]
                checkout = Checkout(
                    token=secrets.token_urlsafe(24), user_id=user.id, biller=first.biller, issuer=first.issuer,
                    gateway=gateway.code, channel=channel, order_id=_new_order_id(now),
                    amount_ht=totals.ht, amount_tva=totals.tva, amount_ttc=totals.ttc,
                    status=PENDING, expires_at=expires_at, created_at=now, updated_at=now,
                )
                checkout.items = [CheckoutItem(invoice_id=i.id, amount_ttc=i.amount_ttc) for i in fresh]
                session.add(checkout)
                numbers = tuple(i.number for i in sorted(fresh, key=lambda r: r.number))
            break
        except IntegrityError:  # an order id or token collided (astronomically rare): draw again
            if attempt == 2:
                raise

    link = link_of[ids[0]]
    view = CheckoutView(token=checkout.token, order_id=checkout.order_id, amount=checkout.amount_ttc,
                        issuer=checkout.issuer, invoice_numbers=numbers, language=user.locale or "fr",
                        customer_name=user.display_name or link.holder_name, email=None, expires_at=expires_at)
    try:
        instruction = await gateway.start(view, channel)
    except Exception as error:  # noqa: BLE001 - whatever the gateway raised, the checkout must not stay live
        log.warning("gateway %s could not start checkout %s: %s", gateway.code, checkout.id, type(error).__name__)
        async with db.transaction() as session:
            await session.execute(update(Checkout).where(Checkout.id == checkout.id, Checkout.status == PENDING)
                                  .values(status=CANCELLED, updated_at=utcnow()))
        raise PaymentUnavailable(f"{gateway.code} failed to start: {error}") from error

    if instruction.expires_at is not None:
        expires_at = _aware(instruction.expires_at)
    if channel == CHANNEL_CARD and not instruction.url:
        instruction = replace(instruction, url=pay_url(settings, checkout.token))
    if instruction.expires_at is None:
        instruction = replace(instruction, expires_at=expires_at)
    async with db.transaction() as session:
        row = await session.get(Checkout, checkout.id)
        row.reference = instruction.reference
        row.expires_at = expires_at
        if channel in REFERENCE_CHANNELS:
            await session.execute(update(Invoice).where(Invoice.id.in_(ids),
                                                        Invoice.status == InvoiceStatus.UNPAID.value)
                                  .values(status=InvoiceStatus.PENDING.value))
    checkout.reference, checkout.expires_at = instruction.reference, expires_at
    return checkout, instruction


# --- Reading, cancelling, expiring ----------------------------------------------------------------


@dataclass(frozen=True)
class CheckoutSummary:
    """One line of "my payments"."""

    id: int
    state: str  # pending / paid / declined / expired / cancelled / review
    channel: str | None
    gateway: str | None
    issuer: str
    amount_ttc: Decimal
    invoice_numbers: tuple[str, ...]
    reference: str | None
    expires_at: datetime | None
    created_at: datetime
    payment_id: int | None = None
    transaction_id: str | None = None
    receipt_code: str | None = None

    @property
    def state_label(self) -> str:
        """msgid of the state, for t._()."""
        return STATE_LABELS.get(self.state, self.state)


async def list_checkouts(db: Database, user_id: int, *, now: datetime | None = None,
                         limit: int = 20) -> list[CheckoutSummary]:
    """The user's checkouts, newest first, with their state ("my payments")."""
    now = now or utcnow()
    async with db.session() as session:
        checkouts = (await session.scalars(select(Checkout).where(Checkout.user_id == user_id)
                                           .order_by(Checkout.created_at.desc(), Checkout.id.desc())
                                           .limit(limit))).all()
        ids = [c.id for c in checkouts]
        numbers: dict[int, list[str]] = {}
        payments: dict[int, Payment] = {}
        if ids:
            for checkout_id, number in (await session.execute(
                    select(CheckoutItem.checkout_id, Invoice.number).join(Invoice, Invoice.id == CheckoutItem.invoice_id)
                    .where(CheckoutItem.checkout_id.in_(ids)).order_by(Invoice.number))).all():
                numbers.setdefault(checkout_id, []).append(number)
            for payment in (await session.scalars(select(Payment).where(Payment.checkout_id.in_(ids))
                                                  .order_by(Payment.id))).all():
                if payment.status == "paid" or payment.checkout_id not in payments:
                    payments[payment.checkout_id] = payment
    result = []
    for c in checkouts:
        payment = payments.get(c.id)
        result.append(CheckoutSummary(
            id=c.id, state=state_of(c, now), channel=c.channel, gateway=c.gateway, issuer=c.issuer,
            amount_ttc=c.amount_ttc, invoice_numbers=tuple(numbers.get(c.id, ())), reference=c.reference,
            expires_at=_aware(c.expires_at), created_at=_aware(c.created_at),
            payment_id=payment.id if payment else None, transaction_id=payment.transaction_id if payment else None,
            receipt_code=payment.receipt_code if payment else None,
        ))
    return result


async def get_checkout(db: Database, user_id: int, checkout_id: int) -> tuple[Checkout, list[Invoice]]:
    """A checkout of this user with its invoices; CheckoutNotFound otherwise."""
    async with db.session() as session:
        checkout = await session.scalar(select(Checkout).where(Checkout.id == checkout_id, Checkout.user_id == user_id))
        if checkout is None:
            raise CheckoutNotFound(f"user {user_id} has no checkout {checkout_id}")
        invoices = (await session.scalars(select(Invoice).join(CheckoutItem, CheckoutItem.invoice_id == Invoice.id)
                                          .where(CheckoutItem.checkout_id == checkout_id)
                                          .order_by(Invoice.due_date, Invoice.number))).all()
    return checkout, list(invoices)


def format_tashilat(code: str | None) -> str | None:
    """'180857637947' -> '18 0857 637-947', as seed 002 prints a Tashilat code."""
    if not code or not code.isdigit() or len(code) != 12:
        return code
    return f"{code[:2]} {code[2:6]} {code[6:9]}-{code[9:]}"


async def show_checkout(db: Database, user_id: int, checkout_id: int, gateways: Any, settings: Settings,
                        now: datetime | None = None) -> tuple[Checkout, Instruction | None]:
    """A pending checkout's instruction again (link, reference or code and its expiry); None when
    it is no longer live. The QR code is not kept: the chat can draw one from `reference`."""
    now = now or utcnow()
    checkout, _ = await get_checkout(db, user_id, checkout_id)
    if not is_live(checkout, now):
        return checkout, None
    gateway = None
    try:
        gateway = gateways.get(checkout.gateway)
    except (KeyError, LookupError):
        pass
    url = None
    if checkout.channel == CHANNEL_CARD and not checkout.token.startswith(_USED_PREFIX):
        url = pay_url(settings, checkout.token)
    display = format_tashilat(checkout.reference) if checkout.channel == CHANNEL_TASHILAT else checkout.reference
    return checkout, Instruction(
        channel=checkout.channel or "", gateway=checkout.gateway or "", url=url, reference=checkout.reference,
        display_reference=display, expires_at=_aware(checkout.expires_at),
        where_to_pay=tuple(getattr(gateway, "where_to_pay", ()) or ()), sandbox=bool(getattr(gateway, "sandbox", False)),
    )


async def _release_invoices(session: AsyncSession, checkout_id: int, now: datetime) -> None:
    """Invoices a closed checkout held go back to unpaid, unless another live checkout covers them."""
    ids = list((await session.scalars(select(CheckoutItem.invoice_id)
                                      .where(CheckoutItem.checkout_id == checkout_id))).all())
    still = await _covering(session, ids, now, exclude=checkout_id)
    free = [i for i in ids if i not in still]
    if free:
        await session.execute(update(Invoice).where(Invoice.id.in_(free), Invoice.status == InvoiceStatus.PENDING.value)
                              .values(status=InvoiceStatus.UNPAID.value))


async def _lock_checkout(session: AsyncSession, dialect: str, checkout_id: int) -> Checkout | None:
    """The checkout row, locked for this transaction (see `_lock_invoices` for SQLite)."""
    if dialect == "postgresql":
        return await session.scalar(select(Checkout).where(Checkout.id == checkout_id).with_for_update()
                                    .execution_options(populate_existing=True))
    await session.execute(update(Checkout).where(Checkout.id == checkout_id).values(status=Checkout.status))
    return await session.scalar(select(Checkout).where(Checkout.id == checkout_id)
                                .execution_options(populate_existing=True))


async def cancel_checkout(db: Database, user_id: int, checkout_id: int, now: datetime | None = None) -> Checkout:
    """Cancel a pending checkout of this user: its invoices are free again. Cancelling twice is
    harmless; a paid (or held) checkout raises CheckoutClosed. A payment that still arrives for it
    is held for review (see confirmations)."""
    now = now or utcnow()
    async with db.session() as session:
        owner = await session.scalar(select(Checkout.user_id).where(Checkout.id == checkout_id))
    if owner is None or owner != user_id:
        raise CheckoutNotFound(f"user {user_id} has no checkout {checkout_id}")
    async with db.transaction() as session:
        checkout = await _lock_checkout(session, db.dialect, checkout_id)
        if checkout.status in (PAID, REVIEW):
            raise CheckoutClosed(f"checkout {checkout_id} is {checkout.status}")
        if checkout.status == PENDING:
            checkout.status = CANCELLED
            checkout.updated_at = now
            await session.flush()
            await _release_invoices(session, checkout_id, now)
    return checkout


async def expire_due(db: Database, now: datetime | None = None, limit: int = 500) -> int:
    """Mark pending checkouts past their (effective) expiry as expired and free their invoices.
    Safe to run from any number of workers; returns how many were expired."""
    now = now or utcnow()
    async with db.session() as session:
        candidates = (await session.scalars(select(Checkout).where(Checkout.status == PENDING,
                                                                   Checkout.expires_at.is_not(None),
                                                                   Checkout.expires_at <= now)
                                            .order_by(Checkout.expires_at).limit(limit))).all()
    due = [c.id for c in candidates if not is_live(c, now)]
    expired = 0
    for checkout_id in due:
        async with db.transaction() as session:
            checkout = await _lock_checkout(session, db.dialect, checkout_id)
            if checkout is None or checkout.status != PENDING or is_live(checkout, now):
                continue
            checkout.status = EXPIRED
            checkout.updated_at = now
            await session.flush()
            await _release_invoices(session, checkout_id, now)
            expired += 1
    return expired


async def consume_pay_token(db: Database, token: str) -> bool:
    """Use a /pay token once: True for the first caller only (the token is swapped for its digest)."""
    async with db.transaction() as session:
        result = await session.execute(update(Checkout).where(Checkout.token == token)
                                       .values(token=used_token(token)))
        return result.rowcount == 1


async def retry_checkout(db: Database, user: ChatUser, checkout_id: int, gateways: Any, settings: Settings, *,
                         channel: str | None = None, billers: BillerRegistry | None = None,
                         now: datetime | None = None) -> tuple[Checkout, Instruction]:
    """A new checkout for the same invoices ("Pc|id": same channel; "Pn|id": the chosen `channel`).
    A still-pending original is cancelled first."""
    checkout, invoices = await get_checkout(db, user.id, checkout_id)
    if checkout.status == PENDING:
        await cancel_checkout(db, user.id, checkout_id, now)
    return await create_checkout(db, user, [i.id for i in invoices], channel or checkout.channel, gateways, settings,
                                 billers=billers, now=now)


async def view_of(db: Database, checkout: Checkout) -> CheckoutView:
    """The gateway's view of a stored checkout (for the /pay form): invoice numbers, the chat
    user's language and name (else the account holder's)."""
    async with db.session() as session:
        numbers = tuple((await session.scalars(
            select(Invoice.number).join(CheckoutItem, CheckoutItem.invoice_id == Invoice.id)
            .where(CheckoutItem.checkout_id == checkout.id).order_by(Invoice.number))).all())
        user = await session.get(ChatUser, checkout.user_id) if checkout.user_id else None
        holder = None
        if user is not None:
            holder = await session.scalar(
                select(LinkedAccount.holder_name).join(Invoice, and_(Invoice.biller == LinkedAccount.biller,
                                                                     Invoice.account_ref == LinkedAccount.account_ref))
                .join(CheckoutItem, CheckoutItem.invoice_id == Invoice.id)
                .where(CheckoutItem.checkout_id == checkout.id, LinkedAccount.user_id == user.id).limit(1))
    return CheckoutView(
        token=checkout.token, order_id=checkout.order_id or "", amount=checkout.amount_ttc, issuer=checkout.issuer,
        invoice_numbers=numbers, language=(user.locale if user else None) or "fr",
        customer_name=(user.display_name if user else None) or holder, email=None,
        expires_at=_aware(checkout.expires_at),
    )
