"""Linking a biller account to a chat, with a guard against guessing codes.

Failed lookups are counted per chat and per identifier in the shared state store (so every web
and worker process sees them): after a few failures each new try waits a little longer, and
after more the chat / identifier is locked for a while. Malformed input is refused before any
lookup and costs nothing; only real lookups can leak whether a code exists.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from sqlalchemy import func, select

from core.billers.base import AccountQuery, BillerAccount
from core.billers.catalog import make_query
from core.billers.registry import BillerRegistry
from core.config import Settings
from core.db import Database
from core.errors import InvalidNickname, TooManyAccounts, TooManyAttempts, UnknownAccount, WrongEmail, WrongPaymentCode
from core.models import LinkedAccount
from core.state import StateStore

MAX_ACCOUNTS_PER_CHAT = 20
MAX_NICKNAME = 40


def _digest(value: str) -> str:
    # Identifiers are personal data: keys in the shared store hold a digest, not the number.
    return hashlib.sha256(value.encode()).hexdigest()[:24]


class LinkGuard:
    def __init__(self, state: StateStore, settings: Settings) -> None:
        self.state = state
        self.slow_after = settings.link_failures_before_delay
        self.lock_after = settings.link_failures_before_lock
        self.lock_seconds = settings.link_lock_minutes * 60

    def _keys(self, chat_key: str, biller: str, identifier: str | None) -> list[str]:
        keys = [f"link:fail:chat:{chat_key}"]
        if identifier:
            keys.append(f"link:fail:id:{biller}:{_digest(identifier)}")
        return keys

    async def check(self, chat_key: str, biller: str, identifier: str | None = None) -> None:
        """Raise TooManyAttempts while a lock or a slow-down is in force."""
        for key in self._keys(chat_key, biller, identifier):
            for suffix in (":lock", ":wait"):
                left = await self.state.ttl(key + suffix)
                if left:
                    raise TooManyAttempts(minutes=max(1, math.ceil(left / 60)))

    async def failed(self, chat_key: str, biller: str, identifier: str | None) -> None:
        for key in self._keys(chat_key, biller, identifier):
            count = await self.state.incr(key, ttl=self.lock_seconds)
            if count >= self.lock_after:
                await self.state.set_json(key + ":lock", 1, ttl=self.lock_seconds)
            elif count >= self.slow_after:
                # 30 s, 60 s, 120 s ... between tries once the free tries are spent.
                await self.state.set_json(key + ":wait", 1, ttl=30 * 2 ** (count - self.slow_after))

    async def succeeded(self, chat_key: str) -> None:
        await self.state.delete(f"link:fail:chat:{chat_key}")


@dataclass(frozen=True)
class LinkResult:
    account: LinkedAccount
    created: bool


async def find_account(billers: BillerRegistry, guard: LinkGuard, chat_key: str, biller: str, service: str,
                       identifier: str, secret: str | None = None, terminal: str | None = None) -> BillerAccount:
    """Ask the biller for the account, under the guard. Typed errors for every refusal."""
    connector = billers.get(biller)
    query: AccountQuery = make_query(connector.info, service, identifier, secret, terminal)
    guard_id = f"{query.terminal or ''}/{query.identifier}"
    await guard.check(chat_key, biller, guard_id)
    try:
        account = await connector.find_account(query)
    except (UnknownAccount, WrongPaymentCode, WrongEmail):
        await guard.failed(chat_key, biller, guard_id)
        raise
    await guard.succeeded(chat_key)
    return account


async def save_link(db: Database, user_id: int, account: BillerAccount, nickname: str | None = None) -> LinkResult:
    """Remember the account for this chat; linking it again returns the existing link."""
    async with db.transaction() as session:
        existing = await session.scalar(select(LinkedAccount).where(
            LinkedAccount.user_id == user_id, LinkedAccount.biller == account.biller,
            LinkedAccount.account_ref == account.account_ref))
        if existing is not None:
            return LinkResult(existing, False)
        count = await session.scalar(select(func.count()).select_from(LinkedAccount).where(LinkedAccount.user_id == user_id))
        if count >= MAX_ACCOUNTS_PER_CHAT:
            raise TooManyAccounts(limit=MAX_ACCOUNTS_PER_CHAT)
        link = LinkedAccount(user_id=user_id, biller=account.biller, service=account.service,
                             identifier=account.identifier, account_ref=account.account_ref,
                             holder_name=account.holder_name, nickname=clean_nickname(nickname) if nickname else None)
        session.add(link)
    return LinkResult(link, True)


def clean_nickname(raw: str) -> str:
    text = " ".join(raw.split()) if isinstance(raw, str) else ""
    if not text or len(text) > MAX_NICKNAME:
        raise InvalidNickname(f"bad nickname {raw!r}")
    return text


async def list_links(db: Database, user_id: int) -> list[LinkedAccount]:
    async with db.session() as session:
        return list((await session.scalars(
            select(LinkedAccount).where(LinkedAccount.user_id == user_id).order_by(LinkedAccount.id))).all())


async def get_link(db: Database, user_id: int, link_id: int) -> LinkedAccount | None:
    async with db.session() as session:
        return await session.scalar(select(LinkedAccount).where(LinkedAccount.id == link_id, LinkedAccount.user_id == user_id))


async def rename_link(db: Database, user_id: int, link_id: int, nickname: str) -> LinkedAccount | None:
    name = clean_nickname(nickname)
    async with db.transaction() as session:
        link = await session.scalar(select(LinkedAccount).where(LinkedAccount.id == link_id, LinkedAccount.user_id == user_id))
        if link is not None:
            link.nickname = name
    return link


async def unlink(db: Database, user_id: int, link_id: int) -> bool:
    async with db.transaction() as session:
        link = await session.scalar(select(LinkedAccount).where(LinkedAccount.id == link_id, LinkedAccount.user_id == user_id))
        if link is None:
            return False
        await session.delete(link)
    return True
