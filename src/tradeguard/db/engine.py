"""Async engines for SQLite (embedded default) and PostgreSQL, with one unit of work per edge."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Engine, event, make_url
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

from tradeguard.core.errors import ConfigurationError
from tradeguard.db import sqlite_inloop
from tradeguard.db.availability import watch_engine

sqlite_inloop.register()

# asyncpg waits 60 s for a connection by default: an unreachable (black-holed) server would
# hold every request that long. Failing fast lets the request answer 503 with Retry-After.
CONNECT_TIMEOUT_SECONDS = 5.0
POOL_TIMEOUT_SECONDS = 10.0


def async_url(url: str) -> URL:
    """Normalize a configured URL to its async driver (SQLite in the loop, asyncpg)."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        # db/sqlite_inloop.py: statements of a write transaction run on the event loop,
        # only what can wait (a busy lock, a disk flush) on the connection's thread.
        return parsed.set(drivername=f"sqlite+{sqlite_inloop.DRIVER}")
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+asyncpg")
    raise ConfigurationError(f"unsupported database URL scheme {backend!r}")


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # WAL lets readers proceed while one writer commits; foreign keys are off by default in
    # SQLite and must be switched on per connection; the busy timeout makes a second writer
    # wait for the lock instead of failing at once.
    # Hand transaction control to SQLAlchemy's "begin" event (below) instead of pysqlite.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


READ_ONLY = "tradeguard_read_only"
"""Connection execution option: this connection's transactions only read (see `read_only`)."""


def _sqlite_begin(conn: Any) -> None:
    # pysqlite's own transaction handling is disabled (see create_engine below) so that we can
    # emit BEGIN IMMEDIATE: the write lock is taken at the start, so two transactions never
    # both read and then deadlock upgrading to write. A connection marked read-only gets a
    # deferred BEGIN instead: under WAL it reads one consistent snapshot and never takes the
    # write lock, so a long reader (audit verify) does not block writers.
    if conn.get_execution_options().get(READ_ONLY, False):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


async def read_only(conn: AsyncConnection) -> AsyncConnection:
    """Mark a connection, before its transaction begins, as one that only reads.

    On SQLite its transactions start with a deferred BEGIN (no write lock); a write attempted
    on it may then fail with SQLITE_BUSY instead of waiting, so use it for pure readers only.
    PostgreSQL is unaffected: readers never block writers there.
    """
    return await conn.execution_options(**{READ_ONLY: True})


def create_engine(
    url: str,
    *,
    echo: bool = False,
    pool_size: int = 10,
    pg_schema: str | None = None,
    command_timeout: float | None = None,
) -> AsyncEngine:
    """Create the async engine for a configured database URL.

    `pg_schema` puts a PostgreSQL connection's search_path on one schema (tests use a fresh
    schema each, so they are isolated and can run side by side). `command_timeout` bounds
    every statement on PostgreSQL (the server sets it, so a request never hangs on a server
    that stopped answering: it fails, and the outage handling answers 503).
    """
    target = async_url(url)
    if target.get_backend_name() == "sqlite":
        database = target.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(target, echo=echo, hide_parameters=True)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        watch_engine(engine)
        return engine
    connect_args: dict[str, Any] = {"timeout": CONNECT_TIMEOUT_SECONDS}
    if command_timeout is not None:
        connect_args["command_timeout"] = command_timeout
    if pg_schema is not None:
        connect_args["server_settings"] = {"search_path": pg_schema}
    engine = create_async_engine(
        target,
        echo=echo,
        # Bound values (password hashes, tokens, personal data) never reach exception text or
        # the SQL echo log.
        hide_parameters=True,
        pool_size=pool_size,
        max_overflow=pool_size,
        # A request waits at most this long for a pooled connection, then fails (503).
        pool_timeout=POOL_TIMEOUT_SECONDS,
        pool_pre_ping=True,
        connect_args=connect_args,
    )
    watch_engine(engine)
    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=True)


# SQLite has one writer at a time, and every transaction here begins IMMEDIATE (takes the
# write lock). A second connection that finds the lock taken does not queue: SQLite's busy
# handler sleeps and retries (1, 2, 5, ... 100 ms), so under concurrent requests a waiter
# oversleeps the holder by up to 100 ms and the order of service is luck. Inside one process
# the gate below queues SQLite transactions on an asyncio lock instead (first come, first
# served, woken the moment the holder commits); the busy handler is left for other processes
# (the CLI). Locks are per event loop, since an asyncio lock belongs to one.
_GATES: WeakKeyDictionary[Engine, dict[asyncio.AbstractEventLoop, asyncio.Lock]] = (
    WeakKeyDictionary()
)
_HELD: ContextVar[frozenset[int]] = ContextVar("tradeguard_sqlite_gate_held", default=frozenset())


def _gate(engine: AsyncEngine) -> asyncio.Lock | None:
    if engine.dialect.name != "sqlite":
        return None
    loops = _GATES.setdefault(engine.sync_engine, {})
    loop = asyncio.get_running_loop()
    lock = loops.get(loop)
    if lock is None:
        for stale in [known for known in loops if known.is_closed()]:
            del loops[stale]
        lock = loops[loop] = asyncio.Lock()
    return lock


def holds_write_gate(engine: AsyncEngine) -> bool:
    """Whether this context already holds the engine's write turn (see `write_gate`)."""
    return id(engine.sync_engine) in _HELD.get()


@asynccontextmanager
async def write_gate(engine: AsyncEngine) -> AsyncIterator[None]:
    """Hold the process's SQLite write turn for one transaction (nothing on PostgreSQL).

    Re-entrant within a task (and the tasks it starts): a transaction opened while the same
    context already holds the turn goes straight on, as it did before the gate existed.
    """
    lock = _gate(engine)
    key = id(engine.sync_engine)
    held = _HELD.get()
    if lock is None or key in held:
        yield
        return
    async with lock:
        token = _HELD.set(held | {key})
        try:
            yield
        finally:
            _HELD.reset(token)


@asynccontextmanager
async def unit_of_work(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """The edge (request, job, CLI command) owns the transaction: commit once, or roll back."""
    bind = factory.kw.get("bind")
    async with (
        write_gate(bind) if isinstance(bind, AsyncEngine) else _no_gate(),
        factory() as session,
    ):
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


@asynccontextmanager
async def _no_gate() -> AsyncIterator[None]:
    yield


@asynccontextmanager
async def reading(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session for reads only, rolled back at the end (it has nothing to commit).

    On SQLite it takes no writer's turn (`write_gate`) and begins deferred (`read_only`): it
    reads the committed state under WAL without waiting for a writer, where a unit of work
    would queue behind every write transaction of the process. A write attempted on it fails.
    """
    bind = factory.kw.get("bind")
    if not isinstance(bind, AsyncEngine) or not is_sqlite(bind):
        async with factory() as session:
            try:
                yield session
            finally:
                await session.rollback()
        return
    async with bind.connect() as conn:
        await read_only(conn)
        async with factory(bind=conn) as session:
            try:
                yield session
            finally:
                await session.rollback()
