"""Withdrawal requests per second through every check, on SQLite and PostgreSQL.

    python bench/funds.py [--requests N] [--customers N] [--clients N] [--postgres URL]

Prints one JSON object. The real app runs in process (httpx over ASGI, every middleware) on a
scratch SQLite file (WAL) or, with --postgres, a scratch PostgreSQL schema. `--customers`
customers sign in with TOTP, add a phone (SMS factor), get a funded cash account and a bank
account confirmed with its micro-deposits. The holds are set to zero and the limits and
quotas out of reach, so every request passes every check and is accepted: the fresh-factor
check, the customer's funds lock, the frozen check, the destination, the phone, the cooling
periods (three lookups), the day and week limit sums, the withdrawable cash, then the cash
moved to the withdrawing book, the ledger events, both codes sent (email and SMS outbox) and
the refuse link emailed; each request one transaction. `--clients` tasks send requests in
parallel, spread over the customers (requests of one customer queue on its lock, by design).

Reported: requests per second (wall), CPU milliseconds per request, and the mean and p99
latency. The issue names no baseline; the order path (bench/orders_cpu.py) is the nearest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.support.api import running_api  # noqa: E402
from tests.support.funds import Customer, add_bank, customer, request_withdrawal  # noqa: E402

from _machine import machine_info  # noqa: E402 - bench/ is on sys.path as the script's dir
from _scratch import scratch_engine  # noqa: E402
from tradeguard.config import Settings  # noqa: E402
from tradeguard.core.clock import FrozenClock  # noqa: E402
from tradeguard.db.migrate import upgrade  # noqa: E402

OPEN = {
    "funds_new_account_cooling_hours": 0,
    "funds_security_change_cooling_hours": 0,
    "funds_new_destination_hold_hours": 0,
    "funds_daily_withdrawal_limit": Decimal(10) ** 12,
    "funds_weekly_withdrawal_limit": Decimal(10) ** 12,
    "funds_review_threshold": Decimal(10) ** 12,
    "sms_max_per_user": 1000,
    "sms_max_per_number": 1000,
    "sms_max_per_network": 1000,
}


async def drive(
    customers: list[Customer], *, count: int, clients: int, start: int
) -> tuple[list[float], dict[int, int]]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue = iter(range(start, start + count))

    async def client(index: int) -> None:
        who = customers[index % len(customers)]
        for n in queue:
            began = time.perf_counter()
            response = await request_withdrawal(who, "1.00", key=f"b{n}")
            latencies.append(time.perf_counter() - began)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    await asyncio.gather(*(client(i) for i in range(clients)))
    return latencies, statuses


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tradeguard-bench-") as scratch:
        data_dir = Path(scratch) / "var"
        settings = Settings(data_dir=data_dir, _env_file=None, **OPEN)  # type: ignore[arg-type]
        async with scratch_engine(data_dir, args.postgres) as engine:
            await upgrade(engine)
            clock = FrozenClock(time.time_ns())
            async with running_api(settings, engine, clock) as api, api.client() as http:
                customers = []
                for i in range(args.customers):
                    who = await customer(
                        api, http, f"bench{i}", phone=f"+1415555{i:04d}", cash="10000000"
                    )
                    await add_bank(api, who, f"0001234{i:05d}")
                    customers.append(who)
                warm = max(args.requests // 10, 50)
                await drive(customers, count=warm, clients=args.clients, start=0)
                cpu, wall = time.process_time(), time.perf_counter()
                latencies, statuses = await drive(
                    customers, count=args.requests, clients=args.clients, start=warm
                )
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                latencies.sort()
                return {
                    "benchmark": "funds_withdrawal_requests",
                    "database": engine.dialect.name,
                    "requests": args.requests,
                    "customers": args.customers,
                    "clients": args.clients,
                    "statuses": {str(k): v for k, v in sorted(statuses.items())},
                    "requests_per_s": round(args.requests / wall, 1),
                    "cpu_ms_per_request": round(1000 * cpu / args.requests, 3),
                    "latency_ms_mean": round(1000 * statistics.fmean(latencies), 2),
                    "latency_ms_p99": round(
                        1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 2
                    ),
                    "load_average_1m": round(os.getloadavg()[0], 2),
                    "machine": machine_info(),
                }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--customers", type=int, default=8)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--postgres", help="a PostgreSQL URL (a scratch schema is used)")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args)), indent=2))


if __name__ == "__main__":
    main()
