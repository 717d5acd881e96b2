"""Migrated databases for tests, made once per test process and copied for each test.

Running every migration for each test cost about 0.3 CPU-seconds (Alembic's Python) on
SQLite and on PostgreSQL alike, for most of the suite's tests: a third of the suite's time on
the 2-core CI machine. Each test still gets a database of its own, now copied from a
template migrated once per process:

- SQLite: the template file (checkpointed, no WAL beside it) is copied.
- PostgreSQL: a template schema is migrated, dumped with `pg_dump` (schema and rows, with
  its name in every qualified reference), and dropped; each test's schema is that script
  with the template's name replaced by the test's, run in one round trip.

Creating and dropping a PostgreSQL schema still cost about 0.35 s of the server's CPU per
test (some 150 tables, indexes and triggers), so a test process keeps the schemas its tests
are done with (`take_migrated_schema`, `give_back_schema`): one given back whose structure is
still what it was when copied (catalogue fingerprint: tables, columns, indexes,
constraints, triggers and their state, functions, policies, grants) is emptied, its template rows and sequences
restored, in one transaction, and handed to the next test; any other is dropped. A schema
serves at most `MAX_USES` tests, so the dead rows of its deletes never pile up.

A reused table's physical order is not its insertion order (new rows fill the space of the
deleted ones once vacuumed): a test that reads "the last row" must order by a key that says
so (under a frozen clock, times tie; one app's UUIDv7 ids only increase).

`tests/integration/db/test_migrated_templates.py` proves a copy equals a migrated database
(the same `pg_dump` up to the schema's name; the same SQLite schema and rows), and that a
schema given back and taken again equals a fresh copy. Tests of the migrations themselves
still run them (`tradeguard.db.migrate.upgrade`).
"""

from __future__ import annotations

import asyncio
import atexit
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Final

import asyncpg
from sqlalchemy import make_url, text

from tradeguard.db.engine import create_engine
from tradeguard.db.migrate import upgrade

_sqlite_template: dict[str, Path] = {}
_postgres_script: dict[str, tuple[str, str]] = {}

# Tests a pooled PostgreSQL schema serves before it is dropped.
MAX_USES: Final = 25
_free_schemas: dict[str, list[str]] = {}
_uses: dict[str, int] = {}
_fingerprints: dict[str, str] = {}

# The structure of a schema, without its name: what a test must not have changed for the
# schema to serve the next one.
_FINGERPRINT: Final = """
SELECT md5(string_agg(item, E'\n' ORDER BY item)) FROM (
    SELECT 'rel ' || c.relname || ' ' || c.relkind::text || ' ' || c.relrowsecurity::text
           || ' ' || coalesce(c.relacl::text, '') AS item
      FROM pg_class c WHERE c.relnamespace = $1::text::regnamespace
    UNION ALL
    SELECT 'col ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
           || ' ' || a.attnotnull::text || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
      FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
      LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE c.relnamespace = $1::text::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    SELECT 'con ' || c.relname || '.' || k.conname || ' ' || k.contype::text
      FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
     WHERE c.relnamespace = $1::text::regnamespace
    UNION ALL
    SELECT 'trg ' || c.relname || '.' || t.tgname || ' ' || t.tgenabled::text || ' ' || t.tgtype::text
      FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
     WHERE c.relnamespace = $1::text::regnamespace
    UNION ALL
    SELECT 'fn ' || p.proname || ' ' || md5(replace(p.prosrc, $1::text, ''))
      FROM pg_proc p WHERE p.pronamespace = $1::text::regnamespace
    UNION ALL
    SELECT 'pol ' || c.relname || '.' || l.polname
      FROM pg_policy l JOIN pg_class c ON c.oid = l.polrelid
     WHERE c.relnamespace = $1::text::regnamespace
) AS structure
"""


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


def _reset_script(url: str, schema: str, tables: list[str]) -> str:
    """Empty every table of `schema` and put back the template's rows and sequence values
    (the dump's INSERT and setval statements), triggers off (append-only guards, foreign
    keys): one transaction."""
    script, name = _postgres_script[url]
    restore = [
        line.replace(name, schema)
        for line in script.splitlines()
        if line.startswith(("INSERT INTO ", "SELECT pg_catalog.setval("))
    ]
    if any(not line.endswith(";") for line in restore):
        raise RuntimeError("a template row spans lines: reset by dropping instead")
    deletes = [f'DELETE FROM "{schema}"."{table}";' for table in tables]  # noqa: S608 - names from the catalogue
    return "\n".join(
        [
            "BEGIN;",
            "SET LOCAL session_replication_role = replica;",
            "SET LOCAL lock_timeout = '5s';",
            *deletes,
            *restore,
            "COMMIT;",
        ]
    )


async def take_migrated_schema(url: str, *, fresh: bool = False) -> str:
    """A migrated schema for one test: one a previous test of this process gave back, or
    (always with `fresh`) a new copy of the template."""
    free = _free_schemas.setdefault(url, [])
    if free and not fresh:
        return free.pop()
    schema = "t_" + secrets.token_hex(6)
    await create_migrated_schema(url, schema)
    _uses[schema] = 0
    if url in _postgres_script:
        # Its own: column defaults name the schema, internal trigger names hold object ids.
        connection = await asyncpg.connect(_libpq_url(url))
        try:
            _fingerprints[schema] = await connection.fetchval(_FINGERPRINT, schema)
        finally:
            await connection.close()
    return schema


async def give_back_schema(url: str, schema: str) -> None:
    """Reset `schema` for the next test when it still has the template's structure and has
    not served `MAX_USES` tests; else drop it."""
    uses = _uses.pop(schema, MAX_USES) + 1
    connection = await asyncpg.connect(_libpq_url(url))
    try:
        if uses < MAX_USES and schema in _fingerprints:
            try:
                if await connection.fetchval(_FINGERPRINT, schema) == _fingerprints[schema]:
                    tables = [
                        row["tablename"]
                        for row in await connection.fetch(
                            "SELECT tablename FROM pg_tables WHERE schemaname = $1", schema
                        )
                    ]
                    await connection.execute(_reset_script(url, schema, tables))
                    _uses[schema] = uses
                    _free_schemas.setdefault(url, []).append(schema)
                    return
            except (asyncpg.PostgresError, RuntimeError):
                pass  # held by a connection left behind, or otherwise not resettable: dropped
        _fingerprints.pop(schema, None)
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()


async def drop_free_schemas() -> None:
    """Drop the schemas waiting for a next test (at the end of the process)."""
    for url, free in _free_schemas.items():
        if not free:
            continue
        connection = await asyncpg.connect(_libpq_url(url))
        try:
            for schema in free:
                await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await connection.close()
        free.clear()
