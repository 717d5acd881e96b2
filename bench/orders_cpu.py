"""CPU per order placed, measured in process (less sensitive to machine load than the HTTPS
benchmark's rates). Prints one JSON object.

    python bench/orders_cpu.py [--orders 3000] [--clients 16] [--accounts 24]
                               [--profile FILE] [--postgres URL]

The real app (every middleware, the trading desk, group commit, the venue) runs in this
process on a scratch SQLite file (WAL, synchronous=FULL) or, with --postgres, a scratch
PostgreSQL schema. A trader signs in with TOTP; `--clients` tasks then place resting limit
buys round-robin over `--accounts` funded accounts, each request handed straight to the
ASGI app (no TLS, no HTTP parsing: what is left is the application's own cost), as
bench/orders_http.py's wrk does over HTTPS. Background workers (ledger sequencer, market
simulator) are off, so only the order path runs.

Reported: CPU time of the whole process (all threads) per order, wall time per order, the
orders per group-commit transaction and, from a second short phase, SQL statements per
order. `--profile FILE` writes a cProfile of the event loop's thread during the measured
phase (the profiler roughly doubles the CPU time; the CPU figures come from a run without
it).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.support.api import Api, running_api  # noqa: E402
from tests.support.trading import (  # noqa: E402
    add_instrument,
    funded_account,
    signed_in_trader,
    trading_of,
)

from _machine import machine_info  # noqa: E402 - bench/ is on sys.path as the script's dir
from _scratch import scratch_engine  # noqa: E402
from tradeguard.config import Settings  # noqa: E402
from tradeguard.core.clock import FrozenClock  # noqa: E402
from tradeguard.db.migrate import upgrade  # noqa: E402

SYMBOL = "AAPL"
# As bench/orders_http.py: each account may place up to 64 orders a second.
RISK = {
    "risk_max_orders_per_second": 64,
    "risk_burst_max_orders": 64,
    "risk_burst_window_seconds": 1,
    "risk_duplicate_window_ms": 1,
}


class RunningClock(FrozenClock):
    """Real time passing from a start point; `advance` (used to sign in with a fresh TOTP
    step) moves it further forward."""

    def __init__(self) -> None:
        super().__init__(time.time_ns())
        self._origin = time.monotonic_ns()

    def now_ns(self) -> int:
        return super().now_ns() + time.monotonic_ns() - self._origin


class AsgiOrders:
    """Order requests handed straight to the ASGI app, as a server would hand them."""

    def __init__(self, api: Api, token: str) -> None:
        self.app = api.app
        self.headers = [
            (b"host", b"bench"),
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-type", b"application/json"),
        ]
        self.statuses: dict[int, int] = {}

    async def place(self, account: str, client_order_id: str, quantity: int, cents: int) -> None:
        body = json.dumps(
            {
                "client_order_id": client_order_id,
                "symbol": SYMBOL,
                "side": "buy",
                "type": "limit",
                "time_in_force": "day",
                "quantity": quantity,
                "limit_price": f"225.{cents:02d}",
            }
        ).encode()
        path = f"/api/v1/accounts/{account}/orders"
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "https",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [*self.headers, (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 40000),
            "server": ("bench", 443),
        }
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # the client stays connected
            raise AssertionError("unreachable")

        status = 0

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await self.app(scope, receive, send)
        self.statuses[status] = self.statuses.get(status, 0) + 1


async def drive(orders: AsgiOrders, accounts: list[str], *, count: int, clients: int) -> None:
    """`clients` concurrent clients placing `count` orders in all."""
    counter = iter(range(count))
    tag = secrets.token_hex(3)

    async def client() -> None:
        for n in counter:
            account = accounts[n % len(accounts)]
            await orders.place(account, f"b{tag}-{n}", (n % 3) + 1, n % 97)

    await asyncio.gather(*(client() for _ in range(clients)))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tradeguard-bench-") as scratch:
        data_dir = Path(scratch) / "var"
        settings = Settings(  # type: ignore[call-arg]
            data_dir=data_dir, market_hours="always", _env_file=None, **RISK
        )
        async with scratch_engine(data_dir, args.postgres) as engine:
            await upgrade(engine)
            async with (
                running_api(settings, engine, RunningClock()) as api,
                api.client() as client,
            ):
                return await measure(api, client, args)


async def measure(api: Api, client: httpx.AsyncClient, args: argparse.Namespace) -> dict[str, Any]:
    await add_instrument(api, SYMBOL, "232.00", max_quantity=1_000_000)
    trader = await signed_in_trader(api, client, "bench")
    accounts = [await funded_account(api, trader, "5000000") for _ in range(args.accounts)]
    orders = AsgiOrders(api, trader.access)
    intake = trading_of(api).desk.intake
    await drive(orders, accounts, count=max(args.orders // 5, 200), clients=args.clients)

    batches, jobs = intake.batches, intake.jobs
    profiler = cProfile.Profile() if args.profile else None
    cpu, wall = time.process_time(), time.perf_counter()
    if profiler is not None:
        profiler.enable()
    await drive(orders, accounts, count=args.orders, clients=args.clients)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    batch_count, job_count = intake.batches - batches, intake.jobs - jobs

    statements = 0

    def count(*_: Any) -> None:
        nonlocal statements
        statements += 1

    event.listen(api.engine.sync_engine, "before_cursor_execute", count)
    sample = 200
    await drive(orders, accounts, count=sample, clients=args.clients)
    event.remove(api.engine.sync_engine, "before_cursor_execute", count)

    return {
        "benchmark": "orders_cpu",
        "database": api.engine.dialect.name,
        "orders": args.orders,
        "clients": args.clients,
        "accounts": args.accounts,
        "statuses": {str(k): v for k, v in sorted(orders.statuses.items())},
        "cpu_ms_per_order": round(1000 * cpu / args.orders, 3),
        "wall_ms_per_order": round(1000 * wall / args.orders, 3),
        "orders_per_s_in_process": round(args.orders / wall, 1),
        "orders_per_transaction": round(job_count / batch_count, 2) if batch_count else None,
        "statements_per_order": round(statements / sample, 2),
        "profiled": bool(args.profile),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "machine": machine_info(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=3000, help="orders measured")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients")
    parser.add_argument("--accounts", type=int, default=24, help="funded accounts")
    parser.add_argument("--profile", help="write a cProfile of the measured phase here")
    parser.add_argument("--postgres", help="a PostgreSQL URL (a scratch schema is used)")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
