"""PostgreSQL backups with `pg_dump --format=custom` and `pg_restore`, streamed through pipes.

pg_dump runs in one repeatable-read snapshot, so the dump is consistent while the
application writes. Its own compression is switched off (`--compress=0`): the stream is
compressed once, with zstd, before it is encrypted. The connection's password travels in the
child's environment (PGPASSWORD), never on a command line that `ps` shows.

pg_dump refuses a server newer than itself; that is checked first and said plainly, as is a
restore into a server older than the one dumped from (its SQL may not load there) or with a
pg_restore older than the pg_dump that wrote the archive.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any, Final

from sqlalchemy import make_url, text

from tradeguard.backup.errors import BackupRefused
from tradeguard.db.engine import create_engine

_VERSION = re.compile(r"\(PostgreSQL\) (\d+)(?:\.(\d+))?")
# Schemas every database has; anything else in a restore target means it is not empty.
SYSTEM_SCHEMAS: Final = ("pg_catalog", "information_schema", "pg_toast")
MAX_ERROR_CHARS: Final = 300


@dataclass(frozen=True, slots=True)
class ToolVersion:
    major: int
    text: str


def tool_version(tool: str) -> ToolVersion:
    path = shutil.which(tool)
    if path is None:
        raise BackupRefused(f"{tool} is not installed (PostgreSQL client tools are needed)")
    output = subprocess.run(  # noqa: S603 - a fixed tool found on PATH, no shell
        [path, "--version"], capture_output=True, text=True, check=False, timeout=30
    ).stdout
    found = _VERSION.search(output)
    if found is None:
        raise BackupRefused(f"cannot tell the version of {tool} ({output.strip()[:80]!r})")
    minor = f".{found.group(2)}" if found.group(2) else ""
    return ToolVersion(int(found.group(1)), f"{found.group(1)}{minor}")


def client_environment(url: str) -> dict[str, str]:
    """libpq settings for the child process: the connection, with the password out of argv."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    values = {
        "PGHOST": parsed.host,
        "PGPORT": str(parsed.port) if parsed.port else None,
        "PGUSER": parsed.username,
        "PGPASSWORD": parsed.password,
        "PGDATABASE": parsed.database,
        "PGSSLMODE": parsed.query.get("sslmode"),
        "PGCONNECT_TIMEOUT": "10",
    }
    env.update({k: str(v) for k, v in values.items() if v})
    return env


@dataclass(frozen=True, slots=True)
class ServerInfo:
    major: int
    version: str
    revision: str | None
    empty: bool


VERSION_TABLES: Final = frozenset({"alembic_version", "vault_alembic_version"})


async def server_info(
    url: str, *, pg_schema: str | None, version_table: str = "alembic_version"
) -> ServerInfo:
    """The server's version, the schema revision (in `version_table`: the platform's chain
    or the card vault's), and whether the target holds nothing."""
    engine = create_engine(url, pool_size=1, pg_schema=pg_schema)
    try:
        async with engine.connect() as conn:
            number = int(await conn.scalar(text("SHOW server_version_num")) or 0)
            version = str(await conn.scalar(text("SHOW server_version")))
            revision = await _revision(conn, pg_schema, version_table)
            empty = await _is_empty(conn, pg_schema)
    finally:
        await engine.dispose()
    return ServerInfo(number // 10_000, version.split(" ", maxsplit=1)[0], revision, empty)


async def _revision(conn: Any, pg_schema: str | None, version_table: str) -> str | None:
    if version_table not in VERSION_TABLES:  # a constant of ours, never input
        raise ValueError(f"unknown version table {version_table!r}")
    found = await conn.scalar(
        text(
            "SELECT count(*) FROM pg_tables WHERE tablename = :table "
            "AND schemaname = coalesce(:schema, current_schema())"
        ),
        {"schema": pg_schema, "table": version_table},
    )
    if not found:
        return None
    value = await conn.scalar(text(f"SELECT version_num FROM {version_table}"))  # noqa: S608
    return None if value is None else str(value)


_USER_RELATIONS: Final = """
SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
"""
_USER_FUNCTIONS: Final = """
SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
"""
_USER_SCHEMAS: Final = """
SELECT count(*) FROM pg_namespace n
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'public')
  AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
"""


async def _is_empty(conn: Any, pg_schema: str | None) -> bool:
    """With a schema: that schema does not exist. Without: no relation, function, type or
    schema of anyone's outside the system schemas (the public schema may exist, empty)."""
    if pg_schema is not None:
        exists = await conn.scalar(
            text("SELECT count(*) FROM pg_namespace WHERE nspname = :schema"),
            {"schema": pg_schema},
        )
        return not exists
    relations = await conn.scalar(text(_USER_RELATIONS))
    functions = await conn.scalar(text(_USER_FUNCTIONS))
    schemas = await conn.scalar(text(_USER_SCHEMAS))
    return not relations and not functions and not schemas


def check_dump_versions(server: ServerInfo, dump: ToolVersion) -> None:
    if server.major > dump.major:
        raise BackupRefused(
            f"the PostgreSQL server is version {server.version} but pg_dump is {dump.text}: "
            f"pg_dump cannot dump a newer server; install the version {server.major} client tools"
        )


def check_restore_versions(
    *, source_server: int, dumped_with: int, target: ServerInfo, restore_tool: ToolVersion
) -> None:
    if restore_tool.major < dumped_with:
        raise BackupRefused(
            f"the backup was written by pg_dump {dumped_with} but pg_restore is "
            f"{restore_tool.text}; install the version {dumped_with} client tools or newer"
        )
    if target.major < source_server:
        raise BackupRefused(
            f"the backup is of a PostgreSQL {source_server} server; the target runs "
            f"{target.version}, which is older: restore into version {source_server} or newer"
        )


def _first_error(stream: IO[bytes]) -> str:
    stream.seek(0)
    lines = stream.read(64 * 1024).decode("utf-8", "replace").strip().splitlines()
    errors = [line for line in lines if "error" in line.lower()] or lines
    return (errors[0] if errors else "no message")[:MAX_ERROR_CHARS]


@contextmanager
def dump(url: str, *, pg_schema: str | None) -> Iterator[IO[bytes]]:
    """pg_dump's output as a stream; raises BackupRefused if pg_dump fails."""
    tool = shutil.which("pg_dump")
    if tool is None:
        raise BackupRefused("pg_dump is not installed")
    command = [tool, "--format=custom", "--compress=0", "--no-password"]
    if pg_schema is not None:
        command.append(f"--schema={pg_schema}")
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(  # noqa: S603 - fixed arguments, no shell
            command, stdout=subprocess.PIPE, stderr=errors, env=client_environment(url)
        )
        assert process.stdout is not None  # noqa: S101 - stdout=PIPE
        try:
            yield process.stdout
        except BaseException:
            process.kill()
            raise
        finally:
            with contextlib.suppress(OSError):
                process.stdout.close()
            code = process.wait()
        if code != 0:
            raise BackupRefused(f"pg_dump failed (exit {code}): {_first_error(errors)}")


def restore(blocks: Iterator[bytes], url: str) -> None:
    """Feed a custom-format archive to pg_restore, in one transaction that stops at the first
    error (so a failed restore leaves the target as empty as it was)."""
    tool = shutil.which("pg_restore")
    if tool is None:
        raise BackupRefused("pg_restore is not installed")
    command = [tool, "--exit-on-error", "--single-transaction", "--no-password", "--dbname"]
    database = make_url(url.replace("postgres://", "postgresql://", 1)).database or ""
    command.append(database)
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(  # noqa: S603 - fixed arguments, no shell
            command, stdin=subprocess.PIPE, stderr=errors, env=client_environment(url)
        )
        assert process.stdin is not None  # noqa: S101 - stdin=PIPE
        try:
            for block in blocks:
                process.stdin.write(block)
            process.stdin.close()
        except BrokenPipeError:
            pass  # pg_restore stopped early; its exit code and message say why
        except BaseException:
            # The stream failed to authenticate: stop pg_restore before it commits anything.
            process.kill()
            process.wait()
            raise
        code = process.wait()
        if code != 0:
            raise BackupRefused(f"pg_restore failed (exit {code}): {_first_error(errors)}")
