"""The in-loop SQLite driver (db/sqlite_inloop.py): a write transaction's statements run on
the event loop, whatever can wait runs on the connection's thread, and the loop never waits
for another process's lock. SQLite only: the driver is SQLite's."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tests.support.sqlite_commits import commits_held
from tradeguard.db.availability import Outage, classify_outage
from tradeguard.db.engine import create_engine, read_only

BOUNDED_SECONDS = 20.0

# Another process (as the CLI would be) takes the write lock, says so, and holds it until
# told to commit on its standard input.
LOCK_HOLDER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=5)
db.execute("BEGIN IMMEDIATE")
db.execute("INSERT INTO notes (body) VALUES ('other process')")
print("locked", flush=True)
sys.stdin.readline()
db.execute("COMMIT")
print("released", flush=True)
"""


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(f"sqlite:///{tmp_path / 'inloop.db'}")
    async with eng.begin() as conn:
        await conn.execute(
            text("CREATE TABLE notes (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL)")
        )
    yield eng
    await eng.dispose()


def _database_file(engine: AsyncEngine) -> str:
    database = engine.url.database
    assert database is not None
    return database


@asynccontextmanager
async def other_process_holds_the_lock(engine: AsyncEngine) -> AsyncIterator[Any]:
    """Yields a callable that makes the other process commit and waits until it has."""
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        LOCK_HOLDER,
        _database_file(engine),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert holder.stdin is not None
    assert holder.stdout is not None
    stdin, stdout = holder.stdin, holder.stdout

    async def release() -> None:
        stdin.write(b"go\n")
        await stdin.drain()
        line = await asyncio.wait_for(stdout.readline(), BOUNDED_SECONDS)
        assert line.strip() == b"released"

    try:
        line = await asyncio.wait_for(stdout.readline(), BOUNDED_SECONDS)
        assert line.strip() == b"locked"
        yield release
    finally:
        if holder.returncode is None:
            holder.kill()
        await holder.wait()


async def _bodies(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT body FROM notes ORDER BY id"))
        return [row.body for row in rows]


@contextmanager
def traced(conn: Any) -> Iterator[list[tuple[str, int]]]:
    """(statement, thread id) for every statement SQLite runs on this connection."""
    seen: list[tuple[str, int]] = []
    sqlite = conn.sqlite
    sqlite.set_trace_callback(lambda sql: seen.append((sql, threading.get_ident())))
    try:
        yield seen
    finally:
        sqlite.set_trace_callback(None)


async def _dbapi(conn: AsyncConnection) -> Any:
    raw = await conn.get_raw_connection()
    return raw.dbapi_connection


class TestWhereStatementsRun:
    async def test_a_write_transaction_runs_on_the_loop_and_flushes_its_commit_elsewhere(
        self, engine: AsyncEngine
    ) -> None:
        loop_thread = threading.get_ident()
        async with engine.connect() as conn:
            with traced(await _dbapi(conn)) as seen:
                async with conn.begin():
                    await conn.execute(text("INSERT INTO notes (body) VALUES ('mine')"))
                    await conn.execute(text("SELECT count(*) FROM notes"))
        threads = {sql.split(" ")[0]: thread for sql, thread in seen}
        assert [sql.split(" ")[0] for sql, _ in seen if not sql.startswith("PRAGMA")] == [
            "BEGIN",
            "INSERT",
            "SELECT",
            "COMMIT",
        ]
        assert threads["BEGIN"] == threads["INSERT"] == threads["SELECT"] == loop_thread
        # The commit flushes the disk (synchronous=FULL): never on the loop.
        assert threads["COMMIT"] != loop_thread
        assert await _bodies(engine) == ["mine"]

    async def test_a_commit_sent_as_sql_text_also_flushes_off_the_loop(
        self, engine: AsyncEngine
    ) -> None:
        loop_thread = threading.get_ident()
        async with engine.connect() as conn:
            with traced(await _dbapi(conn)) as seen:
                # Begins (IMMEDIATE, by the engine's hook), then ends in SQL text.
                await conn.exec_driver_sql("INSERT INTO notes (body) VALUES ('by text')")
                await conn.exec_driver_sql("COMMIT")
            await conn.rollback()  # SQLAlchemy's view; SQLite's transaction is already over
        threads = {sql.split(" ")[0]: thread for sql, thread in seen}
        assert threads["INSERT"] == loop_thread
        assert threads["COMMIT"] != loop_thread
        assert await _bodies(engine) == ["by text"]

    async def test_in_rollback_journal_mode_a_writer_runs_on_its_thread(
        self, engine: AsyncEngine
    ) -> None:
        """Outside WAL a writer that spills its cache waits for readers in SQLite's busy
        handler: never on the loop. The driver follows the journal mode SQLite reports."""
        loop_thread = threading.get_ident()
        async with engine.connect() as conn:
            # Outside a transaction (SQLAlchemy would begin one): through the driver.
            driver = (await conn.get_raw_connection()).driver_connection
            assert await driver.execute_fetchall("PRAGMA journal_mode=DELETE") == [("delete",)]
            with traced(await _dbapi(conn)) as seen:
                async with conn.begin():
                    await conn.execute(text("INSERT INTO notes (body) VALUES ('journal')"))
            assert await driver.execute_fetchall("PRAGMA journal_mode=WAL") == [("wal",)]
            with traced(await _dbapi(conn)) as again:
                async with conn.begin():
                    await conn.execute(text("INSERT INTO notes (body) VALUES ('wal')"))
        threads = {sql.split(" ")[0]: thread for sql, thread in seen}
        assert threads["INSERT"] != loop_thread
        assert threads["COMMIT"] != loop_thread
        threads = {sql.split(" ")[0]: thread for sql, thread in again}
        assert threads["INSERT"] == loop_thread  # WAL again: on the loop
        assert await _bodies(engine) == ["journal", "wal"]

    async def test_a_transaction_that_only_read_commits_on_the_loop(
        self, engine: AsyncEngine
    ) -> None:
        loop_thread = threading.get_ident()
        async with engine.connect() as conn:
            with traced(await _dbapi(conn)) as seen:
                async with conn.begin():
                    await conn.execute(text("SELECT count(*) FROM notes"))
        assert {thread for _, thread in seen} == {loop_thread}
        assert seen[-1][0] == "COMMIT"

    async def test_a_read_only_transaction_begins_deferred_and_reads_on_its_thread(
        self, engine: AsyncEngine
    ) -> None:
        loop_thread = threading.get_ident()
        async with engine.connect() as conn:
            await read_only(conn)
            with traced(await _dbapi(conn)) as seen:
                async with conn.begin():
                    await conn.execute(text("SELECT count(*) FROM notes"))
        statements = [(sql, thread) for sql, thread in seen if not sql.startswith("PRAGMA")]
        assert statements[0] == ("BEGIN", loop_thread)  # takes no lock
        assert statements[1][0].startswith("SELECT")
        assert statements[1][1] != loop_thread

    async def test_rows_read_straight_from_the_driver(self, engine: AsyncEngine) -> None:
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO notes (body) VALUES ('a'), ('b')"))
        async with engine.connect() as conn:
            await read_only(conn)
            driver = (await conn.get_raw_connection()).driver_connection
            cursor = await driver.execute("SELECT body FROM notes WHERE id >= ?", (1,))
            assert await cursor.fetchall() == [("a",), ("b",)]
            await cursor.close()


class TestAnotherProcessHoldsTheWriteLock:
    async def test_the_loop_keeps_running_while_a_transaction_waits_for_the_lock(
        self, engine: AsyncEngine
    ) -> None:
        async def write() -> None:
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO notes (body) VALUES ('mine')"))

        async with other_process_holds_the_lock(engine) as release:
            waiting = asyncio.create_task(write())
            started = time.monotonic()
            # Were the loop asleep in SQLite's busy handler, this would not run before the
            # 30 s busy timeout (and the other process only lets go when told to below).
            for _ in range(10):
                await asyncio.sleep(0.02)
            assert time.monotonic() - started < BOUNDED_SECONDS / 2
            assert not waiting.done()
            await release()
            await asyncio.wait_for(waiting, BOUNDED_SECONDS)
        # Served in the order the lock was taken: the other process first.
        assert await _bodies(engine) == ["other process", "mine"]

    async def test_a_lock_held_past_the_busy_timeout_fails_as_before(
        self, engine: AsyncEngine
    ) -> None:
        @event.listens_for(engine.sync_engine, "connect")
        def short_wait(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA busy_timeout=300")
            cursor.close()

        await engine.dispose()  # new connections, with the short wait
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        async with other_process_holds_the_lock(engine) as release:
            ticker = asyncio.create_task(tick())
            started = time.monotonic()
            with pytest.raises(OperationalError) as busy:
                async with engine.begin() as conn:
                    await conn.execute(text("INSERT INTO notes (body) VALUES ('mine')"))
            waited = time.monotonic() - started
            ticker.cancel()
            await release()
        assert "database is locked" in str(busy.value)
        assert classify_outage(busy.value) == Outage(
            "database unavailable: SQLITE_BUSY", retryable=False
        )
        assert waited >= 0.25  # it waited for the lock, in SQLite's busy handler
        assert ticks >= 3  # ... on another thread: the loop went on meanwhile
        assert await _bodies(engine) == ["other process"]

    async def test_a_caller_cancelled_while_waiting_leaves_the_loop_and_connection_usable(
        self, engine: AsyncEngine
    ) -> None:
        async def write(body: str) -> None:
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO notes (body) VALUES (:b)"), {"b": body})

        async with other_process_holds_the_lock(engine) as release:
            gone = asyncio.create_task(write("never"))
            await asyncio.sleep(0.1)
            gone.cancel()
            # The cancelled caller's connection is still waiting for the lock on its thread;
            # cleaning up after the caller must wait for that, not stop the loop meanwhile
            # (SQLite would block a second call on the connection until the busy timeout).
            started = time.monotonic()
            for _ in range(10):
                await asyncio.sleep(0.02)
            assert time.monotonic() - started < BOUNDED_SECONDS / 2
            await release()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(gone, BOUNDED_SECONDS)
        await asyncio.wait_for(write("after"), BOUNDED_SECONDS)
        assert await _bodies(engine) == ["other process", "after"]

    async def test_a_read_only_transaction_reads_while_the_other_process_writes(
        self, engine: AsyncEngine
    ) -> None:
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO notes (body) VALUES ('committed')"))
        async with other_process_holds_the_lock(engine) as release:
            async with engine.connect() as conn:
                await read_only(conn)
                rows = await asyncio.wait_for(
                    conn.execute(text("SELECT body FROM notes")), BOUNDED_SECONDS / 2
                )
                # WAL: the committed snapshot, not the other process's pending row.
                assert [row.body for row in rows] == ["committed"]
            await release()


class TestTransactions:
    async def test_an_error_rolls_the_whole_transaction_back(self, engine: AsyncEngine) -> None:
        async def insert_then_fail() -> None:
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO notes (body) VALUES ('lost')"))
                raise RuntimeError("the work failed")

        with pytest.raises(RuntimeError):
            await insert_then_fail()
        async with engine.begin() as conn:  # the connection is clean for the next one
            await conn.execute(text("INSERT INTO notes (body) VALUES ('kept')"))
        assert await _bodies(engine) == ["kept"]

    async def test_a_constraint_violation_is_the_same_error_and_undoes_the_transaction(
        self, engine: AsyncEngine
    ) -> None:
        async def insert_twice() -> None:
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO notes (id, body) VALUES (7, 'first')"))
                await conn.execute(text("INSERT INTO notes (id, body) VALUES (7, 'again')"))

        with pytest.raises(IntegrityError):
            await insert_twice()
        assert await _bodies(engine) == []

    async def test_a_savepoint_rolls_back_only_its_own_work(self, engine: AsyncEngine) -> None:
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO notes (body) VALUES ('outer')"))
            inner = await conn.begin_nested()
            await conn.execute(text("INSERT INTO notes (body) VALUES ('inner')"))
            await inner.rollback()
            async with conn.begin_nested():
                await conn.execute(text("INSERT INTO notes (body) VALUES ('second inner')"))
        assert await _bodies(engine) == ["outer", "second inner"]

    async def test_a_nested_begin_is_refused_by_sqlite(self, engine: AsyncEngine) -> None:
        async with engine.connect() as conn:
            await conn.begin()
            with pytest.raises(OperationalError, match="within a transaction"):
                await conn.exec_driver_sql("BEGIN IMMEDIATE")
            await conn.rollback()


class TestACommitIsNeverTakenForAFailure:
    async def test_a_caller_cancelled_while_its_commit_flushes_learns_that_it_committed(
        self, engine: AsyncEngine
    ) -> None:
        told: list[str] = []

        async def write() -> None:
            async with engine.connect() as conn:
                await conn.execute(text("INSERT INTO notes (body) VALUES ('flushed')"))
                await conn.commit()
                told.append("committed")  # what the code that committed was told
            # Closing the connection is its next wait: the cancellation lands there.
            told.append("went on")

        with commits_held(engine) as commits:
            writer = asyncio.create_task(write())
            flushing = await commits.first()
            # The COMMIT runs on the connection's thread and cannot be stopped there: the
            # cancellation must not make its caller believe it failed.
            writer.cancel()
            await asyncio.sleep(0.05)
            flushing.release.set()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(writer, BOUNDED_SECONDS)
        assert told == ["committed"]
        assert writer.cancelled()  # deferred to its next wait, never lost
        assert await _bodies(engine) == ["flushed"]

    async def test_a_worker_loop_cancelled_during_a_commit_still_ends(
        self, engine: AsyncEngine
    ) -> None:
        # A background loop (outbox dispatcher, sequencer) cancelled while its COMMIT
        # flushes: were the cancellation absorbed, the loop would run forever.
        async def loop_forever() -> None:
            n = 0
            while True:
                async with engine.begin() as conn:
                    await conn.execute(text("INSERT INTO notes (body) VALUES (:b)"), {"b": n})
                n += 1

        with commits_held(engine) as commits:
            worker = asyncio.create_task(loop_forever())
            flushing = await commits.first()
            worker.cancel()
            await asyncio.sleep(0.05)
            flushing.release.set()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(worker, BOUNDED_SECONDS)
        assert await _bodies(engine) == ["0"]

    async def test_a_timeout_around_a_cancelled_commit_is_still_a_timeout(
        self, engine: AsyncEngine
    ) -> None:
        # asyncio.timeout counts the cancellations it made: the deferred one is the same
        # request, so the block ends in TimeoutError, not in a stray CancelledError.
        with commits_held(engine) as commits:

            async def write_within_a_deadline() -> str:
                try:
                    async with asyncio.timeout(0.05):
                        async with engine.begin() as conn:
                            await conn.execute(text("INSERT INTO notes (body) VALUES ('late')"))
                        await asyncio.sleep(BOUNDED_SECONDS)
                except TimeoutError:
                    return "timed out"
                return "finished"

            writer = asyncio.create_task(write_within_a_deadline())
            flushing = await commits.first()
            await asyncio.sleep(0.1)  # the deadline passes while the COMMIT flushes
            flushing.release.set()
            outcome = await asyncio.wait_for(writer, BOUNDED_SECONDS)
        assert outcome == "timed out"
        assert await _bodies(engine) == ["late"]

    async def test_a_caller_cancelled_as_its_commit_begins_hears_what_happened(
        self, engine: AsyncEngine
    ) -> None:
        told: list[str] = []

        async def write(body: str) -> None:
            async with engine.connect() as conn:
                await conn.execute(text("INSERT INTO notes (body) VALUES (:b)"), {"b": body})
                # Cancelled at the last moment: the COMMIT is handed to the connection's
                # thread as the cancellation arrives. Either it had not started (cancelled,
                # nothing written) or it had (it finishes, and its caller is told so).
                asyncio.current_task().cancel()  # type: ignore[union-attr]
                await conn.commit()
                told.append(body)

        for n in range(20):
            writer = asyncio.create_task(write(f"w{n}"))
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(writer, BOUNDED_SECONDS)
        assert sorted(await _bodies(engine)) == sorted(told)


class TestDurability:
    async def test_every_connection_flushes_each_commit_in_wal_mode(
        self, engine: AsyncEngine
    ) -> None:
        async with engine.connect() as conn:
            settings = {
                name: (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar_one()
                for name in ("synchronous", "journal_mode", "foreign_keys", "busy_timeout")
            }
        assert settings == {
            "synchronous": 2,  # FULL: a commit returns once it is on disk
            "journal_mode": "wal",
            "foreign_keys": 1,
            "busy_timeout": 30000,
        }

    async def test_a_commit_is_visible_to_another_process_once_it_returns(
        self, engine: AsyncEngine
    ) -> None:
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO notes (body) VALUES ('durable')"))
        reader = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import sqlite3, sys; print(sqlite3.connect(sys.argv[1])"
            ".execute('SELECT body FROM notes').fetchall())",
            _database_file(engine),
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(reader.communicate(), BOUNDED_SECONDS)
        assert out.strip() == b"[('durable',)]"
