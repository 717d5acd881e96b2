"""A database outage, for real: PostgreSQL behind a TCP proxy that is cut and restored, and a
SQLite path that cannot be opened. Requests get 503 + Retry-After and are retried once when
nothing was committed; background workers back off; both log state changes, not floods."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from prometheus_client import CollectorRegistry
from sqlalchemy import func, make_url, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import POSTGRES_URL, _drop_schema, _postgres_engine
from tests.support.api import PASSWORD, TEST_ARGON2
from tests.support.failures import LogLineWaiter, SignallingObserver
from tests.support.tcp_proxy import TcpProxy, tcp_proxy
from tests.unit.web.conftest import serving
from tradeguard.access.container import build_access
from tradeguard.access.tasks import run_expiry
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.core.errors import PROBLEM_BASE
from tradeguard.core.ids import IdGenerator
from tradeguard.core.workers import BackoffPolicy, FailureTracker
from tradeguard.crypto.keyring import LocalKeyring
from tradeguard.db.availability import Outage, classify_outage, unavailable_reason
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.db.migrate import upgrade
from tradeguard.identity.models import User
from tradeguard.identity.tasks import run_housekeeping
from tradeguard.ledger.sequencer import LedgerSequencer
from tradeguard.ledger.service import Ledger
from tradeguard.notify.senders import FileEmailSender, FileSmsProvider
from tradeguard.notify.service import Notifier
from tradeguard.notify.tasks import OutboxDispatcher
from tradeguard.trading.container import build_trading
from tradeguard.trading.tasks import run_maintenance, watch_control
from tradeguard.web.app import create_app
from tradeguard.web.metrics import ComponentMetrics
from tradeguard.web.outage import COMPONENT, RETRY_AFTER_SECONDS
from tradeguard.web.problems import PROBLEM_CONTENT_TYPE

LOGIN = {"login": "alice", "password": PASSWORD}
OUTAGE_LOGGER = "tradeguard.web.outage"
WAIT_SECONDS = 10


@dataclass
class DownDatabase:
    """A database that is down until `restore()`; `secrets` must never reach a client or log."""

    engine: AsyncEngine
    restore: Callable[[], Awaitable[None]]
    secrets: tuple[str, ...]


@pytest.fixture
async def down_database(db_backend: str, tmp_path: Path) -> AsyncIterator[DownDatabase]:
    """SQLite: the database path is a directory, so it cannot be opened (restore puts a
    migrated file there). PostgreSQL: a migrated schema reached through a proxy that has
    been cut, so connections are refused (restore listens again)."""
    if db_backend == "sqlite":
        path = tmp_path / "down.db"
        path.mkdir()
        engine = create_engine(f"sqlite:///{path}")

        async def put_a_database_there() -> None:
            path.rmdir()
            await upgrade(engine)

        yield DownDatabase(engine, put_a_database_there, (str(path), "sqlite"))
        await engine.dispose()
        return
    migrated, schema = await _postgres_engine()
    try:
        await upgrade(migrated)
        url = make_url(POSTGRES_URL)
        async with tcp_proxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
            await proxy.cut()
            proxied = url.set(port=proxy.port).render_as_string(hide_password=False)
            engine = create_engine(proxied, pg_schema=schema)
            try:
                yield DownDatabase(engine, proxy.restore, (f":{proxy.port}", "asyncpg", schema))
            finally:
                await engine.dispose()
    finally:
        await migrated.dispose()
        await _drop_schema(schema)


@pytest.fixture
async def proxied_postgres() -> AsyncIterator[tuple[AsyncEngine, TcpProxy]]:
    """A migrated PostgreSQL schema reached through a working proxy."""
    migrated, schema = await _postgres_engine()
    try:
        await upgrade(migrated)
        url = make_url(POSTGRES_URL)
        async with tcp_proxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
            proxied = url.set(port=proxy.port).render_as_string(hide_password=False)
            engine = create_engine(proxied, pg_schema=schema)
            try:
                yield engine, proxy
            finally:
                await engine.dispose()
    finally:
        await migrated.dispose()
        await _drop_schema(schema)


@pytest.fixture
async def stalling_postgres() -> AsyncIterator[tuple[AsyncEngine, TcpProxy]]:
    """Like `proxied_postgres`, with the server's one-second statement timeout."""
    migrated, schema = await _postgres_engine()
    try:
        await upgrade(migrated)
        url = make_url(POSTGRES_URL)
        async with tcp_proxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
            proxied = url.set(port=proxy.port).render_as_string(hide_password=False)
            engine = create_engine(proxied, pg_schema=schema, command_timeout=1.0)
            try:
                yield engine, proxy
            finally:
                proxy.flow()
                await engine.dispose()
    finally:
        await migrated.dispose()
        await _drop_schema(schema)


def api_app(settings: Settings, clock: FrozenClock, engine: AsyncEngine) -> FastAPI:
    return create_app(settings, clock=clock, engine=engine, argon2=TEST_ARGON2, run_workers=False)


def records_of(caplog: pytest.LogCaptureFixture, logger: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == logger]


def metric(text_exposition: str, name: str, component: str) -> float:
    prefix = f'{name}{{component="{component}"}} '
    for line in text_exposition.splitlines():
        if line.startswith(prefix):
            return float(line.removeprefix(prefix))
    raise AssertionError(f"{prefix!r} not exposed")


class TestAServerThatStopsAnswering:
    """Found by the review of #6: with packets dropped (not refused), requests hung until the
    client gave up. A statement timeout turns the silence into a prompt 503."""

    @pytest.mark.postgres
    async def test_a_black_holed_database_answers_503_within_the_statement_timeout(
        self,
        stalling_postgres: tuple[AsyncEngine, TcpProxy],
        settings: Settings,
        clock: FrozenClock,
    ) -> None:
        engine, proxy = stalling_postgres
        async with serving(api_app(settings, clock, engine)) as client:
            warm = await client.post("/api/v1/auth/login", json=LOGIN)
            proxy.stall()
            async with asyncio.timeout(20):
                stalled = await client.post("/api/v1/auth/login", json=LOGIN)
        assert warm.status_code == 401
        assert stalled.status_code == 503
        assert stalled.headers["retry-after"] == str(RETRY_AFTER_SECONDS)


class TestRequestsDuringAnOutage:
    async def test_a_database_route_answers_503_problem_with_retry_after(
        self, down_database: DownDatabase, settings: Settings, clock: FrozenClock
    ) -> None:
        async with serving(api_app(settings, clock, down_database.engine)) as client:
            response = await client.post("/api/v1/auth/login", json=LOGIN)
        assert response.status_code == 503
        assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
        assert response.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
        body = response.json()
        assert body["type"] == PROBLEM_BASE + "service-unavailable"
        assert body["instance"] == "/api/v1/auth/login"
        for secret in down_database.secrets:
            assert secret not in response.text

    @pytest.mark.spec("IR-1")
    async def test_an_outage_is_one_log_line_and_a_metric_not_a_traceback_per_request(
        self,
        down_database: DownDatabase,
        settings: Settings,
        clock: FrozenClock,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.INFO)
        async with serving(api_app(settings, clock, down_database.engine)) as client:
            statuses = [(await client.post("/api/v1/auth/login", json=LOGIN)).status_code]
            statuses += [(await client.get("/api/v1/auth/sessions")).status_code]
            statuses += [(await client.post("/api/v1/auth/login", json=LOGIN)).status_code]
            statuses += [(await client.post("/api/v1/auth/login", json=LOGIN)).status_code]
            exposition = (await client.get("/metrics")).text
        # The sessions route refuses the anonymous caller before it needs the database.
        assert statuses == [503, 401, 503, 503]
        (line,) = records_of(caplog, OUTAGE_LOGGER)
        assert line.levelno == logging.WARNING
        assert line.getMessage().startswith(f"{COMPONENT} failing: database ")
        assert not [record for record in caplog.records if record.exc_info]
        assert "unhandled error" not in caplog.text
        for secret in down_database.secrets:
            assert secret not in caplog.text
        assert metric(exposition, "tradeguard_component_failures_total", COMPONENT) == 3
        assert metric(exposition, "tradeguard_component_failing", COMPONENT) == 1

    @pytest.mark.spec("IR-1")
    async def test_once_the_database_is_back_requests_succeed_and_recovery_is_logged_once(
        self,
        down_database: DownDatabase,
        settings: Settings,
        clock: FrozenClock,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.INFO)
        async with serving(api_app(settings, clock, down_database.engine)) as client:
            assert (await client.post("/api/v1/auth/login", json=LOGIN)).status_code == 503
            await down_database.restore()
            # alice does not exist: the generic 401 proves the database answered.
            assert (await client.post("/api/v1/auth/login", json=LOGIN)).status_code == 401
            assert (await client.post("/api/v1/auth/login", json=LOGIN)).status_code == 401
            exposition = (await client.get("/metrics")).text
        failing, recovered = records_of(caplog, OUTAGE_LOGGER)
        assert "failing" in failing.getMessage()
        assert recovered.getMessage().startswith(f"{COMPONENT} recovered after 1 failed")
        assert metric(exposition, "tradeguard_component_failing", COMPONENT) == 0


class TestASQLiteFileThatCannotBeOpened:
    async def test_a_failed_connect_leaves_no_driver_thread_behind(self, tmp_path: Path) -> None:
        """Found in CI: aiosqlite stopped its worker thread after a failed connect without
        waiting; the thread then answered the test's closed event loop and died with "Event
        loop is closed" during a later test. The in-loop driver (db/sqlite_inloop.py) waits
        for the connection's thread after a failed connect."""
        path = tmp_path / "down.db"
        path.mkdir()
        engine = create_engine(f"sqlite:///{path}")
        before = {thread.ident for thread in threading.enumerate()}
        try:
            for _ in range(3):
                with pytest.raises(DBAPIError):
                    async with engine.connect():
                        pass
        finally:
            await engine.dispose()
        left = [t.name for t in threading.enumerate() if t.ident not in before]
        assert not [name for name in left if name.startswith("tradeguard-sqlite")]


class TestRetryInsideTheRequest:
    @pytest.mark.postgres
    async def test_a_reset_connection_is_retried_once_and_the_body_replayed(
        self,
        proxied_postgres: tuple[AsyncEngine, TcpProxy],
        settings: Settings,
        clock: FrozenClock,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """PostgreSQL only: a network path that drops one connection has no SQLite analogue."""
        engine, proxy = proxied_postgres
        proxy.refuse_next(1)
        async with serving(api_app(settings, clock, engine)) as client:
            response = await client.post(
                "/api/v1/auth/register",
                json={"username": "alice", "email": "alice@example.com", "password": PASSWORD},
            )
        assert response.status_code == 201, response.text
        assert proxy.accepted >= 2
        async with unit_of_work(session_factory(engine)) as session:
            assert await session.scalar(select(func.count()).select_from(User)) == 1
        assert records_of(caplog, OUTAGE_LOGGER) == []

    async def test_a_request_that_failed_before_any_commit_runs_again_with_the_same_body(
        self,
        engine: AsyncEngine,
        down_database: DownDatabase,
        settings: Settings,
        clock: FrozenClock,
    ) -> None:
        app = api_app(settings, clock, engine)
        bodies: list[bytes] = []

        @app.post("/test/first-attempt-finds-the-database-down")
        async def flaky(request: Request) -> dict[str, int]:
            bodies.append(await request.body())
            target = down_database.engine if len(bodies) == 1 else engine
            async with target.connect() as connection:
                await connection.execute(text("SELECT 1"))
            return {"attempts": len(bodies)}

        async with serving(app) as client:
            response = await client.post(
                "/test/first-attempt-finds-the-database-down", content=b'{"order": 42}'
            )
        assert response.status_code == 200
        assert response.json() == {"attempts": 2}
        assert bodies == [b'{"order": 42}', b'{"order": 42}']

    async def test_a_request_that_attempted_a_commit_is_not_run_again(
        self,
        engine: AsyncEngine,
        down_database: DownDatabase,
        settings: Settings,
        clock: FrozenClock,
    ) -> None:
        app = api_app(settings, clock, engine)
        attempts: list[int] = []

        @app.post("/test/commit-then-outage")
        async def commit_then_outage() -> None:
            attempts.append(1)
            async with unit_of_work(session_factory(engine)) as session:
                await session.execute(text("SELECT 1"))
            async with down_database.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))

        async with serving(app) as client:
            response = await client.post("/test/commit-then-outage")
        assert response.status_code == 503
        assert response.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
        assert attempts == [1]

    async def test_an_error_that_is_not_an_outage_stays_an_internal_error(
        self,
        engine: AsyncEngine,
        settings: Settings,
        clock: FrozenClock,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        app = api_app(settings, clock, engine)
        attempts: list[int] = []

        @app.get("/test/bad-sql")
        async def bad_sql() -> None:
            attempts.append(1)
            async with engine.connect() as connection:
                await connection.execute(text("SELECT * FROM no_such_table"))

        async with serving(app) as client:
            response = await client.get("/test/bad-sql")
        assert response.status_code == 500
        assert response.json()["type"] == PROBLEM_BASE + "internal-error"
        assert "retry-after" not in response.headers
        assert attempts == [1]
        assert records_of(caplog, OUTAGE_LOGGER) == []


WorkerRun = Callable[[asyncio.Event, FailureTracker], Awaitable[None]]

# Tiny delays so a test sees the back-off grow to its cap within a second.
TEST_BACKOFF = BackoffPolicy(base_seconds=0.01, cap_seconds=0.04)


def worker(name: str, engine: AsyncEngine, clock: FrozenClock, tmp_path: Path) -> WorkerRun:
    """The real background worker `name`, on `engine`, ready to run with a tracker."""
    if name == "ledger-sequencer":
        sequencer = LedgerSequencer(engine, interval_ms=10, clock=clock)
        return lambda stop, tracker: sequencer.run_forever(stop, tracker=tracker)
    if name == "notify-dispatcher":
        dispatcher = OutboxDispatcher(
            engine=engine,
            keyring=LocalKeyring.load_or_create(tmp_path / "keys" / "notify.key"),
            email_sender=FileEmailSender(tmp_path / "mailbox"),
            sms_provider=FileSmsProvider(tmp_path / "sms", clock=clock),
            clock=clock,
        )
        return lambda stop, tracker: dispatcher.run_forever(10, stop, tracker=tracker)
    sessions = session_factory(engine)
    if name == "access-expiry":
        ids = IdGenerator(clock)
        access = build_access(
            Settings(data_dir=tmp_path / "var", _env_file=None),  # type: ignore[call-arg]
            clock=clock,
            ids=ids,
            ledger=Ledger(clock=clock, ids=ids),
            notifier=Notifier(
                clock=clock,
                ids=ids,
                keyring=LocalKeyring.load_or_create(tmp_path / "keys" / "master.key"),
            ),
            sessions=sessions,
        )
        return lambda stop, tracker: run_expiry(
            access, stop=stop, interval_seconds=0.01, tracker=tracker
        )
    if name in {"trading-control-watch", "trading-maintenance"}:
        trading = build_trading(
            Settings(data_dir=tmp_path / "var", _env_file=None),  # type: ignore[call-arg]
            clock=clock,
            ids=IdGenerator(clock),
            sessions=sessions,
            with_venue=False,
        )
        if name == "trading-control-watch":
            return lambda stop, tracker: watch_control(trading, stop, tracker)
        return lambda stop, tracker: run_maintenance(trading, stop, tracker)
    return lambda stop, tracker: run_housekeeping(
        sessions, clock, interval_seconds=0.01, stop=stop, tracker=tracker
    )


WORKERS = {
    "ledger-sequencer": "tradeguard.ledger.sequencer",
    "notify-dispatcher": "tradeguard.notify.tasks",
    "identity-housekeeping": "tradeguard.identity.tasks",
    "access-expiry": "tradeguard.access.tasks",
    "trading-control-watch": "tradeguard.trading.tasks",
    "trading-maintenance": "tradeguard.trading.tasks",
}


class TestBackgroundWorkersDuringAnOutage:
    @pytest.mark.spec("IR-1")
    @pytest.mark.parametrize("name", list(WORKERS))
    async def test_a_worker_backs_off_to_the_cap_logs_failing_and_recovered_once_each(
        self,
        name: str,
        down_database: DownDatabase,
        clock: FrozenClock,
        tmp_path: Path,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.INFO)
        registry = CollectorRegistry()
        observer = SignallingObserver(ComponentMetrics(registry))
        tracker = FailureTracker(
            name,
            logger=logging.getLogger(WORKERS[name]),
            clock=clock,
            policy=TEST_BACKOFF,
            observer=observer,
            describe=unavailable_reason,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(
            worker(name, down_database.engine, clock, tmp_path)(stop, tracker)
        )
        try:
            await observer.wait_for(lambda: observer.failures >= 6)
            backoff = registry.get_sample_value(
                "tradeguard_component_backoff_seconds", {"component": name}
            )
            failures = registry.get_sample_value(
                "tradeguard_component_failures_total", {"component": name}
            )
            await down_database.restore()
            await observer.wait_for(lambda: not observer.failing)
        finally:
            stop.set()
            async with asyncio.timeout(WAIT_SECONDS):
                await task
        assert backoff == TEST_BACKOFF.cap_seconds
        assert failures is not None
        assert failures >= 6
        records = records_of(caplog, WORKERS[name])
        # One line when failing starts, one on recovery; in between, at most a line when the
        # kind of failure changes (a restored SQLite file is briefly there before its tables).
        failing, recovered = records[0], records[-1]
        assert all("still failing, now:" in r.getMessage() for r in records[1:-1])
        assert failing.levelno == logging.WARNING
        assert failing.getMessage().startswith(f"{name} failing: database ")
        assert recovered.getMessage().startswith(f"{name} recovered after ")
        assert not [record for record in caplog.records if record.exc_info]
        for secret in down_database.secrets:
            assert secret not in caplog.text
        assert registry.get_sample_value("tradeguard_component_failing", {"component": name}) == 0

    @pytest.mark.spec("IR-1")
    async def test_the_app_exposes_each_workers_failure_state_in_its_metrics(
        self, down_database: DownDatabase, settings: Settings, clock: FrozenClock
    ) -> None:
        app = create_app(settings, clock=clock, engine=down_database.engine, argon2=TEST_ARGON2)
        first_failures = LogLineWaiter(*(f"{name} failing" for name in WORKERS))
        root = logging.getLogger()
        root.addHandler(first_failures)
        try:
            async with serving(app) as client:
                # Each worker's first pass runs at start-up and fails at once.
                async with asyncio.timeout(WAIT_SECONDS):
                    await first_failures.seen.wait()
                exposition = (await client.get("/metrics")).text
        finally:
            root.removeHandler(first_failures)
        for name in WORKERS:
            assert metric(exposition, "tradeguard_component_failing", name) == 1
            assert metric(exposition, "tradeguard_component_failures_total", name) >= 1
            assert metric(exposition, "tradeguard_component_backoff_seconds", name) > 0
        assert metric(exposition, "tradeguard_component_failing", COMPONENT) == 0


class TestOutageClassification:
    """Real driver errors, sorted into outages (retryable or not) and everything else."""

    def test_a_lock_held_past_the_busy_timeout_is_an_outage_not_worth_an_immediate_retry(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "locked.db"
        with (
            contextlib.closing(sqlite3.connect(path, isolation_level=None)) as holder,
            contextlib.closing(sqlite3.connect(path, timeout=0, isolation_level=None)) as waiter,
        ):
            holder.execute("BEGIN IMMEDIATE")
            with pytest.raises(sqlite3.OperationalError) as busy:
                waiter.execute("BEGIN IMMEDIATE")
            holder.execute("ROLLBACK")
        assert classify_outage(busy.value) == Outage(
            "database unavailable: SQLITE_BUSY", retryable=False
        )

    def test_a_file_that_cannot_be_opened_is_a_retryable_outage(self, tmp_path: Path) -> None:
        with pytest.raises(sqlite3.OperationalError) as cannot_open:
            sqlite3.connect(tmp_path).close()
        assert classify_outage(cannot_open.value) == Outage(
            "database unavailable: SQLITE_CANTOPEN", retryable=True
        )

    def test_bad_sql_is_not_an_outage(self) -> None:
        with (
            contextlib.closing(sqlite3.connect(":memory:")) as connection,
            pytest.raises(sqlite3.OperationalError) as bad_sql,
        ):
            connection.execute("SELEC 1")
        assert classify_outage(bad_sql.value) is None
