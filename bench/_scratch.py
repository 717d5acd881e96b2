"""A scratch database for a benchmark: a SQLite file in the run's directory, or a schema of
its own on PostgreSQL, dropped afterwards."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import text

from tradeguard.db.engine import create_engine


@asynccontextmanager
async def scratch_engine(data_dir: Path, postgres: str | None) -> AsyncIterator[Any]:
    if postgres is None:
        engine = create_engine(f"sqlite:///{data_dir / 'tradeguard.db'}")
        try:
            yield engine
        finally:
            await engine.dispose()
        return
    schema = "bench_" + secrets.token_hex(4)
    admin = create_engine(postgres, pool_size=1)
    async with admin.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = create_engine(postgres, pg_schema=schema)
    try:
        yield engine
    finally:
        await engine.dispose()
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()
