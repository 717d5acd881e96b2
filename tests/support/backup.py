"""Helpers for backup tests: seed a database through the platform's own services, read
every table, and make fresh PostgreSQL databases to restore into."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, make_url, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from tests.conftest import POSTGRES_URL
from tests.support.api import TEST_ARGON2
from tests.support.ledger import settle
from tradeguard.access.domain import Role
from tradeguard.backup.keys import load_or_create_backup_keys
from tradeguard.backup.service import DatabaseLocation
from tradeguard.config import Settings
from tradeguard.core.clock import Clock
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import async_url, create_engine
from tradeguard.identity.container import IdentityServices, start_identity
from tradeguard.ledger.domain import LedgerEvent, Party, PersonalData
from tradeguard.ledger.tree.note import NoteSigner
from tradeguard.notify.service import BODY_PURPOSE, RECIPIENT_PURPOSE, seal_context


@dataclass
class Seeded:
    """What was written in clear through the services (and must never appear in a backup)."""

    identity: IdentityServices
    cleartext: list[str] = field(default_factory=list)
    outbox: dict[str, tuple[str, str]] = field(default_factory=dict)


async def start(settings: Settings, sessions: Any, clock: Clock) -> IdentityServices:
    return await start_identity(
        settings, clock=clock, ids=IdGenerator(clock), sessions=sessions, argon2=TEST_ARGON2
    )


async def write_pair(identity: IdentityServices, n: int) -> str:
    """One unit of work: an outbox message (encrypted columns) and a ledger event about it."""
    async with identity.unit_of_work() as session:
        message = await identity.deps.notifier.enqueue_sms(
            session, to=f"+1415777{n:04d}", template="auth.sms_otp", body=f"pair {n} ssn 9{n:08d}"
        )
        await identity.deps.ledger.append(
            session,
            LedgerEvent(type="test:backup:pair", data={"n": n, "message": message}),
        )
    return message


async def seed(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    clock: Clock,
    *,
    users: int = 3,
    messages: int = 20,
) -> Seeded:
    identity = await start(settings, sessions, clock)
    seeded = Seeded(identity)
    for n in range(users):
        username, email = f"backupuser{n}", f"backup.person{n}@example.org"
        async with identity.unit_of_work() as session:
            await identity.accounts.create_user(
                session,
                username=username,
                email=email,
                password=f"Tr0ub4dor&3 horse staple {n} battery",
                role=Role.TRADER,
            )
            await identity.deps.ledger.append(
                session,
                LedgerEvent(
                    type="identity:login:succeeded",
                    actor=Party("user", f"0190c5a0-0000-7000-8000-{n:012d}"),
                    personal=PersonalData.of(
                        Party("user", f"0190c5a0-0000-7000-8000-{n:012d}"),
                        email=f"sealed.person{n}@example.net",
                    ),
                ),
            )
        seeded.cleartext += [username, email, f"sealed.person{n}@example.net"]
    for n in range(messages):
        await write_pair(identity, n)
        seeded.cleartext += [f"+1415777{n:04d}", f"pair {n} ssn 9{n:08d}", f"9{n:08d}"]
    await settle(engine)
    seeded.outbox = await read_outbox(engine, identity)
    return seeded


async def read_outbox(
    engine: AsyncEngine, identity: IdentityServices
) -> dict[str, tuple[str, str]]:
    keyring = identity.deps.keyring
    async with engine.connect() as conn:
        rows = (
            await conn.execute(text("SELECT id, recipient_enc, body_enc FROM notify_outbox"))
        ).all()
    return {
        row.id: (
            keyring.decrypt(
                bytes(row.recipient_enc), purpose=RECIPIENT_PURPOSE, context=seal_context(row.id)
            ).decode(),
            keyring.decrypt(
                bytes(row.body_enc), purpose=BODY_PURPOSE, context=seal_context(row.id)
            ).decode(),
        )
        for row in rows
    }


def _plain(value: Any) -> Any:
    return bytes(value) if isinstance(value, memoryview | bytearray) else value


async def table_rows(engine: AsyncEngine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, each table's rows in a fixed order."""

    def read(conn: Connection) -> dict[str, list[tuple[Any, ...]]]:
        tables = {}
        for name in inspect(conn).get_table_names():
            rows = conn.execute(text(f'SELECT * FROM "{name}"')).all()  # noqa: S608 - reflected names
            tables[name] = sorted((tuple(_plain(v) for v in row) for row in rows), key=repr)
        return tables

    async with engine.connect() as conn:
        return await conn.run_sync(read)


async def location_of(engine: AsyncEngine) -> DatabaseLocation:
    """The database (SQLite file, or PostgreSQL schema of the test database) behind `engine`."""
    if engine.dialect.name == "sqlite":
        return DatabaseLocation(f"sqlite:///{engine.url.database}")
    async with engine.connect() as conn:
        schema = await conn.scalar(text("SELECT current_schema()"))
    return DatabaseLocation(POSTGRES_URL, pg_schema=str(schema))


@asynccontextmanager
async def fresh_postgres_database() -> AsyncIterator[str]:
    """A new, empty PostgreSQL database (dropped afterwards); its URL."""
    base = make_url(POSTGRES_URL)
    name = f"{base.database}_r{secrets.token_hex(4)}"
    admin = create_async_engine(async_url(POSTGRES_URL), isolation_level="AUTOCOMMIT", pool_size=1)
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield base.set(database=name).render_as_string(hide_password=False)
        finally:
            async with admin.connect() as conn:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


@asynccontextmanager
async def restore_target(
    backend: str, tmp_path: Path, pg_schema: str | None = None
) -> AsyncIterator[tuple[DatabaseLocation, AsyncEngine]]:
    """Where to restore to, and an engine that reads it afterwards."""
    if backend == "sqlite":
        path = tmp_path / f"restored-{secrets.token_hex(3)}.db"
        location = DatabaseLocation(f"sqlite:///{path}")
        engine = create_engine(location.url)
        try:
            yield location, engine
        finally:
            await engine.dispose()
        return
    async with fresh_postgres_database() as url:
        engine = create_engine(url, pg_schema=pg_schema)
        try:
            yield DatabaseLocation(url), engine
        finally:
            await engine.dispose()


def backup_signer(settings: Settings) -> NoteSigner:
    return load_or_create_backup_keys(settings.backup_keys_dir).active
