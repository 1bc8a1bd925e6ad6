"""Shared fixtures: every database test runs on SQLite and on PostgreSQL, every shared-state
test on memory and on Redis.

PostgreSQL and Redis are used when FATOURA_TEST_DATABASE_URL / FATOURA_TEST_REDIS_URL are set;
without them those variants are skipped, except under CI=true where a missing service fails.
"""
from __future__ import annotations

import asyncio
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import text

from core.db import Database, normalize_url, upgrade

PG_URL = os.environ.get("FATOURA_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("FATOURA_TEST_REDIS_URL")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _unavailable(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} is required under CI=true", pytrace=False)
    pytest.skip(f"{what} not configured")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """One migrated SQLite file, copied for each test: migrating per test would be slow."""
    path = tmp_path_factory.mktemp("db") / "template.db"
    with ThreadPoolExecutor(1) as pool:
        pool.submit(upgrade, f"sqlite+aiosqlite:///{path}").result()
    return path


@pytest.fixture(scope="session")
def pg_migrated() -> str | None:
    if not PG_URL:
        return None
    url = normalize_url(PG_URL)

    async def reset() -> None:
        db = Database(url)
        async with db.engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
        await db.dispose()

    def migrate() -> None:
        asyncio.run(reset())
        upgrade(url)

    # Session fixtures may be first requested from inside a running event loop: use a thread.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(migrate).result()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request, tmp_path, sqlite_template):
    """An empty, migrated database: a fresh SQLite file or the emptied PostgreSQL test database."""
    if request.param == "sqlite":
        path = tmp_path / "fatoura.db"
        shutil.copy(sqlite_template, path)
        database = Database(f"sqlite+aiosqlite:///{path}")
    else:
        url = request.getfixturevalue("pg_migrated")
        if url is None:
            _unavailable("PostgreSQL (FATOURA_TEST_DATABASE_URL)")
        database = Database(url, pool_size=5)
        async with database.engine.begin() as conn:
            tables = (await conn.execute(text(
                "SELECT tablename FROM pg_tables WHERE schemaname='public' AND tablename <> 'alembic_version'"
            ))).scalars().all()
            if tables:
                await conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    yield database
    await database.dispose()


@pytest.fixture
async def seeded_db(db):
    """The database with the seeds' sample accounts loaded."""
    from core.billers.sandbox.store import seed_samples

    await seed_samples(db)
    return db


@pytest.fixture
def redis_url():
    if not REDIS_URL:
        _unavailable("Redis (FATOURA_TEST_REDIS_URL)")
    return REDIS_URL



@pytest.fixture(params=["memory", "redis"])
async def state(request):
    """A shared-state store: in-process memory, or Redis under a namespace unique to the test
    (so tests never see each other's keys); the namespace is emptied afterwards."""
    import uuid

    from core.state import MemoryState, RedisState

    if request.param == "memory":
        store = MemoryState()
    else:
        store = RedisState(request.getfixturevalue("redis_url"),
                           namespace=f"fatoura:test:{uuid.uuid4().hex[:12]}:")
    yield store
    if isinstance(store, RedisState):
        leftovers = [k async for k in store.redis.scan_iter(match=store.namespace + "*", count=1000)]
        if leftovers:
            await store.redis.delete(*leftovers)
    await store.close()
