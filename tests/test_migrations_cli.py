"""The schema comes from the Alembic migrations, the same on SQLite and PostgreSQL; the CLI drives
them and loads the sandbox."""
from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import inspect

from core.db import Database, downgrade, upgrade
from core.models import Base

ROOT = Path(__file__).resolve().parent.parent


async def _tables(db: Database) -> set[str]:
    async with db.engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


async def test_migrations_create_every_model_table_and_go_back(db):
    """Every table of the models exists after `upgrade head`; `downgrade base` removes them all."""
    tables = await _tables(db)
    assert set(Base.metadata.tables) <= tables
    url = db.url
    await db.dispose()
    with ThreadPoolExecutor(1) as pool:
        pool.submit(downgrade, url, "base").result()
        probe = Database(url)
        left = await _tables(probe)
        await probe.dispose()
        pool.submit(upgrade, url).result()
    assert not (left & set(Base.metadata.tables))


def _fatoura(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fatoura", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def test_cli_lists_its_commands():
    result = _fatoura("--help", cwd=ROOT)
    assert result.returncode == 0
    for command in ("demo", "serve", "worker", "db", "sandbox", "telegram"):
        assert command in result.stdout


def test_cli_migrates_and_seeds_a_fresh_sqlite_file(tmp_path):
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/cli.db"}
    assert _fatoura("db", "upgrade", cwd=tmp_path, env=env).returncode == 0
    first = _fatoura("sandbox", "seed", "--accounts", "300", cwd=tmp_path, env=env)
    assert first.returncode == 0 and "300 generated" in first.stdout
    again = _fatoura("sandbox", "seed", "--accounts", "300", cwd=tmp_path, env=env)
    assert "0 sample and 0 generated" in again.stdout  # idempotent
    bad = _fatoura("sandbox", "seed", "--accounts", "-4", cwd=tmp_path, env=env)
    assert bad.returncode == 2 and "--accounts" in bad.stderr
