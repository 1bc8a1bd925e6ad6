"""Checkout: selection by issuer, the channels the invoices allow, totals to the centime, no
invoice paid twice or covered twice; on SQLite and PostgreSQL.

`FakeGateway` implements the gateway protocol (JSON callbacks signed with HMAC-SHA256 of the raw
body) so checkout and confirmations are tested apart from the real CMI / Fatourati / Amanpay code.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import shutil
from datetime import datetime, timedelta, timezone
from decimal import Decimal as D

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from sqlalchemy import func, select

from core.billers.catalog import SANDBOX_BILLERS
from core.billers.registry import BillerRegistry
from core.billers.sandbox.connector import SandboxBiller
from core.billers.sandbox.samples import SAMPLE_ACCOUNTS
from core.config import Settings
from core.db import Database
from core.errors import (
    AlreadyCovered,
    ChannelNotAllowed,
    CheckoutClosed,
    EmptySelection,
    InvoiceAlreadyPaid,
    InvoiceNotFound,
    MixedIssuers,
    PaymentUnavailable,
)
from core.models import ChatUser, Checkout, CheckoutItem, Invoice, LinkedAccount
from core.money import Totals, format_plain
from core.payments.base import (
    CHANNEL_CARD,
    CHANNEL_FATOURATI,
    CHANNEL_TASHILAT,
    OUTCOME_APPLIED,
    OUTCOME_DECLINED,
    OUTCOME_DUPLICATE,
    Answer,
    CallbackRequest,
    ForgedCallback,
    Instruction,
    MalformedCallback,
    PaymentEvent,
)
from core.services import checkout as co

SECRET = b"test-gateway-secret"
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=timezone.utc)


# --- A gateway by the protocol ------------------------------------------------------------


class FakeGateway:
    """JSON callback {"order_id", "reference", "transaction_id", "amount", "status", "reason",
    "paid_at"}, signed with HMAC-SHA256 of the raw body (hex) in `x-signature`. Answers like CMI."""

    gateway_url = "https://pay.example.test/fim/est3Dgate"

    def __init__(self, code: str, channels: tuple[str, ...], *, fail_start: bool = False) -> None:
        self.code = code
        self.channels = channels
        self.sandbox = True
        self.fail_start = fail_start
        self.started: list = []
        self.where_to_pay = ("CashPlus", "Fawatir") if CHANNEL_FATOURATI in channels else ()

    async def start(self, checkout, channel):  # noqa: ANN001
        self.started.append((checkout, channel))
        if self.fail_start:
            raise OSError("gateway down")
        if channel == CHANNEL_CARD:
            return Instruction(channel=channel, gateway=self.code, sandbox=True)
        if channel == CHANNEL_FATOURATI:
            ref = f"{secrets.randbelow(10 ** 13):013d}"
            return Instruction(channel=channel, gateway=self.code, reference=ref, display_reference=ref,
                               expires_at=checkout.expires_at, where_to_pay=self.where_to_pay, sandbox=True)
        code = f"{secrets.randbelow(10 ** 12):012d}"
        return Instruction(channel=channel, gateway=self.code, reference=code, display_reference=co.format_tashilat(code),
                           expires_at=checkout.expires_at + timedelta(hours=24), sandbox=True)

    def verify_callback(self, request: CallbackRequest) -> PaymentEvent:
        expected = hmac.new(SECRET, request.body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("x-signature", "").encode(), expected.encode()):
            raise ForgedCallback("bad signature")
        try:
            data = json.loads(request.body)
            amount = D(str(data["amount"]))
            paid_at = datetime.fromisoformat(data.get("paid_at") or NOW.isoformat())
            if paid_at.tzinfo is None:
                paid_at = paid_at.replace(tzinfo=timezone.utc)
            return PaymentEvent(gateway=self.code, transaction_id=str(data["transaction_id"]), amount=amount,
                                approved=data["status"] == "approved", paid_at=paid_at,
                                order_id=data.get("order_id"), reference=data.get("reference"),
                                reason=data.get("reason"), raw=data)
        except Exception as error:  # noqa: BLE001
            raise MalformedCallback(str(error)) from None

    def answer(self, outcome: str, event: PaymentEvent | None = None) -> Answer:
        if outcome in (OUTCOME_APPLIED, OUTCOME_DUPLICATE):
            return Answer(200, b"ACTION=POSTAUTH")
        if outcome == OUTCOME_DECLINED:
            return Answer(200, b"APPROVED")
        return Answer(200, b"FAILURE")

    def form_fields(self, checkout, ok_url, fail_url, callback_url, shop_url):  # noqa: ANN001
        return {"clientid": "600000000", "oid": checkout.order_id, "amount": format_plain(checkout.amount),
                "currency": "504", "okUrl": ok_url, "failUrl": fail_url, "callbackUrl": callback_url,
                "shopurl": shop_url, "lang": checkout.language, "BillToName": checkout.customer_name or "",
                "HASH": "fake=="}


class FakeGateways:
    def __init__(self, *gateways: FakeGateway) -> None:
        self._by_code = {g.code: g for g in gateways}

    def get(self, code: str) -> FakeGateway:
        return self._by_code[code]

    def for_channel(self, channel: str) -> FakeGateway:
        for gateway in self._by_code.values():
            if channel in gateway.channels:
                return gateway
        raise KeyError(channel)


def fake_gateways(**kwargs) -> FakeGateways:  # noqa: ANN003
    return FakeGateways(FakeGateway("cmi", (CHANNEL_CARD, CHANNEL_FATOURATI), **kwargs),
                        FakeGateway("amanpay", (CHANNEL_TASHILAT,), **kwargs))


def signed(payload: dict, secret: bytes = SECRET) -> CallbackRequest:
    body = json.dumps(payload).encode()
    return CallbackRequest(headers={"x-signature": hmac.new(secret, body, hashlib.sha256).hexdigest(),
                                    "content-type": "application/json"},
                           body=body, content_type="application/json")


def callback_for(checkout: Checkout, *, status: str = "approved", amount: D | None = None, txn: str = "TXN-1",
                 paid_at: datetime | None = None, reason: str | None = None, by_reference: bool = False) -> dict:
    data = {"transaction_id": txn, "amount": str(amount if amount is not None else checkout.amount_ttc),
            "status": status, "paid_at": (paid_at or NOW).isoformat()}
    if by_reference:
        data["reference"] = checkout.reference
    else:
        data["order_id"] = checkout.order_id
    if reason:
        data["reason"] = reason
    return data


# --- Fixtures -------------------------------------------------------------------------------


def make_settings() -> Settings:
    return Settings(_env_file=None, public_base_url="https://fatoura.example.test", fatourati_expiry_hours=3)


class CountingBiller(SandboxBiller):
    def __init__(self, info, db) -> None:  # noqa: ANN001
        super().__init__(info, db)
        self.notices: list = []

    async def notify_paid(self, account_ref, notice):  # noqa: ANN001
        self.notices.append((account_ref, notice))
        await super().notify_paid(account_ref, notice)


def billers_for(db: Database) -> BillerRegistry:
    registry = BillerRegistry()
    for info in SANDBOX_BILLERS:
        registry.add(CountingBiller(info, db))
    return registry


async def make_user(db: Database, chat_id: str = "1001", locale: str = "fr", channel: str = "telegram") -> ChatUser:
    async with db.transaction() as session:
        user = ChatUser(channel=channel, chat_id=chat_id, locale=locale, display_name="Amina")
        session.add(user)
    return user


async def link_sample(db: Database, user: ChatUser, ref: str) -> LinkedAccount:
    sample = next(s for s in SAMPLE_ACCOUNTS if s["ref"] == ref)
    async with db.transaction() as session:
        link = LinkedAccount(user_id=user.id, biller=sample["biller"], service=sample["service"],
                             identifier=sample["identifier"], account_ref=ref, holder_name=sample["holder_name"])
        session.add(link)
    return link


async def invoice_ids(db: Database, link: LinkedAccount, *numbers: str) -> list[int]:
    async with db.session() as session:
        rows = (await session.execute(select(Invoice.number, Invoice.id).where(
            Invoice.biller == link.biller, Invoice.account_ref == link.account_ref, Invoice.number.in_(numbers)))).all()
    found = dict(rows)
    return [found[n] for n in numbers]


@pytest.fixture
async def world(seeded_db):
    db = seeded_db
    billers = billers_for(db)
    user = await make_user(db)
    links = {ref: await link_sample(db, user, ref) for ref in
             ("portnet-A7K2", "portnet-K9AS", "marsa-casablanca-000236", "iam-mobile-156677143760")}
    for link in links.values():
        await co.sync_invoices(db, billers, link)

    class World:
        pass

    w = World()
    w.db, w.billers, w.user, w.links, w.gateways, w.settings = db, billers, user, links, fake_gateways(), make_settings()
    return w


# --- Selection --------------------------------------------------------------------------------


async def test_sync_stores_the_billers_invoices_and_keeps_our_status(world):
    db, link = world.db, world.links["marsa-casablanca-000236"]
    async with db.session() as session:
        count = await session.scalar(select(func.count()).select_from(Invoice).where(Invoice.account_ref == link.account_ref))
    assert count == 23
    # A pending status of ours survives a sync where the biller still says unpaid.
    (first,) = await invoice_ids(db, link, "02296945")
    async with db.transaction() as session:
        (await session.get(Invoice, first)).status = "pending"
    await co.sync_invoices(db, world.billers, link)
    await co.sync_invoices(db, world.billers, link)
    async with db.session() as session:
        assert (await session.get(Invoice, first)).status == "pending"
        assert await session.scalar(select(func.count()).select_from(Invoice)
                                    .where(Invoice.account_ref == link.account_ref)) == 23


async def test_selectable_groups_by_issuer_with_everything_selected(world):
    portnet = await co.selectable(world.db, world.billers, world.user.id, world.links["portnet-A7K2"].id)
    assert portnet.issuers == ("ANP", "BUREAU VERITAS", "PORTNET", "TUV RHEINLAND")
    sataa = portnet.group("PORTNET")
    assert [i.number for i in sataa.invoices] == ["00069321"]
    assert sataa.channels == (CHANNEL_TASHILAT,)
    assert portnet.group("TUV RHEINLAND").channels == (CHANNEL_CARD, CHANNEL_FATOURATI)
    assert portnet.group("ANP").channels == (CHANNEL_CARD, CHANNEL_FATOURATI, CHANNEL_TASHILAT)

    marsa = await co.selectable(world.db, world.billers, world.user.id, world.links["marsa-casablanca-000236"].id)
    (group,) = marsa.groups
    assert len(group.selected_ids) == 23 and set(marsa.selected_ids) == set(group.selected_ids)
    assert group.totals.ttc == sum((i.amount_ttc for i in group.invoices), D("0.00"))

    iam = await co.selectable(world.db, world.billers, world.user.id, world.links["iam-mobile-156677143760"].id)
    assert [len(g.invoices) for g in iam.groups] == [2]  # 12/2016 and 01/2017 unpaid; paid ones not offered


async def test_another_users_account_is_not_selectable(world):
    other = await make_user(world.db, chat_id="2002")
    from core.errors import UnknownAccount

    with pytest.raises(UnknownAccount):
        await co.selectable(world.db, world.billers, other.id, world.links["portnet-A7K2"].id)
    ids = await invoice_ids(world.db, world.links["portnet-K9AS"], "00028653")
    with pytest.raises(InvoiceNotFound):
        await co.create_checkout(world.db, other, ids, CHANNEL_CARD, world.gateways, world.settings)


# --- Validation ---------------------------------------------------------------------------------


async def test_nothing_selected_is_refused(world):
    with pytest.raises(EmptySelection):
        await co.create_checkout(world.db, world.user, [], CHANNEL_CARD, world.gateways, world.settings)


async def test_mixed_issuers_are_refused_with_the_issuers_named(world):
    link = world.links["portnet-A7K2"]
    ids = await invoice_ids(world.db, link, "00069321", "00071210", "00071388")
    with pytest.raises(MixedIssuers) as caught:
        await co.create_checkout(world.db, world.user, ids, CHANNEL_TASHILAT, world.gateways, world.settings)
    assert caught.value.params["issuers"] == ("ANP", "BUREAU VERITAS", "PORTNET")
    async with world.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(Checkout)) == 0


async def test_channel_must_be_allowed_by_every_invoice(world):
    sataa = await invoice_ids(world.db, world.links["portnet-A7K2"], "00069321")
    with pytest.raises(ChannelNotAllowed) as caught:
        await co.create_checkout(world.db, world.user, sataa, CHANNEL_CARD, world.gateways, world.settings)
    assert caught.value.params == {"channel": CHANNEL_CARD, "allowed": (CHANNEL_TASHILAT,)}
    with pytest.raises(ChannelNotAllowed):
        await co.create_checkout(world.db, world.user, sataa, CHANNEL_FATOURATI, world.gateways, world.settings)
    checkout, instruction = await co.create_checkout(world.db, world.user, sataa, CHANNEL_TASHILAT, world.gateways,
                                                     world.settings)
    assert checkout.gateway == "amanpay" and instruction.reference and len(instruction.reference) == 12

    aska = await invoice_ids(world.db, world.links["portnet-K9AS"], "00028653")
    checkout, instruction = await co.create_checkout(world.db, world.user, aska, CHANNEL_CARD, world.gateways,
                                                     world.settings)
    assert checkout.gateway == "cmi" and instruction.url == f"https://fatoura.example.test/pay/{checkout.token}"


def test_allowed_channels_is_the_intersection():
    class I:  # noqa: E742
        def __init__(self, *means):
            self.payment_means = list(means)

    assert co.allowed_channels([I("cmi"), I("cmi", "amanpay")]) == (CHANNEL_CARD, CHANNEL_FATOURATI)
    assert co.allowed_channels([I("amanpay", "cheque", "virement")]) == (CHANNEL_TASHILAT,)
    assert co.allowed_channels([I("cmi"), I("amanpay")]) == ()
    assert co.allowed_channels([I("cheque", "virement")]) == ()
    assert co.allowed_channels([]) == ()


async def test_totals_of_the_two_marsa_maroc_seed_invoices(world):
    link = world.links["marsa-casablanca-000236"]
    checkout, _ = await co.create_checkout(world.db, world.user, ["02296945", "02296947"], CHANNEL_CARD,
                                           world.gateways, world.settings, now=NOW)
    assert (checkout.amount_ht, checkout.amount_tva, checkout.amount_ttc) == (D("4404.00"), D("880.80"), D("5284.80"))
    assert checkout.issuer == "MARSAMAROC CASA" and checkout.biller == "marsamaroc"
    assert checkout.status == "pending" and checkout.expires_at == NOW + timedelta(minutes=30)
    assert len(checkout.token) >= 32 and checkout.order_id
    view, channel = world.gateways.get("cmi").started[-1]
    assert view.amount == D("5284.80") and view.invoice_numbers == ("02296945", "02296947")
    assert view.customer_name == "Amina" and view.language == "fr"
    async with world.db.session() as session:
        items = (await session.scalars(select(CheckoutItem).where(CheckoutItem.checkout_id == checkout.id))).all()
        assert sorted(i.amount_ttc for i in items) == [D("2642.40"), D("2642.40")]
        # A card checkout leaves the invoices unpaid (nothing to pay at a counter) but covers them.
        statuses = (await session.scalars(select(Invoice.status).where(
            Invoice.id.in_(await invoice_ids(world.db, link, "02296945", "02296947"))))).all()
        assert set(statuses) == {"unpaid"}


async def test_reference_checkout_marks_invoices_pending_with_the_configured_expiry(world):
    ids = await invoice_ids(world.db, world.links["portnet-K9AS"], "00028653")
    checkout, instruction = await co.create_checkout(world.db, world.user, ids, CHANNEL_FATOURATI, world.gateways,
                                                     world.settings, now=NOW)
    assert checkout.expires_at == NOW + timedelta(hours=3) == instruction.expires_at
    assert len(checkout.reference) == 13 and instruction.where_to_pay == ("CashPlus", "Fawatir")
    async with world.db.session() as session:
        assert (await session.get(Invoice, ids[0])).status == "pending"

    sataa = await invoice_ids(world.db, world.links["portnet-A7K2"], "00069321")
    tashilat, instruction = await co.create_checkout(world.db, world.user, sataa, CHANNEL_TASHILAT, world.gateways,
                                                     world.settings, now=NOW)
    # Tashilat: the gateway's expiry wins.
    assert tashilat.expires_at == NOW + co.TASHILAT_DEFAULT_EXPIRY + timedelta(hours=24)
    assert instruction.display_reference == co.format_tashilat(tashilat.reference)


async def test_a_pending_invoice_cannot_be_covered_twice(world):
    ids = await invoice_ids(world.db, world.links["portnet-K9AS"], "00028653")
    first, _ = await co.create_checkout(world.db, world.user, ids, CHANNEL_FATOURATI, world.gateways, world.settings,
                                        now=NOW)
    with pytest.raises(AlreadyCovered) as caught:
        await co.create_checkout(world.db, world.user, ids, CHANNEL_CARD, world.gateways, world.settings,
                                 now=NOW + timedelta(minutes=5))
    assert caught.value.checkout.id == first.id and caught.value.params["numbers"] == "00028653"

    # Once it is cancelled, the invoice is free again.
    await co.cancel_checkout(world.db, world.user.id, first.id)
    async with world.db.session() as session:
        assert (await session.get(Invoice, ids[0])).status == "unpaid"
    second, _ = await co.create_checkout(world.db, world.user, ids, CHANNEL_CARD, world.gateways, world.settings,
                                         now=NOW + timedelta(minutes=6))
    # A card link past its expiry and CMI's session grace no longer covers it either.
    later = NOW + timedelta(minutes=6) + co.CARD_EXPIRY + co.CARD_CALLBACK_GRACE + timedelta(seconds=1)
    with pytest.raises(AlreadyCovered):
        await co.create_checkout(world.db, world.user, ids, CHANNEL_FATOURATI, world.gateways, world.settings,
                                 now=later - timedelta(seconds=2))
    third, _ = await co.create_checkout(world.db, world.user, ids, CHANNEL_FATOURATI, world.gateways, world.settings,
                                        now=later)
    states = {s.id: s.state for s in await co.list_checkouts(world.db, world.user.id, now=later)}
    assert states == {first.id: "cancelled", second.id: "expired", third.id: "pending"}


async def test_a_paid_invoice_is_refused(world):
    ids = await invoice_ids(world.db, world.links["portnet-K9AS"], "00028653")
    async with world.db.transaction() as session:
        (await session.get(Invoice, ids[0])).status = "paid"
    with pytest.raises(InvoiceAlreadyPaid) as caught:
        await co.create_checkout(world.db, world.user, ids, CHANNEL_CARD, world.gateways, world.settings)
    assert caught.value.params["numbers"] == "00028653"


async def test_the_billers_word_is_fetched_when_billers_are_given(world):
    """An invoice paid at the biller's own counter since the last sync is refused."""
    link = world.links["portnet-K9AS"]
    ids = await invoice_ids(world.db, link, "00028653")
    from core.billers.base import PaidNotice

    await world.billers.get("portnet").notify_paid(link.account_ref, PaidNotice(
        ("00028653",), "COUNTER-1", D("3600.00"), NOW, "cheque"))
    with pytest.raises(InvoiceAlreadyPaid):
        await co.create_checkout(world.db, world.user, ids, CHANNEL_CARD, world.gateways, world.settings,
                                 billers=world.billers)


async def test_concurrent_checkouts_on_the_same_invoices_make_one(world):
    ids = await invoice_ids(world.db, world.links["marsa-casablanca-000236"], "02296945", "02296947")
    results = await asyncio.gather(*(co.create_checkout(world.db, world.user, ids, CHANNEL_FATOURATI, world.gateways,
                                                        world.settings) for _ in range(6)), return_exceptions=True)
    made = [r for r in results if not isinstance(r, BaseException)]
    assert len(made) == 1, results
    assert all(isinstance(r, AlreadyCovered) for r in results if isinstance(r, BaseException))


async def test_a_gateway_that_cannot_start_leaves_nothing_live(world):
    gateways = fake_gateways(fail_start=True)
    ids = await invoice_ids(world.db, world.links["portnet-K9AS"], "00028653")
    with pytest.raises(PaymentUnavailable):
        await co.create_checkout(world.db, world.user, ids, CHANNEL_FATOURATI, gateways, world.settings)
    checkout, _ = await co.create_checkout(world.db, world.user, ids, CHANNEL_FATOURATI, world.gateways, world.settings)
    assert checkout.status == "pending"
    (summary, cancelled) = await co.list_checkouts(world.db, world.user.id)
    assert summary.id == checkout.id and cancelled.state == "cancelled"


# --- My payments --------------------------------------------------------------------------


async def test_my_payments_show_again_cancel_and_expire(world):
    ids = await invoice_ids(world.db, world.links["portnet-A7K2"], "00069321")
    checkout, instruction = await co.create_checkout(world.db, world.user, ids, CHANNEL_TASHILAT, world.gateways,
                                                     world.settings, now=NOW)
    (summary,) = await co.list_checkouts(world.db, world.user.id, now=NOW)
    assert summary.state == "pending" and summary.reference == checkout.reference
    assert summary.invoice_numbers == ("00069321",) and summary.amount_ttc == D("3600.00")
    assert summary.expires_at == checkout.expires_at and summary.state_label == "Pending"

    shown, again = await co.show_checkout(world.db, world.user.id, checkout.id, world.gateways, world.settings, now=NOW)
    assert again.reference == instruction.reference and again.display_reference == instruction.display_reference
    assert again.expires_at == checkout.expires_at

    other = await make_user(world.db, chat_id="3003")
    from core.errors import CheckoutNotFound

    with pytest.raises(CheckoutNotFound):
        await co.cancel_checkout(world.db, other.id, checkout.id)

    # Expiry: nothing happens before, the checkout expires and frees the invoice after.
    assert await co.expire_due(world.db, NOW + timedelta(hours=1)) == 0
    assert await co.expire_due(world.db, checkout.expires_at + timedelta(seconds=1)) == 1
    assert await co.expire_due(world.db, checkout.expires_at + timedelta(seconds=2)) == 0
    async with world.db.session() as session:
        assert (await session.get(Checkout, checkout.id)).status == "expired"
        assert (await session.get(Invoice, ids[0])).status == "unpaid"
    _, gone = await co.show_checkout(world.db, world.user.id, checkout.id, world.gateways, world.settings)
    assert gone is None
    # An expired checkout can be "cancelled" harmlessly; a paid one cannot.
    await co.cancel_checkout(world.db, world.user.id, checkout.id)
    async with world.db.transaction() as session:
        (await session.get(Checkout, checkout.id)).status = "paid"
    with pytest.raises(CheckoutClosed):
        await co.cancel_checkout(world.db, world.user.id, checkout.id)


async def test_the_pay_token_is_single_use(world):
    ids = await invoice_ids(world.db, world.links["portnet-K9AS"], "00028653")
    checkout, _ = await co.create_checkout(world.db, world.user, ids, CHANNEL_CARD, world.gateways, world.settings)
    results = await asyncio.gather(*(co.consume_pay_token(world.db, checkout.token) for _ in range(5)))
    assert sorted(results) == [False, False, False, False, True]
    async with world.db.session() as session:
        stored = await session.scalar(select(Checkout.token).where(Checkout.id == checkout.id))
    assert stored == co.used_token(checkout.token) and len(stored) <= 64


# --- Totals, property-based -------------------------------------------------------------------

cents = st.integers(min_value=0, max_value=10 ** 9)


@hsettings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(cents, cents), max_size=40))
def test_totals_of_any_selection_are_the_sums_to_the_centime(pairs):
    class Row:
        def __init__(self, ht: int, tva: int) -> None:
            self.amount_ht = D(ht) / 100
            self.amount_tva = D(tva) / 100
            self.amount_ttc = D(ht + tva) / 100

    rows = [Row(ht, tva) for ht, tva in pairs]
    totals = Totals.of(rows)
    assert totals.ht * 100 == sum(ht for ht, _ in pairs)
    assert totals.tva * 100 == sum(tva for _, tva in pairs)
    assert totals.ttc * 100 == sum(ht + tva for ht, tva in pairs)
    assert totals.ttc == totals.ht + totals.tva and totals.ttc.as_tuple().exponent == -2


@pytest.fixture(scope="module")
def marsa_sqlite(tmp_path_factory, sqlite_template):
    """One seeded SQLite file with a user and the Marsa Maroc link, for the property test below."""
    path = tmp_path_factory.mktemp("prop") / "fatoura.db"
    shutil.copy(sqlite_template, path)
    url = f"sqlite+aiosqlite:///{path}"

    async def prepare():
        from core.billers.sandbox.store import seed_samples

        db = Database(url)
        await seed_samples(db)
        user = await make_user(db)
        link = await link_sample(db, user, "marsa-casablanca-000236")
        await co.sync_invoices(db, billers_for(db), link)
        async with db.session() as session:
            rows = (await session.scalars(select(Invoice).where(Invoice.account_ref == link.account_ref)
                                          .order_by(Invoice.number))).all()
        await db.dispose()
        return user, [(r.id, r.amount_ht, r.amount_tva, r.amount_ttc) for r in rows]

    user, rows = asyncio.run(prepare())
    return url, user, rows


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_checkouts_totals_are_the_sum_of_its_invoices(marsa_sqlite, data):
    url, user, rows = marsa_sqlite
    chosen = data.draw(st.lists(st.sampled_from(rows), min_size=1, unique=True))

    async def run():
        db = Database(url)
        try:
            checkout, _ = await co.create_checkout(db, user, [r[0] for r in chosen], CHANNEL_CARD, fake_gateways(),
                                                   make_settings())
            await co.cancel_checkout(db, user.id, checkout.id)
            return checkout
        finally:
            await db.dispose()

    checkout = asyncio.run(run())
    assert checkout.amount_ht == sum((r[1] for r in chosen), D("0.00"))
    assert checkout.amount_tva == sum((r[2] for r in chosen), D("0.00"))
    assert checkout.amount_ttc == sum((r[3] for r in chosen), D("0.00"))
    assert checkout.amount_ttc == checkout.amount_ht + checkout.amount_tva
