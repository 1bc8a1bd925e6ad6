"""SQLAlchemy 2 ORM models: what Fatoura stores, and the sandbox billers' own records.

The schema changes only through the Alembic migrations in core/migrations.
"""
from __future__ import annotations

import enum
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text as sql,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

Money = Numeric(14, 2, asdecimal=True)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on both SQLite (which drops tzinfo) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), Decimal: Money, dict[str, Any]: JSON, list[Any]: JSON}


class InvoiceStatus(str, enum.Enum):
    """PortNet's 'Statut facture' values we act on: Non réglée, Réglée, plus our in-flight state."""

    UNPAID = "unpaid"  # Non réglée
    PENDING = "pending"  # a payment reference or code covers it, not yet confirmed
    PAID = "paid"  # Réglée
    CANCELLED = "cancelled"  # Annulée


class ConversationStatus(str, enum.Enum):
    """Who holds a conversation (Chatwoot's single status field)."""

    BOT = "bot"
    PENDING = "pending"
    OPEN = "open"
    RESOLVED = "resolved"


# --- Fatoura's own records -------------------------------------------------------------------


class ChatUser(Base):
    """One chat on one channel (a Telegram chat, a WhatsApp user, a web chat session)."""

    __tablename__ = "chat_users"
    __table_args__ = (UniqueConstraint("channel", "chat_id", name="uq_chat_users_channel_chat"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    chat_id: Mapped[str] = mapped_column(String(64))
    locale: Mapped[str] = mapped_column(String(8), default="fr")
    display_name: Mapped[str | None] = mapped_column(String(128))
    notify_new_invoices: Mapped[bool] = mapped_column(Boolean, default=True)
    notify_reminders: Mapped[bool] = mapped_column(Boolean, default=True)
    blocked_at: Mapped[datetime | None]
    last_inbound_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # WhatsApp: the phone number (wa_id) to send to when the chat is keyed on a business-scoped
    # user id, and the customer's answer to "may we notify you outside the 24-hour window?"
    # (None: not answered; templates go only when True).
    whatsapp_address: Mapped[str | None] = mapped_column(String(32))
    whatsapp_opt_in: Mapped[bool | None] = mapped_column(Boolean)
    whatsapp_opt_in_at: Mapped[datetime | None]
    whatsapp_opt_in_asked_at: Mapped[datetime | None]

    accounts: Mapped[list["LinkedAccount"]] = relationship(
        back_populates="user", cascade="all, delete-orphan", order_by="LinkedAccount.id"
    )


class LinkedAccount(Base):
    """A biller account a chat has proven it may see (identifier + secret checked by the biller)."""

    __tablename__ = "linked_accounts"
    __table_args__ = (
        UniqueConstraint("user_id", "biller", "account_ref", name="uq_linked_accounts_user_account"),
        Index("ix_linked_accounts_biller_ref", "biller", "account_ref"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("chat_users.id", ondelete="CASCADE"))
    biller: Mapped[str] = mapped_column(String(32))
    service: Mapped[str] = mapped_column(String(32))
    identifier: Mapped[str] = mapped_column(String(64))
    account_ref: Mapped[str] = mapped_column(String(128))
    holder_name: Mapped[str | None] = mapped_column(String(256))
    nickname: Mapped[str | None] = mapped_column(String(64))
    notify_new_invoices: Mapped[bool] = mapped_column(Boolean, default=True)
    notify_reminders: Mapped[bool] = mapped_column(Boolean, default=True)
    verified_at: Mapped[datetime] = mapped_column(default=utcnow)

    user: Mapped[ChatUser] = relationship(back_populates="accounts")


class Invoice(Base):
    """An invoice as known from its biller, with every column the portals show."""

    __tablename__ = "invoices"
    __table_args__ = (
        UniqueConstraint("biller", "account_ref", "number", name="uq_invoices_biller_account_number"),
        Index("ix_invoices_account_status", "biller", "account_ref", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    biller: Mapped[str] = mapped_column(String(32))
    account_ref: Mapped[str] = mapped_column(String(128))
    number: Mapped[str] = mapped_column(String(32))  # N° facture / Numéro de la facture
    invoice_type: Mapped[str] = mapped_column(String(32), default="Principale")
    issuer: Mapped[str] = mapped_column(String(64))  # Émetteur
    client_name: Mapped[str | None] = mapped_column(String(256))
    call_number: Mapped[str | None] = mapped_column(String(32))  # Numéro d'appel
    customer_number: Mapped[str | None] = mapped_column(String(32))  # N° client
    billing_period: Mapped[str | None] = mapped_column(String(7))  # Échéance MM/YYYY
    invoice_date: Mapped[date | None] = mapped_column(Date)
    due_date: Mapped[date | None] = mapped_column(Date)  # date limite / échéance de règlement
    amount_ht: Mapped[Decimal]
    amount_tva: Mapped[Decimal]
    amount_ttc: Mapped[Decimal]
    tva_rate: Mapped[Decimal] = mapped_column(Numeric(5, 4), default=Decimal("0.2000"))
    currency: Mapped[str] = mapped_column(String(3), default="MAD")
    status: Mapped[str] = mapped_column(String(16), default=InvoiceStatus.UNPAID.value)
    payment_means: Mapped[list[Any]] = mapped_column(JSON, default=list)
    prestations: Mapped[list[Any]] = mapped_column(JSON, default=list)
    messages: Mapped[list[Any]] = mapped_column(JSON, default=list)
    description: Mapped[str | None] = mapped_column(Text)
    fetched_at: Mapped[datetime] = mapped_column(default=utcnow)


class Checkout(Base):
    """A customer's choice of invoices of ONE issuer to pay through one payment channel."""

    __tablename__ = "checkouts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("chat_users.id", ondelete="SET NULL"))
    biller: Mapped[str] = mapped_column(String(32))
    issuer: Mapped[str] = mapped_column(String(64))
    gateway: Mapped[str | None] = mapped_column(String(32))
    channel: Mapped[str | None] = mapped_column(String(32))  # card, fatourati, tashilat, ...
    order_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    reference: Mapped[str | None] = mapped_column(String(32))  # Fatourati ref / Tashilat code
    amount_ht: Mapped[Decimal]
    amount_tva: Mapped[Decimal]
    amount_ttc: Mapped[Decimal]
    status: Mapped[str] = mapped_column(String(16), default="draft")
    expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    items: Mapped[list["CheckoutItem"]] = relationship(cascade="all, delete-orphan")


class CheckoutItem(Base):
    __tablename__ = "checkout_items"

    checkout_id: Mapped[int] = mapped_column(ForeignKey("checkouts.id", ondelete="CASCADE"), primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"), primary_key=True)
    amount_ttc: Mapped[Decimal]


class Payment(Base):
    """A verified gateway confirmation; (gateway, transaction_id) makes it apply once."""

    __tablename__ = "payments"
    __table_args__ = (UniqueConstraint("gateway", "transaction_id", name="uq_payments_gateway_txn"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    checkout_id: Mapped[int] = mapped_column(ForeignKey("checkouts.id", ondelete="CASCADE"))
    gateway: Mapped[str] = mapped_column(String(32))
    transaction_id: Mapped[str] = mapped_column(String(64))
    amount: Mapped[Decimal]
    status: Mapped[str] = mapped_column(String(16))
    receipt_code: Mapped[str | None] = mapped_column(String(32), unique=True)
    raw: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class GatewayCallback(Base):
    """Every raw callback body a gateway sent, kept before it is parsed or trusted."""

    __tablename__ = "gateway_callbacks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    gateway: Mapped[str] = mapped_column(String(32))
    body: Mapped[str] = mapped_column(Text)
    headers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    outcome: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutboxMessage(Base):
    """A message to deliver to a chat; workers claim rows with SKIP LOCKED and retry with backoff."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),
                      Index("ix_outbox_batch", "batch"),
                      Index("ix_outbox_channel_status", "channel", "status"))

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    chat_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    dedupe_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued/sending/delivered/dead/skipped
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    provider_message_id: Mapped[str | None] = mapped_column(String(128), index=True)
    provider_status: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]
    batch: Mapped[str | None] = mapped_column(String(64))  # one announcement's messages, for its progress bar


class BillerEvent(Base):
    """A signed biller event accepted once: (biller, event_id) refuses a replay of the same event."""

    __tablename__ = "biller_events"
    __table_args__ = (UniqueConstraint("biller", "event_id", name="uq_biller_events_biller_event"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    biller: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(128))
    event_type: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class InboundWebhook(Base):
    """A chat platform's webhook body, stored raw before it is parsed: what the code could not
    handle is kept (outcome "unhandled" / "error") and can be replayed, never silently lost."""

    __tablename__ = "inbound_webhooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    body: Mapped[bytes] = mapped_column(LargeBinary)  # the bytes as received: the signature is over them
    outcome: Mapped[str | None] = mapped_column(String(32), index=True)  # None while being handled
    detail: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class InboundMessageId(Base):
    """A platform message id already handled: deliveries are at least once, effects once."""

    __tablename__ = "inbound_message_ids"

    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(191), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class Agent(Base):
    """A support agent: signs in to the console (/agents), or writes in a Telegram support topic."""

    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(128))
    password_hash: Mapped[str] = mapped_column(String(256))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    language: Mapped[str] = mapped_column(String(8), default="fr", server_default="fr")  # the console's
    telegram_user_id: Mapped[int | None] = mapped_column(BigInteger)  # who they are in the support group
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def name(self) -> str:
        return self.display_name or self.username


class AgentSession(Base):
    """A signed-in console; the cookie holds the token, the row only its SHA-256."""

    __tablename__ = "agent_sessions"
    __table_args__ = (Index("ix_agent_sessions_agent", "agent_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class HandoffTicket(Base):
    """A customer's request for a person; `status` is the one field everyone reads."""

    __tablename__ = "handoff_tickets"
    __table_args__ = (
        # One live request per chat (a partial unique index on both SQLite and PostgreSQL).
        Index("uq_handoff_tickets_live_user", "user_id", unique=True,
              sqlite_where=sql("status IN ('pending', 'open')"),
              postgresql_where=sql("status IN ('pending', 'open')")),
        Index("ix_handoff_tickets_status", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("chat_users.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default=ConversationStatus.PENDING.value)
    reason: Mapped[str | None] = mapped_column(Text)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    support_thread_id: Mapped[str | None] = mapped_column(String(64))
    rating: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime | None]  # any change the console must show (claim, handover, close)
    rated_at: Mapped[datetime | None]


class TranscriptEntry(Base):
    """One message of a handed-over conversation and who wrote it; `internal` notes stay agent-side."""

    __tablename__ = "transcript_entries"
    __table_args__ = (Index("ix_transcript_entries_ticket", "ticket_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("handoff_tickets.id", ondelete="CASCADE"))
    author: Mapped[str] = mapped_column(String(16))  # customer / agent / bot / note
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    text: Mapped[str] = mapped_column(Text)
    internal: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- The sandbox billers' own back office ----------------------------------------------------


class SandboxAccount(Base):
    """An account held by a sandbox biller: what the real biller would know of its customer."""

    __tablename__ = "sandbox_accounts"
    __table_args__ = (
        UniqueConstraint("biller", "service", "identifier", "terminal", name="uq_sandbox_accounts_lookup"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ref: Mapped[str] = mapped_column(String(64), unique=True)
    biller: Mapped[str] = mapped_column(String(32))
    service: Mapped[str] = mapped_column(String(32))
    identifier: Mapped[str] = mapped_column(String(64))
    terminal: Mapped[str] = mapped_column(String(64), default="")
    secret: Mapped[str | None] = mapped_column(String(64))  # payment code, e-mail
    holder_name: Mapped[str] = mapped_column(String(256))
    customer_number: Mapped[str | None] = mapped_column(String(32))
    customs_code: Mapped[str | None] = mapped_column(String(32))  # Code douanier


class SandboxInvoice(Base):
    __tablename__ = "sandbox_invoices"
    __table_args__ = (
        UniqueConstraint("account_id", "number", name="uq_sandbox_invoices_account_number"),
        Index("ix_sandbox_invoices_account", "account_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("sandbox_accounts.id", ondelete="CASCADE"))
    number: Mapped[str] = mapped_column(String(32))
    invoice_type: Mapped[str] = mapped_column(String(32), default="Principale")
    issuer: Mapped[str] = mapped_column(String(64))
    call_number: Mapped[str | None] = mapped_column(String(32))
    billing_period: Mapped[str | None] = mapped_column(String(7))
    invoice_date: Mapped[date] = mapped_column(Date)
    due_date: Mapped[date] = mapped_column(Date)
    amount_ht: Mapped[Decimal]
    amount_ttc: Mapped[Decimal]
    status: Mapped[str] = mapped_column(String(16), default=InvoiceStatus.UNPAID.value)
    payment_means: Mapped[list[Any]] = mapped_column(JSON, default=list)
    prestations: Mapped[list[Any]] = mapped_column(JSON, default=list)
    messages: Mapped[list[Any]] = mapped_column(JSON, default=list)
    description: Mapped[str | None] = mapped_column(Text)
    paid_at: Mapped[datetime | None]
    transaction_id: Mapped[str | None] = mapped_column(String(64))
