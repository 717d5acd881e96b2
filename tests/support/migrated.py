"""Migrated databases for tests, made once per test process and copied for each test.

Running every migration for each test cost about 0.3 CPU-seconds (Alembic's Python) on
SQLite and on PostgreSQL alike, for most of the suite's tests: a third of the suite's time on
the 2-core CI machine. Each test still gets a database of its own, now copied from a
template migrated once per process:

- SQLite: the template file (checkpointed, no WAL beside it) is copied.
- PostgreSQL: a template schema is migrated, dumped with `pg_dump` (schema and rows, with
  its name in every qualified reference), and dropped; each test's schema is that script
  with the template's name replaced by the test's, run in one round trip.

`tests/integration/db/test_migrated_templates.py` proves a copy equals a migrated database
(the same `pg_dump` up to the schema's name; the same SQLite schema and rows). Tests of the
migrations themselves still run them (`tradeguard.db.migrate.upgrade`).
"""

from __future__ import annotations

import asyncio
import atexit
import secrets
import shutil
import tempfile
from pathlib import Path

import asyncpg
from sqlalchemy import make_url, text

from tradeguard.db.engine import create_engine
from tradeguard.db.migrate import upgrade

_sqlite_template: dict[str, Path] = {}
_postgres_script: dict[str, tuple[str, str]] = {}


def _libpq_url(url: str) -> str:
    """A SQLAlchemy-style PostgreSQL URL as libpq and asyncpg take it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def copy_migrated_sqlite(path: Path) -> None:
    """Put a migrated SQLite database at `path` (which must not exist yet)."""
    if "path" not in _sqlite_template:
        template = Path(tempfile.mkdtemp(prefix="tradeguard-template-")) / "migrated.db"
        atexit.register(shutil.rmtree, template.parent, True)
        engine = create_engine(f"sqlite:///{template}")
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()
        _sqlite_template["path"] = template
    _copy_file(_sqlite_template["path"], path)


def _copy_file(template: Path, path: Path) -> None:
    # Closing the last connection checkpointed the WAL: the file alone is the database.
    assert not Path(f"{template}-wal").exists() or not Path(f"{template}-wal").stat().st_size
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, path)


async def _dump_migrated_schema(url: str) -> tuple[str, str]:
    """Migrate a template schema, dump it, drop it: (script, the template's name)."""
    name = "tg_template_" + secrets.token_hex(6)
    admin = create_engine(url, pool_size=1)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{name}"'))
        migrated = create_engine(url, pg_schema=name)
        try:
            await upgrade(migrated)
        finally:
            await migrated.dispose()
        dump = await asyncio.create_subprocess_exec(
            "pg_dump",
            f"--dbname={_libpq_url(url)}",
            f"--schema={name}",
            "--no-owner",
            "--no-privileges",
            "--column-inserts",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await dump.communicate()
        if dump.returncode != 0:
            raise RuntimeError(f"pg_dump of the template schema failed: {err.decode()}")
    finally:
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        await admin.dispose()
    # psql meta-commands (`\restrict` in current releases) are not SQL.
    lines = [line for line in out.decode().splitlines() if not line.startswith("\\")]
    return "\n".join(lines), name


async def create_migrated_schema(url: str, schema: str) -> None:
    """Create `schema` in the database at `url`, migrated to head, with the template's rows."""
    if shutil.which("pg_dump") is None:  # no client tools: migrate it (the same result, slower)
        admin = create_engine(url, pool_size=1)
        try:
            async with admin.begin() as conn:
                await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        finally:
            await admin.dispose()
        engine = create_engine(url, pg_schema=schema)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()
        return
    if url not in _postgres_script:
        _postgres_script[url] = await _dump_migrated_schema(url)
    script, name = _postgres_script[url]
    connection = await asyncpg.connect(_libpq_url(url))
    try:
        await connection.execute(script.replace(name, schema))
    finally:
        await connection.close()
