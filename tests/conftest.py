"""Shared fixtures: clock, settings, and database engines on SQLite AND PostgreSQL."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.db.engine import create_engine, session_factory
from tradeguard.db.migrate import upgrade

POSTGRES_URL = os.environ.get(
    "TRADEGUARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TRADEGUARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
IN_CI = os.environ.get("CI", "").lower() == "true"


def require_service(name: str, error: BaseException) -> None:
    """In CI a missing service is a failure; on a laptop it is a skip with a reason."""
    if IN_CI:
        pytest.fail(f"{name} is required in CI but unreachable: {error}")
    pytest.skip(f"{name} unreachable: {error}")


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "var", _env_file=None)  # type: ignore[call-arg]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def _postgres_engine() -> tuple[AsyncEngine, str]:
    schema = "t_" + secrets.token_hex(6)
    admin = create_engine(POSTGRES_URL, pool_size=1)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OSError as exc:  # connection refused
        await admin.dispose()
        require_service("PostgreSQL", exc)
    await admin.dispose()
    return create_engine(POSTGRES_URL, pg_schema=schema), schema


async def _drop_schema(schema: str) -> None:
    admin = create_engine(POSTGRES_URL, pool_size=1)
    async with admin.begin() as conn:
        await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    await admin.dispose()


@pytest.fixture
async def engine(db_backend: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A migrated database: a fresh SQLite file, or a fresh PostgreSQL schema."""
    if db_backend == "sqlite":
        eng = create_engine(f"sqlite:///{tmp_path / 'test.db'}")
        await upgrade(eng)
        yield eng
        await eng.dispose()
        return
    eng, schema = await _postgres_engine()
    try:
        await upgrade(eng)
        yield eng
    finally:
        await eng.dispose()
        await _drop_schema(schema)


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(engine)


@pytest.fixture
async def pg_engine() -> AsyncIterator[AsyncEngine]:
    """A migrated PostgreSQL schema, for behaviour only PostgreSQL has."""
    eng, schema = await _postgres_engine()
    try:
        await upgrade(eng)
        yield eng
    finally:
        await eng.dispose()
        await _drop_schema(schema)
