"""Push: a new invoice reaches every linked chat once, reminders come before the due date but never
at night nor after payment, and each chat chooses what it gets. Clocks are given, never read."""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from bot.conversation.engine import Conversation
from core.billers.base import AccountQuery
from core.billers.registry import BillerRegistry
from core.billers.sandbox.store import issue_invoice
from core.config import Settings
from core.i18n import TIMEZONE
from core.models import ChatUser, LinkedAccount, OutboxMessage, SandboxInvoice
from core.services import biller_events, linking, notifications
from core.services.notifications import QuietHours, reminder_due, still_wanted
from core.services.outbox import claim_due, mark_delivered
from core.services.users import get_or_create_user
from core.state import MemoryState
from tests.chat import Chat
from webhooks.biller_events import router
from webhooks.state import AppState

SETTINGS = Settings(_env_file=None, sandbox=True, secret_key="push-tests")
QUIET = QuietHours.parse("21:00-08:00")


def casablanca(y, m, d, hh, mm=0) -> datetime:  # noqa: ANN001
    return datetime(y, m, d, hh, mm, tzinfo=TIMEZONE).astimezone(timezone.utc)


async def link(db, billers, chat_id: str, locale: str = "fr", account: str = "A7K2", channel: str = "telegram",
               linked_at: datetime | None = None) -> tuple[ChatUser, LinkedAccount]:  # noqa: ANN001
    user, _ = await get_or_create_user(db, channel, chat_id, locale)
    found = await billers.get("portnet").find_account(AccountQuery(service="portnet", identifier=account))
    await linking.save_link(db, user.id, found)
    async with db.transaction() as session:
        row = await session.scalar(select(LinkedAccount).where(LinkedAccount.user_id == user.id))
        if linked_at is not None:
            row.verified_at = linked_at
    return user, row


async def messages(db, kind: str | None = None) -> list[OutboxMessage]:  # noqa: ANN001
    async with db.session() as session:
        query = select(OutboxMessage).order_by(OutboxMessage.id)
        if kind:
            query = query.where(OutboxMessage.kind == kind)
        return list((await session.scalars(query)).all())


@pytest.fixture
def billers(seeded_db):
    return BillerRegistry.from_settings(SETTINGS, seeded_db)


# --- New invoices ---------------------------------------------------------------------------


async def test_a_new_invoice_is_announced_once_to_every_linked_chat_whatever_reports_it(seeded_db, billers):
    db = seeded_db
    amina, _ = await link(db, billers, "1001", "fr")
    karim, _ = await link(db, billers, "1002", "ar")
    account, invoice = await issue_invoice(db, "portnet-A7K2", Decimal("1000.00"), due_in_days=10,
                                           today=date.today())
    page = await billers.get("portnet").list_invoices(account.ref, _number(invoice.number))
    # An event, the same event's twin, and two syncs all report it.
    assert await notifications.announce(db, "portnet", account.ref, page.items) == 2
    assert await notifications.announce(db, "portnet", account.ref, page.items) == 0
    report = await notifications.sync_accounts(db, billers, now=datetime.now(timezone.utc))
    await notifications.sync_accounts(db, billers, now=datetime.now(timezone.utc))
    assert report.announced == 0
    rows = await messages(db, "invoice_new")
    assert sorted(r.chat_id for r in rows) == ["1001", "1002"]
    fr = next(r for r in rows if r.chat_id == "1001").payload
    assert "Nouvelle facture" in fr["text"] and invoice.issuer in fr["text"] and "1\u202f200,00" in fr["text"]
    assert fr["params"]["amount"] == "1\u202f200,00\xa0MAD" and fr["params"]["number"] == invoice.number
    assert [b["data"].split("|")[0] for b in fr["buttons"][0]] == ["P", "$"]
    ar = next(r for r in rows if r.chat_id == "1002").payload
    assert ar["rtl"] and "فاتورة جديدة" in ar["text"]


async def test_the_sync_announces_only_invoices_issued_since_the_chat_linked_the_account(seeded_db, billers):
    db = seeded_db
    await link(db, billers, "1001")
    # The account's invoices from before the link are what the customer saw when linking.
    report = await notifications.sync_accounts(db, billers, now=datetime.now(timezone.utc))
    assert report.accounts == 1 and report.announced == 0
    _, invoice = await issue_invoice(db, "portnet-A7K2", Decimal("80.00"), today=date.today())
    report = await notifications.sync_accounts(db, billers, now=datetime.now(timezone.utc))
    assert report.announced == 1
    (row,) = await messages(db, "invoice_new")
    assert row.payload["invoice"]["number"] == invoice.number


async def test_new_invoices_turned_off_for_the_chat_or_the_account_are_not_announced(seeded_db, billers):
    db = seeded_db
    chat_off, _ = await link(db, billers, "1001")
    _, account_off = await link(db, billers, "1002")
    await link(db, billers, "1003")
    async with db.transaction() as session:
        (await session.get(ChatUser, chat_off.id)).notify_new_invoices = False
        (await session.get(LinkedAccount, account_off.id)).notify_new_invoices = False
    account, invoice = await issue_invoice(db, "portnet-A7K2", Decimal("10.00"), today=date.today())
    page = await billers.get("portnet").list_invoices(account.ref, _number(invoice.number))
    assert await notifications.announce(db, "portnet", account.ref, page.items) == 1
    assert [r.chat_id for r in await messages(db)] == ["1003"]


# --- Reminders ------------------------------------------------------------------------------


def test_which_reminder_is_due_on_which_day():
    due = date(2026, 12, 10)
    assert [reminder_due(due, due - timedelta(days=n), (3, 1)) for n in (5, 4, 3, 2, 1, 0, -1)] == \
        [None, None, 3, 3, 1, 1, None]


def test_quiet_hours_hold_a_message_until_eight_in_casablanca():
    assert QUIET.next_allowed(casablanca(2026, 12, 1, 22, 30)) == casablanca(2026, 12, 2, 8)
    assert QUIET.next_allowed(casablanca(2026, 12, 2, 7, 59)) == casablanca(2026, 12, 2, 8)
    assert QUIET.next_allowed(casablanca(2026, 12, 2, 8)) == casablanca(2026, 12, 2, 8)
    assert QUIET.next_allowed(casablanca(2026, 12, 2, 20, 59)) == casablanca(2026, 12, 2, 20, 59)


async def test_reminders_three_days_and_one_day_before_never_at_night(seeded_db, billers):
    db = seeded_db
    await link(db, billers, "1001", linked_at=casablanca(2026, 11, 1, 9))
    _, invoice = await issue_invoice(db, "portnet-A7K2", Decimal("500.00"), today=date(2026, 11, 25),
                                     due_in_days=15)  # due 10 December
    async def sync(now: datetime):  # noqa: ANN202
        return await notifications.sync_accounts(db, billers, now=now, offsets=(3, 1), quiet=QUIET)

    assert (await sync(casablanca(2026, 12, 6, 12))).reminders == 0  # 4 days left
    # 7 December, 22:30 in Casablanca: the 3-day reminder is queued for 8:00 the next morning, and
    # says what will be true then: 2 days left.
    assert (await sync(casablanca(2026, 12, 7, 22, 30))).reminders == 1
    (first,) = await messages(db, "invoice_reminder")
    assert first.next_attempt_at == casablanca(2026, 12, 8, 8)
    assert "2 jours" in first.payload["text"] and first.payload["days_before"] == 3
    # At night only the announcement of the invoice (the sync's first sight of it) may go.
    (announcement,) = await claim_due(db, "w", now=casablanca(2026, 12, 7, 23, 59))
    assert announcement.kind == "invoice_new"
    await mark_delivered(db, announcement.id)
    assert [m.id for m in await claim_due(db, "w", now=casablanca(2026, 12, 8, 8))] == [first.id]
    # Syncs on the 8th add nothing; on the 9th (1 day left, at 10:00) the 1-day reminder goes at once.
    assert (await sync(casablanca(2026, 12, 8, 15))).reminders == 0
    assert (await sync(casablanca(2026, 12, 9, 10))).reminders == 1
    second = (await messages(db, "invoice_reminder"))[1]
    assert second.next_attempt_at == casablanca(2026, 12, 9, 10) and "1 jour" in second.payload["text"]
    assert (await sync(casablanca(2026, 12, 11, 10))).reminders == 0  # overdue: no more reminders
    assert invoice.number in second.payload["text"]


async def test_no_reminder_after_payment_even_one_already_queued(seeded_db, billers):
    db = seeded_db
    await link(db, billers, "1001", linked_at=casablanca(2026, 11, 1, 9))
    _, invoice = await issue_invoice(db, "portnet-A7K2", Decimal("500.00"), today=date(2026, 11, 25), due_in_days=15)
    await notifications.sync_accounts(db, billers, now=casablanca(2026, 12, 7, 10), offsets=(3, 1), quiet=QUIET)
    (queued,) = [m for m in await claim_due(db, "w", now=casablanca(2026, 12, 7, 10)) if m.kind == "invoice_reminder"]
    assert await still_wanted(db, billers, queued) is None
    async with db.transaction() as session:  # paid at the counter before the worker got to it
        await session.execute(update(SandboxInvoice).where(SandboxInvoice.number == invoice.number).values(status="paid"))
    assert await still_wanted(db, billers, queued) == "the invoice is paid"
    report = await notifications.sync_accounts(db, billers, now=casablanca(2026, 12, 9, 10), offsets=(3, 1), quiet=QUIET)
    assert report.reminders == 0


async def test_reminders_turned_off_and_blocked_chats_get_none(seeded_db, billers):
    db = seeded_db
    off, _ = await link(db, billers, "1001", linked_at=casablanca(2026, 11, 1, 9))
    blocked, _ = await link(db, billers, "1002", linked_at=casablanca(2026, 11, 1, 9))
    await link(db, billers, "1003", linked_at=casablanca(2026, 11, 1, 9))
    async with db.transaction() as session:
        (await session.get(ChatUser, off.id)).notify_reminders = False
        (await session.get(ChatUser, blocked.id)).blocked_at = casablanca(2026, 11, 20, 9)
    await issue_invoice(db, "portnet-A7K2", Decimal("500.00"), today=date(2026, 11, 25), due_in_days=15)
    await notifications.sync_accounts(db, billers, now=casablanca(2026, 12, 7, 10), offsets=(3, 1), quiet=QUIET)
    assert [m.chat_id for m in await messages(db, "invoice_reminder")] == ["1003"]
    # The blocked customer writes again: the next reminder reaches them.
    await get_or_create_user(db, "telegram", "1002")
    await notifications.sync_accounts(db, billers, now=casablanca(2026, 12, 9, 10), offsets=(3, 1), quiet=QUIET)
    assert sorted(m.chat_id for m in await messages(db, "invoice_reminder")) == ["1002", "1003", "1003"]


# --- Preferences from the menu ---------------------------------------------------------------


async def test_amina_turns_reminders_off_for_one_account_from_the_menu(seeded_db, billers):
    conversation = Conversation(SETTINGS, seeded_db, MemoryState(), billers)
    chat = Chat(conversation, chat_id="w1")
    await chat.start()
    await chat.press("Lier un compte")
    await chat.press("PortNet")
    await chat.say("A7K2")
    await chat.press("Menu")
    await chat.press("Notifications")
    assert "Ce chat — Nouvelles factures : activées · Rappels : activés" in chat.text
    await chat.press("Rappels : activés")  # the first one: the whole chat
    assert "Ce chat — Nouvelles factures : activées · Rappels : désactivés" in chat.text
    await chat.press("Rappels : désactivés")
    await chat.press(" · Rappels : activés")  # the account's own switch
    async with seeded_db.session() as session:
        user = await session.scalar(select(ChatUser).where(ChatUser.chat_id == "w1"))
        account = await session.scalar(select(LinkedAccount).where(LinkedAccount.user_id == user.id))
    assert user.notify_reminders and not account.notify_reminders and account.notify_new_invoices
    assert "Ce chat — Nouvelles factures : activées · Rappels : activés" in chat.text
    assert "A7K2 — Nouvelles factures : activées · Rappels : désactivés" in chat.text
    await chat.press_data(f"N|{account.id + 999}|r")  # someone else's account: refused, nothing changes
    assert "n'est plus valable" in chat.text


# --- Biller events --------------------------------------------------------------------------


def _number(number: str):  # noqa: ANN202
    from core.billers.base import InvoiceFilter

    return InvoiceFilter(status=None, number=number)


def client(db, billers) -> httpx.AsyncClient:  # noqa: ANN001
    app = FastAPI()
    app.include_router(router)
    app.state.fatoura = AppState(settings=SETTINGS, db=db, billers=billers)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://fatoura.example.test")


async def test_a_signed_biller_event_announces_the_invoice_and_a_forged_or_replayed_one_is_refused(seeded_db, billers):
    db = seeded_db
    await link(db, billers, "1001")
    account, invoice = await issue_invoice(db, "portnet-A7K2", Decimal("42.00"), today=date.today())
    secret = biller_events.event_secret(SETTINGS, "portnet")
    body = json.dumps(biller_events.issued_event(account.ref, invoice.number, "evt-1")).encode()
    async with client(db, billers) as http:
        async def post(payload: bytes, headers: dict) -> httpx.Response:
            return await http.post("/webhooks/billers/portnet", content=payload, headers=headers)

        forged = await post(body, biller_events.signed_headers("not-the-secret", body))
        assert forged.status_code == 401
        stale = await post(body, biller_events.signed_headers(secret, body, timestamp=1_700_000_000))
        assert stale.status_code == 409
        tampered = body.replace(b"evt-1", b"evt-2")
        assert (await post(tampered, biller_events.signed_headers(secret, body))).status_code == 401
        assert (await post(body, {})).status_code == 401
        assert await messages(db) == []

        accepted = await post(body, biller_events.signed_headers(secret, body))
        assert accepted.status_code == 200 and accepted.json() == {"outcome": "announced", "queued": 1}
        replay = await post(body, biller_events.signed_headers(secret, body))
        assert replay.status_code == 409
        # A new event about the same invoice: accepted, but the chat already knows it.
        again = json.dumps(biller_events.issued_event(account.ref, invoice.number, "evt-3")).encode()
        assert (await post(again, biller_events.signed_headers(secret, again))).json()["queued"] == 0

        for garbage in (b"", b"{", b"[]", b'{"id": 5}', json.dumps({"id": "x", "type": "invoice.issued"}).encode(),
                        b"\xff\xfe"):
            answer = await post(garbage, biller_events.signed_headers(secret, garbage))
            assert answer.status_code == 400, garbage
        unknown = await post(body, biller_events.signed_headers(secret, body))
        assert (await http.post("/webhooks/billers/nobody", content=body,
                                headers=biller_events.signed_headers(secret, body))).status_code == 404
        assert unknown.status_code == 409
    (row,) = await messages(db)
    assert row.kind == "invoice_new" and row.batch == "event:portnet:evt-1"


async def test_an_event_for_an_invoice_the_biller_does_not_hold_queues_nothing(seeded_db, billers):
    await link(seeded_db, billers, "1001")
    secret = biller_events.event_secret(SETTINGS, "portnet")
    body = json.dumps(biller_events.issued_event("portnet-A7K2", "NOPE-1", "evt-9")).encode()
    async with client(seeded_db, billers) as http:
        answer = await http.post("/webhooks/billers/portnet", content=body,
                                 headers=biller_events.signed_headers(secret, body))
    assert answer.json() == {"outcome": "unknown invoice", "queued": 0}
    assert await messages(seeded_db) == []


async def test_a_reminder_that_comes_up_at_night_waits_for_the_morning_in_the_worker(db):
    from core.services import outbox
    from core.services.notifications import quiet_hold
    from fatoura.worker import Delivery

    night = casablanca(2026, 12, 7, 23, 15)
    sent = []

    async def sender(message):  # noqa: ANN001, ANN202
        sent.append(message.kind)
        return "1"

    async with db.transaction() as session:
        for kind in ("invoice_reminder", "invoice_new", "payment_paid"):
            await outbox.enqueue_once(session, channel="telegram", chat_id="9", kind=kind, payload={"text": kind},
                                      dedupe_key=kind)
    engine = Delivery(db, {"telegram": sender}, worker="w", hold=quiet_hold(QUIET, clock=lambda: night))
    assert await engine.round() == 3
    assert sorted(sent) == ["invoice_new", "payment_paid"]
    (reminder,) = await messages(db, "invoice_reminder")
    assert reminder.status == "queued" and reminder.next_attempt_at == casablanca(2026, 12, 8, 8)
