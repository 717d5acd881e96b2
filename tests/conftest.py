"""Shared fixtures: clock, settings, and database engines on SQLite AND PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, make_url, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from tests.support.migrated import (
    copy_migrated_sqlite,
    drop_free_schemas,
    give_back_schema,
    take_migrated_schema,
)
from tests.support.webauthn_authenticator import default_metadata_document
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.db.engine import async_url, create_engine, session_factory

# Tests that build their own Settings (and the processes they start) open accounts without
# the KYC onboarding gate, as the shared `settings` fixture does; gate tests set it on.
os.environ.setdefault("TRADEGUARD_KYC_REQUIRED", "false")

BASE_POSTGRES_URL = os.environ.get(
    "TRADEGUARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
# pytest-xdist names its workers gw0, gw1, ...: each gets a database of its own (created on
# first use), because the ledger sequencer's horizon is per database: one worker's open
# transactions must never hold back another worker's sequencer.
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")


def _worker_url(base: str) -> str:
    if not XDIST_WORKER:
        return base
    url = make_url(base)
    return url.set(database=f"{url.database}_{XDIST_WORKER}").render_as_string(hide_password=False)


POSTGRES_URL = _worker_url(BASE_POSTGRES_URL)
_database_ready = False


async def _ensure_worker_database() -> None:
    global _database_ready  # noqa: PLW0603 - once per worker process
    if _database_ready or POSTGRES_URL == BASE_POSTGRES_URL:
        return
    name = make_url(POSTGRES_URL).database
    admin = create_async_engine(
        async_url(BASE_POSTGRES_URL), isolation_level="AUTOCOMMIT", pool_size=1
    )
    try:
        async with admin.connect() as conn:
            found = await conn.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            )
            if not found:
                await conn.execute(text(f'CREATE DATABASE "{name}"'))
            # A worker's database need not survive a server crash: commits do not wait for
            # the WAL flush (a killed client still finds every commit; the server stays up).
            await conn.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
    finally:
        await admin.dispose()
    _database_ready = True


REDIS_URL = os.environ.get("TRADEGUARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
IN_CI = os.environ.get("CI", "").lower() == "true"


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Drop the PostgreSQL schemas kept for a next test."""
    with contextlib.suppress(OSError):
        asyncio.run(drop_free_schemas())


def pytest_sessionstart(session: pytest.Session) -> None:
    """Create this xdist worker's PostgreSQL database before any test uses its URL."""
    if XDIST_WORKER:
        with contextlib.suppress(OSError):  # unreachable: the tests that need it say so
            asyncio.run(_ensure_worker_database())


HARD_TIMEOUT_SECONDS = int(os.environ.get("TRADEGUARD_TEST_HARD_TIMEOUT", "300"))


class HungTestError(BaseException):
    """Raised in a test that runs past HARD_TIMEOUT_SECONDS. A BaseException, so that a
    worker loop's `except Exception` (which retries) cannot swallow it."""


@pytest.fixture(autouse=True)
def _hard_timeout() -> Iterator[None]:
    """A hung test fails alone (with its traceback) instead of hanging the whole run: the
    slowest test takes under a minute; nothing legitimate comes near this."""

    def expired(_signum: int, _frame: object) -> None:
        raise HungTestError(f"test ran past {HARD_TIMEOUT_SECONDS} s (hung?)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(HARD_TIMEOUT_SECONDS)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


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
    # Staff authenticators are attested against a catalogue that trusts the test vendor whose
    # root certifies every SoftwareAuthenticator (IAC-3).
    metadata = tmp_path / "staff-authenticators.json"
    metadata.write_text(default_metadata_document())
    # Accounts open active without an approved account application (KYC-2): the onboarding
    # gate has its own tests (tests/integration/kyc/onboarding), which turn it on.
    return Settings(  # type: ignore[call-arg]
        data_dir=tmp_path / "var",
        webauthn_staff_metadata_file=metadata,
        kyc_required=False,
        _env_file=None,
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def _postgres_engine() -> tuple[AsyncEngine, str]:
    schema = "t_" + secrets.token_hex(6)
    try:
        await _ensure_worker_database()
    except OSError as exc:  # connection refused
        require_service("PostgreSQL", exc)
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


def _no_flush_per_commit(dbapi_connection: Any, _record: object) -> None:
    """Tests need no durability against power loss: commits skip the disk flush (WAL mode
    with synchronous=NORMAL still survives a killed process). The production setting (FULL)
    is tested on engines of its own (tests/integration/db/test_sqlite_inloop.py)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


async def _migrated_postgres_engine() -> tuple[AsyncEngine, str]:
    """A PostgreSQL schema migrated to head with nothing else in it (a copy of a template, or
    one an earlier test of this process gave back and that was reset: see
    tests/support/migrated.py); give it back with `give_back_schema`."""
    try:
        await _ensure_worker_database()
        schema = await take_migrated_schema(POSTGRES_URL)
    except OSError as exc:  # connection refused
        require_service("PostgreSQL", exc)
    return create_engine(POSTGRES_URL, pg_schema=schema), schema


@pytest.fixture
async def engine(db_backend: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A migrated database: a fresh SQLite file, or a fresh PostgreSQL schema."""
    if db_backend == "sqlite":
        path = tmp_path / "test.db"
        await copy_migrated_sqlite(path)
        eng = create_engine(f"sqlite:///{path}")
        event.listen(eng.sync_engine, "connect", _no_flush_per_commit)
        yield eng
        await eng.dispose()
        return
    eng, schema = await _migrated_postgres_engine()
    try:
        yield eng
    finally:
        await eng.dispose()
        await give_back_schema(POSTGRES_URL, schema)


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(engine)


@pytest.fixture
async def pg_engine() -> AsyncIterator[AsyncEngine]:
    """A migrated PostgreSQL schema, for behaviour only PostgreSQL has."""
    eng, schema = await _migrated_postgres_engine()
    try:
        yield eng
    finally:
        await eng.dispose()
        await give_back_schema(POSTGRES_URL, schema)
