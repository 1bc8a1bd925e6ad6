"""Support agents: accounts (scrypt password hashes), console sessions and their CSRF tokens.

A session is a random token in an HttpOnly cookie; the database keeps only its SHA-256, so a
leaked table opens no console. The cookie value is signed with SECRET_KEY (a cookie we did not
issue is refused before any query) and the CSRF token of a session is an HMAC of its token, so
it needs no storage and dies with the session.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select

from core.db import Database
from core.errors import N_, FatouraError
from core.i18n import LANGUAGES
from core.models import Agent, AgentSession, utcnow

# scrypt cost (RFC 7914): 2**15 x 8 x 1 takes ~50 ms and 32 MiB, OWASP's recommended floor.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 15, 8, 1
USERNAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{1,31}")
MIN_PASSWORD = 10


class AgentError(FatouraError):
    msgid = N_("This action is not allowed.")


class InvalidUsername(AgentError):
    msgid = N_("A username has 2 to 32 characters: lowercase letters, digits, dot, dash or underscore.")


class WeakPassword(AgentError):
    msgid = N_("A password has at least {n} characters.")


class UsernameTaken(AgentError):
    msgid = N_("This username is already taken.")


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                            maxmem=64 * 1024 * 1024, dklen=32)
    b64 = lambda raw: base64.b64encode(raw).decode()  # noqa: E731
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt)}${b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        given = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                               maxmem=64 * 1024 * 1024, dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(given, expected)


# A hash to check against when the username is unknown, so timing doesn't tell which names exist.
_DUMMY_HASH = hash_password(secrets.token_urlsafe(12))


async def add_agent(db: Database, username: str, password: str, display_name: str | None = None,
                    language: str = "fr", telegram_user_id: int | None = None) -> Agent:
    username = username.strip().lower()
    if not USERNAME_RE.fullmatch(username):
        raise InvalidUsername(f"bad username {username!r}")
    if len(password) < MIN_PASSWORD:
        raise WeakPassword("password too short", n=MIN_PASSWORD)
    async with db.transaction() as session:
        if await session.scalar(select(Agent.id).where(Agent.username == username)) is not None:
            raise UsernameTaken(f"username {username!r} exists")
        agent = Agent(username=username, display_name=(display_name or "").strip()[:128] or None,
                      password_hash=hash_password(password), language=language if language in LANGUAGES else "fr",
                      telegram_user_id=telegram_user_id, active=True)
        session.add(agent)
    return agent


async def list_agents(db: Database, active_only: bool = False) -> list[Agent]:
    async with db.session() as session:
        query = select(Agent).order_by(Agent.username)
        if active_only:
            query = query.where(Agent.active.is_(True))
        return list((await session.scalars(query)).all())


async def set_active(db: Database, username: str, active: bool) -> bool:
    """Enable or disable an account; disabling also signs it out everywhere."""
    async with db.transaction() as session:
        agent = await session.scalar(select(Agent).where(Agent.username == username.strip().lower()))
        if agent is None:
            return False
        agent.active = active
        if not active:
            await session.execute(delete(AgentSession).where(AgentSession.agent_id == agent.id))
    return True


async def authenticate(db: Database, username: str, password: str) -> Agent | None:
    async with db.session() as session:
        agent = await session.scalar(select(Agent).where(Agent.username == (username or "").strip().lower()))
    if agent is None or not agent.active:
        verify_password(password or "", _DUMMY_HASH)
        return None
    return agent if verify_password(password or "", agent.password_hash) else None


async def agent_by_telegram_id(db: Database, telegram_user_id: int) -> Agent | None:
    async with db.session() as session:
        return await session.scalar(select(Agent).where(Agent.telegram_user_id == telegram_user_id,
                                                        Agent.active.is_(True)))


async def set_agent_language(db: Database, agent_id: int, language: str) -> None:
    if language not in LANGUAGES:
        return
    async with db.transaction() as session:
        agent = await session.get(Agent, agent_id)
        if agent is not None:
            agent.language = language


# --- sessions -----------------------------------------------------------------------------------


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    """Console sessions signed with `secret` and lasting `minutes` from sign-in."""

    def __init__(self, db: Database, secret: str, minutes: int) -> None:
        self.db = db
        self._key = hashlib.sha256(b"fatoura-agent-console:" + secret.encode()).digest()
        self.lifetime = timedelta(minutes=minutes)

    def _sign(self, value: str) -> str:
        return hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()[:32]

    async def open(self, agent: Agent, now: datetime | None = None) -> str:
        """A new session; returns the cookie value."""
        now = now or utcnow()
        token = secrets.token_urlsafe(32)
        async with self.db.transaction() as session:
            # Sessions that ended are swept here rather than by a job.
            await session.execute(delete(AgentSession).where(AgentSession.expires_at < now))
            session.add(AgentSession(agent_id=agent.id, token_hash=_digest(token), created_at=now,
                                     expires_at=now + self.lifetime))
        return f"{token}.{self._sign(token)}"

    def _token(self, cookie: str | None) -> str | None:
        token, _, signature = (cookie or "").partition(".")
        if not token or not hmac.compare_digest(signature, self._sign(token)):
            return None
        return token

    async def agent(self, cookie: str | None, now: datetime | None = None) -> Agent | None:
        """The active agent a cookie signs in, or None (unsigned, unknown, expired or disabled)."""
        token = self._token(cookie)
        if token is None:
            return None
        now = now or utcnow()
        async with self.db.session() as session:
            row = await session.scalar(select(AgentSession).where(AgentSession.token_hash == _digest(token)))
            if row is None or row.expires_at <= now:
                return None
            agent = await session.get(Agent, row.agent_id)
        return agent if agent is not None and agent.active else None

    async def close(self, cookie: str | None) -> None:
        token = self._token(cookie)
        if token is not None:
            async with self.db.transaction() as session:
                await session.execute(delete(AgentSession).where(AgentSession.token_hash == _digest(token)))

    def csrf_token(self, cookie: str) -> str:
        return self._sign("csrf:" + (self._token(cookie) or ""))

    def check_csrf(self, cookie: str | None, given: str | None) -> bool:
        token = self._token(cookie)
        return bool(token and given) and hmac.compare_digest(self._sign("csrf:" + token), given)
