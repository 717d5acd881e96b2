"""The tests' migrated databases are copies of a template (tests/support/migrated.py): a copy
must be exactly what running every migration gives, or every test would prove something
about a database nobody deploys."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import POSTGRES_URL, _drop_schema, _postgres_engine
from tests.support.migrated import (
    _libpq_url,
    copy_migrated_sqlite,
    create_migrated_schema,
    give_back_schema,
    take_migrated_schema,
)
from tradeguard.core.clock import FrozenClock
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.db.migrate import upgrade
from tradeguard.ledger.domain import LedgerEvent, Party
from tradeguard.ledger.service import Ledger


def sqlite_contents(
    path: Path,
) -> tuple[list[tuple[str, str, str]], dict[str, list[tuple[object, ...]]]]:
    connection = sqlite3.connect(path)
    try:
        objects = connection.execute(
            "SELECT type, name, sql FROM sqlite_master ORDER BY type, name"
        ).fetchall()
        rows = {
            # Table names come from sqlite_master, not from input.
            name: sorted(connection.execute(f'SELECT * FROM "{name}"').fetchall(), key=repr)  # noqa: S608
            for kind, name, _ in objects
            if kind == "table"
        }
        return objects, rows
    finally:
        connection.close()


async def test_a_sqlite_copy_is_what_the_migrations_give(tmp_path: Path) -> None:
    migrated = tmp_path / "migrated.db"
    engine = create_engine(f"sqlite:///{migrated}")
    await upgrade(engine)
    await engine.dispose()
    copied = tmp_path / "copied.db"
    await copy_migrated_sqlite(copied)

    objects, rows = sqlite_contents(copied)
    assert (objects, rows) == sqlite_contents(migrated)
    assert any(name == "alembic_version" for _, name, _ in objects)
    assert rows["alembic_version"]


async def pg_dump(schema: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "pg_dump",
        f"--dbname={_libpq_url(POSTGRES_URL)}",
        f"--schema={schema}",
        "--no-owner",
        "--no-privileges",
        "--column-inserts",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    assert process.returncode == 0
    lines = [line for line in out.decode().splitlines() if not line.startswith("\\")]
    return "\n".join(lines).replace(schema, "SCHEMA")


@pytest.mark.postgres
async def test_a_postgres_copy_is_what_the_migrations_give() -> None:
    if shutil.which("pg_dump") is None:
        pytest.fail("pg_dump (PostgreSQL client tools) is needed")
    engine, migrated = await _postgres_engine()
    copied = "t_" + secrets.token_hex(6)
    try:
        await upgrade(engine)
        await create_migrated_schema(POSTGRES_URL, copied)
        expected = await pg_dump(migrated)
        assert await pg_dump(copied) == expected
        assert "CREATE TRIGGER" in expected
        assert "INSERT INTO SCHEMA.alembic_version" in expected
        async with engine.connect() as conn:
            tables = await conn.scalar(
                text("SELECT count(*) FROM information_schema.tables WHERE table_schema = :s"),
                {"s": copied},
            )
        assert tables is not None
        assert tables > 40
    finally:
        await engine.dispose()
        await _drop_schema(migrated)
        await _drop_schema(copied)


async def _write_something(schema: str) -> None:
    """Rows in append-only and seeded tables, and a sequence moved on."""
    engine = create_engine(POSTGRES_URL, pg_schema=schema)
    clock = FrozenClock()
    ledger = Ledger(clock=clock, ids=IdGenerator(clock))
    try:
        async with unit_of_work(session_factory(engine)) as session:
            for n in range(3):
                await ledger.append(
                    session,
                    LedgerEvent(
                        type="test:rows:written", actor=Party("user", f"u{n}"), data={"n": n}
                    ),
                )
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM trading_control"))  # a template row gone
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_a_schema_given_back_is_handed_out_again_equal_to_a_fresh_copy() -> None:
    if shutil.which("pg_dump") is None:
        pytest.fail("pg_dump (PostgreSQL client tools) is needed")
    schema = await take_migrated_schema(POSTGRES_URL, fresh=True)  # not near its last use
    fresh = await pg_dump(schema)
    await _write_something(schema)
    assert await pg_dump(schema) != fresh
    await give_back_schema(POSTGRES_URL, schema)
    again = await take_migrated_schema(POSTGRES_URL)
    try:
        assert again == schema  # reused, not recreated
        assert await pg_dump(again) == fresh
    finally:
        await give_back_schema(POSTGRES_URL, again)


@pytest.mark.postgres
async def test_a_schema_whose_structure_a_test_changed_is_dropped_not_reused() -> None:
    schema = await take_migrated_schema(POSTGRES_URL)
    engine = create_engine(POSTGRES_URL, pg_schema=schema)
    try:
        async with engine.begin() as conn:
            # What a tampering test does: the ledger's append-only guard switched off.
            await conn.execute(text("ALTER TABLE audit_event DISABLE TRIGGER USER"))
    finally:
        await engine.dispose()
    await give_back_schema(POSTGRES_URL, schema)
    again = await take_migrated_schema(POSTGRES_URL)
    try:
        assert again != schema
        catalogue = create_engine(POSTGRES_URL)
        try:
            async with catalogue.connect() as conn:
                found = await conn.scalar(
                    text("SELECT count(*) FROM pg_namespace WHERE nspname = :s"), {"s": schema}
                )
        finally:
            await catalogue.dispose()
        assert found == 0
    finally:
        await give_back_schema(POSTGRES_URL, again)
