"""A PostgreSQL database of a test module's own, for code that takes a URL, not a schema (the
CLI, a server process) or needs a database to itself (the sequencer's horizon is per
database)."""

from __future__ import annotations

import asyncio

from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import POSTGRES_URL, require_service
from tradeguard.db.engine import async_url


def emptied_postgres_database(suffix: str) -> str:
    """The URL of the database `<test database>_<suffix>`, created once and kept between
    tests and runs, its public schema emptied on each call: dropping a database forces a
    checkpoint, which takes seconds on a busy server. Fails the test (skips outside CI)
    when PostgreSQL cannot be reached."""
    base = make_url(POSTGRES_URL)
    name = f"{base.database}_{suffix}"
    url = base.set(database=name).render_as_string(hide_password=False)

    async def prepare() -> None:
        admin = create_async_engine(async_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
        try:
            async with admin.connect() as conn:
                found = await conn.scalar(
                    text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
                )
                if not found:
                    await conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            await admin.dispose()
        own = create_async_engine(async_url(url), isolation_level="AUTOCOMMIT")
        try:
            async with own.connect() as conn:
                await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
                await conn.execute(text("CREATE SCHEMA public"))
        finally:
            await own.dispose()

    try:
        asyncio.run(prepare())
    except OSError as exc:  # connection refused
        require_service("PostgreSQL", exc)
    return url
