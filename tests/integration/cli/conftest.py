"""Fixtures shared by the CLI tests."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import make_url, text

from tests.conftest import POSTGRES_URL, require_service
from tradeguard.db.engine import create_engine


@pytest.fixture
def database_url(db_backend: str) -> Iterator[str | None]:
    """None for the data directory's SQLite file; else a fresh PostgreSQL database of its
    own (the CLI takes a URL, not a schema), dropped afterwards."""
    if db_backend == "sqlite":
        yield None
        return
    name = f"{make_url(POSTGRES_URL).database}_cli_{secrets.token_hex(4)}"
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)

    async def admin(statement: str) -> None:
        engine = create_engine(POSTGRES_URL, pool_size=1)
        try:
            async with engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text(statement))
        finally:
            await engine.dispose()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except OSError as exc:
        require_service("PostgreSQL", exc)
    try:
        yield url
    finally:
        asyncio.run(admin(f'DROP DATABASE "{name}" WITH (FORCE)'))
