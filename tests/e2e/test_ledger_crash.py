"""Kill -9 during a sustained append load: on restart the ledger verifies and every
acknowledged event is in it (AUD-1, AUD-2; issue #9 "crash safety").

The load is order placements against a real `tradeguard serve --demo` process: a 201 means
the order and its audit event committed in one transaction. Each request carries its own
X-Request-ID, which the event records, so every acknowledged order is looked up in the
chain by (order id, request id). The sequencer runs every second here, so the kill finds
committed events not yet chained, and the restarted server's sequencer has to chain them.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from typer.testing import CliRunner, Result

from tests.e2e.demo_session import demo_trader
from tests.e2e.servers import RunningServer, running_server
from tests.support.databases import emptied_postgres_database
from tradeguard.cli.main import app
from tradeguard.db.engine import create_engine, read_only
from tradeguard.ledger import repository

pytestmark = pytest.mark.e2e

LOAD_ENV = {
    # Limits lifted so a load generator (not a person) can drive one account.
    "TRADEGUARD_RISK_MAX_ORDERS_PER_SECOND": "64",
    "TRADEGUARD_RISK_BURST_MAX_ORDERS": "64",
    "TRADEGUARD_RISK_BURST_WINDOW_SECONDS": "1",
    "TRADEGUARD_RISK_DUPLICATE_WINDOW_MS": "1",
    # Committed events wait up to a second for their chain position: the kill lands with
    # some of them unchained.
    "TRADEGUARD_LEDGER_SEQUENCER_INTERVAL_MS": "1000",
}
ACKNOWLEDGED_BEFORE_KILL = 30
WAIT_SECONDS = 20.0


def database_url(data_dir: Path, env: Mapping[str, str]) -> str:
    return env.get("TRADEGUARD_DATABASE_URL") or f"sqlite:///{data_dir / 'tradeguard.db'}"


async def _unchained(url: str) -> int:
    """Committed events the sequencer has not chained yet (read only, beside the server)."""
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            await read_only(conn)
            state = await repository.load_state(conn)
            return await repository.count_after_cursor(conn, state)
    finally:
        await engine.dispose()


def unchained(url: str) -> int:
    return asyncio.run(_unchained(url))


async def _read(url: str, sql: str, params: Mapping[str, object] | None = None) -> list[Any]:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            await read_only(conn)
            return list((await conn.execute(text(sql), dict(params or {}))).all())
    finally:
        await engine.dispose()


def last_event_pk(url: str) -> int:
    return int(asyncio.run(_read(url, "SELECT max(pk) FROM audit_event"))[0][0])


def not_chained_through(url: str, pk: int) -> int:
    """Events up to `pk` that have no chain position."""
    sql = (
        "SELECT count(*) FROM audit_event e WHERE e.pk <= :pk AND NOT EXISTS "
        "(SELECT 1 FROM audit_chain c WHERE c.event_pk = e.pk)"
    )
    return int(asyncio.run(_read(url, sql, {"pk": pk}))[0][0])


def chained_order_events(url: str) -> set[tuple[str, str | None]]:
    """(order id, request id) of every order event with a chain position."""
    sql = (
        "SELECT e.body FROM audit_chain c JOIN audit_event e ON e.pk = c.event_pk "
        "WHERE e.event_type LIKE 'trading:order:%'"
    )
    documents = [json.loads(bytes(row[0])) for row in asyncio.run(_read(url, sql))]
    return {(d["data"].get("order_id"), d.get("request_id")) for d in documents}


def audit_verify(data_dir: Path, env: Mapping[str, str]) -> Result:
    """`tradeguard audit verify --json`, run in this process: a fresh interpreter would spend
    seconds importing the CLI on a busy machine, and the command's code is the same."""
    return CliRunner().invoke(
        app, ["audit", "verify", "--json", "--data-dir", str(data_dir)], env=dict(env)
    )


def first_cash_account(server: RunningServer, headers: Mapping[str, str]) -> str:
    with httpx.Client(base_url=server.base_url, verify=server.client_context(), timeout=20) as api:
        accounts = api.get("/api/v1/accounts", headers=dict(headers)).json()
    return str(next(a["id"] for a in accounts if a["type"] == "cash"))


class OrderLoad:
    """Four clients placing orders until stopped or the server dies; records each order
    acknowledged (201) with the request id it was sent under."""

    def __init__(self, server: RunningServer, account: str, headers: Mapping[str, str]) -> None:
        self.server, self.account, self.headers = server, account, dict(headers)
        self.acknowledged: dict[str, str] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._all()))

    async def _client(self, worker: int) -> None:
        async with httpx.AsyncClient(
            base_url=self.server.base_url, verify=self.server.client_context(), timeout=5
        ) as api:
            n = 0
            while not self.stop.is_set():
                n += 1
                request_id = f"crash-{worker}-{n}"
                try:
                    response = await api.post(
                        f"/api/v1/accounts/{self.account}/orders",
                        json={
                            "client_order_id": request_id,
                            "symbol": "AAPL",
                            "side": "buy",
                            "type": "limit",
                            "time_in_force": "day",
                            "quantity": 1,
                            # Half rest below the market, half cross the offer and fill.
                            "limit_price": "225.00" if n % 2 else "240.00",
                        },
                        headers={**self.headers, "X-Request-ID": request_id},
                    )
                except httpx.HTTPError:
                    return  # the server died: nothing more is acknowledged
                if response.status_code == 201:
                    self.acknowledged[response.json()["id"]] = request_id

    async def _all(self) -> None:
        await asyncio.gather(*(self._client(w) for w in range(4)))

    def __enter__(self) -> OrderLoad:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def kill_under_load_then_restart(tmp_path: Path, env: Mapping[str, str]) -> None:
    data_dir = tmp_path / "var"
    url = database_url(data_dir, env)
    with running_server(data_dir, ["--demo"], via_cli=True, env=env) as server:
        trader = demo_trader(server, "alice")
        account = first_cash_account(server, trader.headers)
        with OrderLoad(server, account, trader.headers) as load:
            deadline = time.monotonic() + WAIT_SECONDS
            # Kill while orders are in flight AND committed events wait to be chained.
            while time.monotonic() < deadline and not (
                len(load.acknowledged) >= ACKNOWLEDGED_BEFORE_KILL and unchained(url) > 0
            ):
                time.sleep(0.02)
            server.process.send_signal(signal.SIGKILL)
            server.process.wait(timeout=10)
        acknowledged = dict(load.acknowledged)
        port = server.port
    assert len(acknowledged) >= ACKNOWLEDGED_BEFORE_KILL
    # Everything committed before the kill; some of it never got its chain position.
    last_pk = last_event_pk(url)
    backlog = not_chained_through(url, last_pk)
    assert backlog > 0

    with running_server(data_dir, ["--demo"], via_cli=True, env=env, port=port):
        # The restarted server's sequencer chains the backlog (the live server keeps
        # appending events of its own meanwhile: fills of the resting orders, for one).
        deadline = time.monotonic() + WAIT_SECONDS
        while not_chained_through(url, last_pk) > 0:
            assert time.monotonic() < deadline, "the restarted sequencer left the backlog"
            time.sleep(0.1)
        verified = audit_verify(data_dir, env)
    assert verified.exit_code == 0, verified.output
    report = json.loads(verified.output)
    assert report["ok"] is True
    assert report["verified"] >= len(acknowledged) + backlog
    chained = chained_order_events(url)
    missing = {order: rid for order, rid in acknowledged.items() if (order, rid) not in chained}
    assert missing == {}


@pytest.fixture
def postgres_database() -> str:
    """A database for the server alone (the sequencer's horizon is per database), kept
    between runs and emptied before each."""
    return emptied_postgres_database("crash")


class TestKillDuringAppendLoad:
    @pytest.mark.spec("AUD-1", "AUD-2")
    def test_sqlite_ledger_verifies_after_restart_with_every_acknowledged_event(
        self, tmp_path: Path
    ) -> None:
        kill_under_load_then_restart(tmp_path, LOAD_ENV)

    @pytest.mark.postgres
    @pytest.mark.spec("AUD-1", "AUD-2")
    def test_postgres_ledger_verifies_after_restart_with_every_acknowledged_event(
        self, tmp_path: Path, postgres_database: str
    ) -> None:
        kill_under_load_then_restart(
            tmp_path, {**LOAD_ENV, "TRADEGUARD_DATABASE_URL": postgres_database}
        )
