"""SQLite for SQLAlchemy's asyncio engine, with a write transaction's statements run on the
event loop's thread (`sqlite+inloop://`).

aiosqlite runs every call (cursor, execute, fetch, close) on a worker thread: two thread
wake-ups each, about 40 per order and 0.5-1.3 ms apiece on a loaded 2-core machine, while
SQLite needs microseconds for the statement itself once it holds the write lock. Here the
calls that cannot wait run directly on the loop, and only those that can run on the
connection's own thread:

- `BEGIN IMMEDIATE` is tried on the loop with the busy timeout at zero. If another
  connection (another process: the CLI) holds the write lock, it is run again on the thread,
  where SQLite's busy handler waits the configured timeout; it fails with the same
  "database is locked" error as before. The loop never sleeps in the busy handler.
- Inside a transaction that holds the write lock, statements wait for nothing: they run on
  the loop (WAL readers never block a writer; a cache spill writes without a flush).
- COMMIT of a transaction that changed anything flushes the disk (`synchronous=FULL`: a
  durable commit is an fsync): on the thread. A transaction that only read commits on the
  loop (there is nothing to flush). ROLLBACK never waits: on the loop. A COMMIT that has
  started on the thread cannot be stopped, so a caller cancelled meanwhile still waits for
  it and is told how it ended; its task's cancellation is delivered at its next wait: a
  committed transaction is never reported as a failed one, and a cancelled task still
  ends. Only a COMMIT that had not started is cancelled at once.
- Everything else runs on the thread as aiosqlite did: statements outside a transaction
  (they may take a lock: connection setup, pragmas), transactions begun deferred (`BEGIN`:
  the read-only ones, whose reads may be large, such as audit verification), connect and
  close (closing the last connection checkpoints the WAL).

Calls on one connection never overlap: each thread call is awaited, and a call left running
by a cancelled caller is waited for before the next one starts. `driver_connection` is an
aiosqlite-compatible object (`await conn.execute(...)`, `await cursor.fetchall()`) for code
that reads rows straight from the driver.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Final, TypeVar, cast

from sqlalchemy import pool
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import URL, AdaptedConnection
from sqlalchemy.util.concurrency import await_, in_greenlet

T = TypeVar("T")

DRIVER: Final = "inloop"
SQLITE_BUSY: Final = 5
# Statements that leave the database as it was: a transaction of only these has nothing to
# flush at COMMIT. Anything else (INSERT, UPDATE, DELETE, DDL, a PRAGMA, a WITH ...) counts
# as a change, conservatively.
_READING: Final = ("SELECT", "SAVEPOINT", "RELEASE", "ROLLBACK TO")
_BEGIN_IMMEDIATE: Final = "BEGIN IMMEDIATE"
_ENDING: Final = ("COMMIT", "END")
_BEGIN_DEFERRED: Final = frozenset({"BEGIN", "BEGIN DEFERRED", "BEGIN TRANSACTION"})
# Journal modes in which a connection holding the write lock never waits for another.
_WAITS_FOR_NOTHING: Final = frozenset({"wal", "memory"})


class _Ready:
    """An awaitable that is already done: awaiting it does not yield to the event loop."""

    def __await__(self) -> Any:
        return iter(())


_READY: Final = _Ready()


def _reads_only(statement: str) -> bool:
    return statement.lstrip()[:11].upper().startswith(_READING)


class _ConnectionThread:
    """The connection's own thread: calls that may wait run there, one at a time, in order."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="tradeguard-sqlite")
        self._last: Future[Any] | None = None

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        future = self._executor.submit(fn, *args, **kwargs)
        self._last = future
        return future

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn` on the thread; the calling greenlet waits, the event loop does not."""
        return await_(asyncio.wrap_future(self.submit(fn, *args, **kwargs)))

    def finish(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn` on the thread and report what it did, even to a caller cancelled while
        it runs: a COMMIT that has started cannot be stopped, and a caller told "cancelled"
        would take a committed transaction for a failed one. The cancellation is deferred,
        never lost: the call returns its outcome, and the task is cancelled again so that
        its next wait raises CancelledError (a worker loop cancelled mid-COMMIT still ends).
        Only a call that never started is cancelled at once."""
        future = self.submit(fn, *args)
        deferred = 0
        while True:
            try:
                result = await_(asyncio.wrap_future(future))
            except asyncio.CancelledError:
                if future.cancelled():  # still queued when the caller was cancelled: never ran
                    raise
                deferred += 1
                continue
            break
        task = asyncio.current_task() if deferred else None
        if task is not None:
            # The requests absorbed above are still counted on the task (asyncio.timeout and
            # TaskGroup compare that count): one is taken back and made again, now pending.
            task.uncancel()
            task.cancel()
        return result

    async def call_async(self, fn: Callable[..., T], *args: Any) -> T:
        await self.settled()
        return await asyncio.wrap_future(self.submit(fn, *args))

    @property
    def busy(self) -> bool:
        """A call is still running: its caller was cancelled while it waited for it."""
        return self._last is not None and not self._last.done()

    async def settled(self) -> None:
        last = self._last
        if last is not None and not last.done():
            # Its outcome went to a caller that is gone; only the order matters here.
            await asyncio.wait([asyncio.wrap_future(last)])

    def shutdown(self) -> None:
        """Stop the thread once it ran what it was given, without waiting for it."""
        self._executor.shutdown(wait=False)

    def stop(self) -> None:
        """Stop the thread and wait (the calling greenlet waits, the event loop does not)
        until it has ended: nothing of the connection is left running behind its caller,
        which may close its event loop next."""
        await_(asyncio.to_thread(self._executor.shutdown, wait=True))


class InLoopCursor:
    """A PEP 249 cursor over sqlite3's; rows are fetched when the statement runs."""

    server_side = False

    def __init__(self, connection: InLoopConnection) -> None:
        self._connection = connection
        self._cursor = connection.sqlite.cursor()
        self._rows: deque[Any] = deque()
        self._description: Any = None
        self.arraysize = 1

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    def execute(self, operation: str, parameters: Any = None) -> None:
        self._rows, self._description = self._connection.run_statement(
            self._cursor, operation, parameters, many=False
        )

    def executemany(self, operation: str, seq_of_parameters: Any) -> None:
        self._rows, self._description = self._connection.run_statement(
            self._cursor, operation, seq_of_parameters, many=True
        )

    def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    def fetchmany(self, size: int | None = None) -> list[Any]:
        count = min(self.arraysize if size is None else size, len(self._rows))
        return [self._rows.popleft() for _ in range(count)]

    def fetchall(self) -> list[Any]:
        rows = list(self._rows)
        self._rows.clear()
        return rows

    def __iter__(self) -> Any:
        while self._rows:
            yield self._rows.popleft()

    def setinputsizes(self, *sizes: Any) -> None:
        """PEP 249: may do nothing."""

    def setoutputsize(self, size: Any, column: Any = None) -> None:
        """PEP 249: may do nothing."""

    async def _async_soft_close(self) -> None:
        """SQLAlchemy's asyncio results call this: let go of the statement, keep the rows."""
        self._close_statement()

    def close(self) -> None:
        self._rows.clear()
        self._close_statement()

    def _close_statement(self) -> None:
        thread = self._connection.thread
        if thread.busy:  # the statement a cancelled caller left running may be this one's
            thread.submit(self._cursor.close)
        else:
            self._cursor.close()


class InLoopConnection(AdaptedConnection):
    """The PEP 249 connection SQLAlchemy drives (inside its greenlet) for one sqlite3 one."""

    __slots__ = ("_changed", "_thread", "_wal", "_writing", "dbapi", "sqlite")

    def __init__(
        self, dbapi: InLoopDBAPI, connection: sqlite3.Connection, thread: _ConnectionThread
    ) -> None:
        self.dbapi = dbapi
        self.sqlite = connection
        self._thread = thread
        # What SQLAlchemy hands out as `driver_connection` (typed there as an asyncio DBAPI).
        self._connection = cast(Any, AsyncDriverConnection(self))
        # True from a successful BEGIN IMMEDIATE until the transaction ends: this connection
        # holds the write lock, so its statements wait for nothing.
        self._writing = False
        self._changed = False
        # Whether the database is in WAL mode (or in memory), as the last `PRAGMA
        # journal_mode` answered (db/engine.py sets WAL on every connection). Only then does
        # a writer wait for nothing: in rollback-journal mode, a write that spills its cache
        # into the database file needs the exclusive lock and waits for readers, in SQLite's
        # busy handler, which must never sleep on the loop. Unknown counts as no.
        self._wal = False

    @property
    def thread(self) -> _ConnectionThread:
        return self._thread

    @property
    def holds_write_lock(self) -> bool:
        """This connection holds the write lock of a WAL database: its statements run on the
        loop."""
        return self._writing and self._wal and self.sqlite.in_transaction

    def _settle(self) -> None:
        if self._thread.busy:
            await_(self._thread.settled())

    # Statements ------------------------------------------------------------------------------

    def run_statement(
        self, cursor: sqlite3.Cursor, operation: str, parameters: Any, *, many: bool
    ) -> tuple[deque[Any], Any]:
        self._settle()
        # SQLAlchemy's AsyncConnection.execute insists that a statement awaited something (a
        # guard against synchronous drivers): a pass through the greenlet that runs the
        # statement, without a turn of the event loop.
        await_(_READY)
        if operation == _BEGIN_IMMEDIATE:
            self._begin_immediate(cursor)
            return deque(), None
        if operation in _BEGIN_DEFERRED:
            # Takes no lock until the first read, which then runs on the thread.
            cursor.execute(operation)
            self._writing = False
            return deque(), None
        head = operation.lstrip()[:11].upper()
        if head.startswith(_ENDING) or (
            head.startswith("ROLLBACK") and not head.startswith("ROLLBACK TO")
        ):
            # A transaction ended by SQL text rather than commit()/rollback(): the same rules.
            flush = head.startswith(_ENDING) and (self._changed or not self.holds_write_lock)
            try:
                if flush:
                    return self._thread.finish(_execute, cursor, operation, parameters, many)
                return _execute(cursor, operation, parameters, many)
            finally:
                self._writing = self._changed = False
        if self.on_loop(operation):
            return _execute(cursor, operation, parameters, many)
        result = self._thread.call(_execute, cursor, operation, parameters, many)
        self.note_journal_mode(operation, result[0])
        return result

    def note_journal_mode(self, operation: str, rows: deque[Any]) -> None:
        """Follow the journal mode a `PRAGMA journal_mode` (run off the loop) answered."""
        if (
            rows
            and "JOURNAL_MODE" in operation.upper()
            and operation.lstrip()[:6].upper() == "PRAGMA"
        ):
            self._wal = str(rows[0][0]).lower() in _WAITS_FOR_NOTHING

    def on_loop(self, operation: str) -> bool:
        """Whether `operation` runs on the loop (noting whether it may change anything)."""
        if not self.holds_write_lock:
            self._writing = False
            return False
        if not self._changed and not _reads_only(operation):
            self._changed = True
        return True

    def _begin_immediate(self, cursor: sqlite3.Cursor) -> None:
        if self.sqlite.in_transaction:
            # SQLite refuses a transaction within a transaction; let it say so.
            cursor.execute(_BEGIN_IMMEDIATE)
        timeout_ms = int(self.sqlite.execute("PRAGMA busy_timeout").fetchone()[0])
        if timeout_ms:
            self.sqlite.execute("PRAGMA busy_timeout=0")
        try:
            cursor.execute(_BEGIN_IMMEDIATE)
            waited = False
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode & 0xFF != SQLITE_BUSY or not timeout_ms:
                raise
            waited = True
        finally:
            if timeout_ms:
                self.sqlite.execute(f"PRAGMA busy_timeout={timeout_ms}")
        if waited:
            # Another connection writes: wait for it on the thread, in SQLite's busy handler.
            self._thread.call(cursor.execute, _BEGIN_IMMEDIATE)
        self._writing = True
        self._changed = False

    # Transactions ----------------------------------------------------------------------------

    def commit(self) -> None:
        self._settle()
        try:
            if not self.sqlite.in_transaction:
                return
            if self.holds_write_lock and not self._changed:
                self.sqlite.commit()  # nothing to flush
            else:
                self._thread.finish(self.sqlite.commit)
        finally:
            self._writing = self._changed = False

    def rollback(self) -> None:
        self._settle()
        try:
            self.sqlite.rollback()
        finally:
            self._writing = self._changed = False

    def cursor(self, server_side: bool = False) -> InLoopCursor:
        return InLoopCursor(self)

    def execute(self, operation: str, parameters: Any = None) -> InLoopCursor:
        cursor = self.cursor()
        cursor.execute(operation, parameters)
        return cursor

    @property
    def isolation_level(self) -> str | None:
        return self.sqlite.isolation_level

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        # Setting None commits an open transaction: that may flush, so not on the loop then.
        if self.sqlite.in_transaction:
            self._thread.call(setattr, self.sqlite, "isolation_level", value)
            self._writing = self._changed = False
        else:
            self.sqlite.isolation_level = cast(Any, value)

    def create_function(self, *args: Any, **kwargs: Any) -> None:
        self.sqlite.create_function(*args, **kwargs)

    # Closing ---------------------------------------------------------------------------------

    def close(self) -> None:
        self._settle()
        try:
            self._thread.call(self.sqlite.close)
        finally:
            self._thread.stop()

    def terminate(self) -> None:
        if in_greenlet():
            self.close()
        else:
            # Garbage collection of a connection the pool lost: close it on its thread,
            # after whatever it still runs, without waiting.
            self._thread.submit(self.sqlite.close)
            self._thread.shutdown()


def _execute(
    cursor: sqlite3.Cursor, operation: str, parameters: Any, many: bool
) -> tuple[deque[Any], Any]:
    if many:
        cursor.executemany(operation, parameters)
    elif parameters is None:
        cursor.execute(operation)
    else:
        cursor.execute(operation, parameters)
    description = cursor.description
    rows = deque(cursor.fetchall()) if description else deque()
    return rows, description


class AsyncDriverCursor:
    """aiosqlite's cursor API over rows already fetched."""

    def __init__(self, rows: deque[Any], description: Any, rowcount: int) -> None:
        self._rows = rows
        self.description = description
        self.rowcount = rowcount

    async def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    async def fetchmany(self, size: int = 1) -> list[Any]:
        return [self._rows.popleft() for _ in range(min(size, len(self._rows)))]

    async def fetchall(self) -> list[Any]:
        rows = list(self._rows)
        self._rows.clear()
        return rows

    async def close(self) -> None:
        self._rows.clear()


class AsyncDriverConnection:
    """The driver connection code reaches through SQLAlchemy (`driver_connection`): the
    subset of aiosqlite's API that reads rows, with the same placement rules."""

    def __init__(self, connection: InLoopConnection) -> None:
        self._owner = connection

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> AsyncDriverCursor:
        owner = self._owner
        await owner.thread.settled()
        cursor = owner.sqlite.cursor()
        if owner.on_loop(sql):
            rows, description = _execute(cursor, sql, parameters, False)
        else:
            rows, description = await owner.thread.call_async(
                _execute, cursor, sql, parameters, False
            )
            owner.note_journal_mode(sql, rows)
        result = AsyncDriverCursor(rows, description, cursor.rowcount)
        cursor.close()
        return result

    async def execute_fetchall(
        self, sql: str, parameters: Sequence[Any] | None = None
    ) -> list[Any]:
        """Run a statement and return all of its rows (aiosqlite's shortcut)."""
        cursor = await self.execute(sql, parameters)
        return await cursor.fetchall()


class InLoopDBAPI:
    """The DBAPI module SQLAlchemy sees: sqlite3's names, and a `connect` that opens the
    connection on its own thread."""

    paramstyle = "qmark"

    def __init__(self) -> None:
        self.sqlite = sqlite3
        for name in (
            "DatabaseError",
            "DataError",
            "Error",
            "IntegrityError",
            "InterfaceError",
            "InternalError",
            "NotSupportedError",
            "OperationalError",
            "ProgrammingError",
            "Warning",
            "sqlite_version",
            "sqlite_version_info",
            "PARSE_COLNAMES",
            "PARSE_DECLTYPES",
            "Binary",
        ):
            setattr(self, name, getattr(sqlite3, name))

    def connect(self, *args: Any, **kwargs: Any) -> InLoopConnection:
        # Used from the loop's thread and the connection's own, never at the same time.
        kwargs["check_same_thread"] = False
        thread = _ConnectionThread()
        try:
            connection = thread.call(sqlite3.connect, *args, **kwargs)
        except BaseException:
            # A failed connect (a path that cannot be opened) leaves no thread behind: the
            # caller may close its event loop next (tests/integration/web/
            # test_database_outage.py::TestASQLiteFileThatCannotBeOpened).
            thread.stop()
            raise
        return InLoopConnection(self, connection, thread)


class SQLiteDialect_inloop(SQLiteDialect_pysqlite):  # noqa: N801 - SQLAlchemy's naming
    driver = DRIVER
    supports_statement_cache = True
    is_async = True
    has_terminate = True
    supports_server_side_cursors = False

    @classmethod
    def import_dbapi(cls) -> Any:
        return InLoopDBAPI()

    @classmethod
    def get_pool_class(cls, url: URL) -> type[pool.Pool]:
        if cls._is_url_file_db(url):
            return pool.AsyncAdaptedQueuePool
        return pool.StaticPool

    def get_driver_connection(self, connection: Any) -> Any:
        return connection.driver_connection

    def do_terminate(self, dbapi_connection: Any) -> None:
        dbapi_connection.terminate()


def register() -> None:
    """Make `sqlite+inloop://` URLs use this dialect (idempotent)."""
    registry.register(f"sqlite.{DRIVER}", __name__, SQLiteDialect_inloop.__name__)


dialect = SQLiteDialect_inloop
