"""Telling a database outage apart from a bug, and what a request did with the database.

An outage (the server unreachable, restarting, out of connections; SQLite unable to open,
lock or write its file) is answered 503 with Retry-After and logged as one line per kind of
failure; anything else stays an internal error with a traceback. The engine hooks below
also note, per request, whether a connection was obtained and whether a commit was
attempted: a request that failed before any commit changed nothing and may be retried.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import asyncpg
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import ConnectionPoolEntry

from tradeguard.core.context import database_activity_var

# SQLite primary result codes that mean "the file cannot be used right now", not "this SQL
# is wrong": BUSY and LOCKED (another writer held the lock past the busy timeout), IOERR,
# FULL (disk full) and CANTOPEN.
_SQLITE_UNAVAILABLE: Final = frozenset({5, 6, 10, 13, 14})

# PostgreSQL SQLSTATE classes and codes of an unavailable server: 08 connection exceptions,
# 53 insufficient resources (too many connections, disk full, out of memory), and the
# 57P0x shutdowns and start-up ("the database system is starting up").
_POSTGRES_UNAVAILABLE: Final = (
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
)


class DatabaseUnreachable(Exception):
    """The database server could not be reached (raised from the driver's OSError).

    Raised only from the engine's connect hook, so an OSError from anywhere else (a key
    file, a mail server) is never mistaken for a database outage.
    """

    def __init__(self, cause: OSError) -> None:
        # The cause's text names the host and port; only its type travels in this message.
        super().__init__(f"database unreachable: {type(cause).__name__}")
        self.cause_name = type(cause).__name__
        self.cause = cause


@dataclass(frozen=True, slots=True)
class Outage:
    """A database outage: a one-line, secret-free reason, and whether running the failed
    work again at once may help (the connection failed) or would only wait again (a lock or
    the pool timed out after waiting)."""

    reason: str
    retryable: bool


def classify_outage(error: BaseException) -> Outage | None:
    """The outage `error` shows, or None when it is not one (a bug, bad SQL, a constraint)."""
    for link in _causes(error):
        if isinstance(link, DatabaseUnreachable):
            return Outage(f"database unreachable: {link.cause_name}", retryable=True)
        if isinstance(link, sa_exc.TimeoutError):
            return Outage("database connection pool exhausted", retryable=False)
        if isinstance(link, TimeoutError):
            # The statement timeout (asyncpg command_timeout): the server stopped answering.
            return Outage("database not answering in time", retryable=False)
        if isinstance(link, sa_exc.DBAPIError) and link.connection_invalidated:
            return Outage("database connection lost", retryable=True)
        if isinstance(link, _POSTGRES_UNAVAILABLE):
            retryable = not isinstance(link, asyncpg.exceptions.InsufficientResourcesError)
            return Outage(f"database unavailable: {type(link).__name__}", retryable=retryable)
        if isinstance(link, sqlite3.Error):
            code = getattr(link, "sqlite_errorcode", None)
            if isinstance(code, int) and code & 0xFF in _SQLITE_UNAVAILABLE:
                name = getattr(link, "sqlite_errorname", "SQLITE_ERROR")
                # CANTOPEN may pass (a file being restored); BUSY has already waited.
                return Outage(f"database unavailable: {name}", retryable=code & 0xFF == 14)
    return None


def unavailable_reason(error: BaseException) -> str | None:
    """A one-line, secret-free name for a database outage; None if `error` is not one."""
    outage = classify_outage(error)
    return outage.reason if outage is not None else None


def _causes(error: BaseException) -> Iterator[BaseException]:
    """The error, the driver error SQLAlchemy wrapped, and their causes (bounded)."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending and len(seen) < 16:
        link = pending.pop(0)
        if id(link) in seen:
            continue
        seen.add(id(link))
        yield link
        for nested in (getattr(link, "orig", None), link.__cause__, link.__context__):
            if isinstance(nested, BaseException):
                pending.append(nested)


def watch_engine(engine: AsyncEngine) -> None:
    """Install the hooks this module relies on (create_engine does it for every engine)."""
    sync_engine = engine.sync_engine
    event.listen(sync_engine, "do_connect", _connect_or_unreachable)
    event.listen(sync_engine, "engine_connect", _note_connected)
    event.listen(sync_engine, "commit", _note_commit)


def _connect_or_unreachable(
    dialect: Dialect, _record: ConnectionPoolEntry, cargs: Any, cparams: Any
) -> Any:
    # The same call SQLAlchemy makes when no hook returns a connection; only the driver's
    # network errors are translated, everything else passes through unchanged.
    try:
        return dialect.connect(*cargs, **cparams)
    except OSError as exc:
        raise DatabaseUnreachable(exc) from exc


def _note_connected(_connection: Connection) -> None:
    activity = database_activity_var.get()
    if activity is not None:
        activity.connected = True


def _note_commit(_connection: Connection) -> None:
    # Fires before COMMIT is sent: once it has, the outcome is unknown if the connection
    # then fails, so the request must not be run again.
    activity = database_activity_var.get()
    if activity is not None:
        activity.commit_attempted = True
