"""AML monitoring throughput: money movements and executions per second through every rule,
in memory (the pure rules) and through the monitor's stream on SQLite or PostgreSQL.

    python bench/aml.py [--people N] [--movements N] [--postgres URL]

Prints one JSON object. `rules`: synthetic movements of `--people` people (two accounts
each; ACH deposits mostly between 1,000 and 9,999, some withdrawals, executions) fed one by
one to `aml.domain.evaluate` with each person's history within the longest window, as the
monitor passes it: every rule runs on every movement. `stream`: the same kinds of movements
appended to the ledger as funds and trading record them (deposits credited, executions),
chained, then read by the monitor from its checkpoint: each movement stored, its person's
history read, every rule run, alerts and CTRs recorded with their ledger events; one
transaction per batch of 1,000 ledger events. Withdrawals are left out of the stream (each
needs funds' row; the rules treat them like deposits).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from collections import defaultdict
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.support.api import running_api  # noqa: E402
from tests.support.trading import SETUP  # noqa: E402

from _machine import machine_info  # noqa: E402 - bench/ is on sys.path as the script's dir
from _scratch import scratch_engine  # noqa: E402
from tradeguard.access.domain import Role  # noqa: E402
from tradeguard.aml.container import AmlServices  # noqa: E402
from tradeguard.aml.domain import (  # noqa: E402
    DAY_NS,
    AmlRules,
    Context,
    Movement,
    MovementKind,
    ProfileView,
    business_day,
    evaluate,
)
from tradeguard.config import Settings  # noqa: E402
from tradeguard.core.clock import FrozenClock  # noqa: E402
from tradeguard.db.engine import unit_of_work  # noqa: E402
from tradeguard.db.migrate import upgrade  # noqa: E402
from tradeguard.ledger.domain import LedgerEvent, Party  # noqa: E402
from tradeguard.ledger.sequencer import LedgerSequencer  # noqa: E402
from tradeguard.risk.domain import AccountType  # noqa: E402

START_NS = 1_767_225_600 * 1_000_000_000  # 2026-01-01 00:00 UTC


def _kind(rng: random.Random) -> MovementKind:
    roll = rng.random()
    if roll < 0.45:
        return MovementKind.DEPOSIT
    if roll < 0.55:
        return MovementKind.WITHDRAWAL
    return MovementKind.BUY if roll < 0.8 else MovementKind.SELL


def rules_round(people: int, movements: int, seed: int = 1) -> dict[str, Any]:
    rng = random.Random(seed)
    rules = AmlRules()
    tz = ZoneInfo(rules.timezone)
    profile = ProfileView(expected_monthly_funding=Decimal(20_000), from_profile=True)
    history: dict[str, list[Movement]] = defaultdict(list)
    ts = START_NS
    found = 0
    cpu = time.process_time()
    for seq in range(1, movements + 1):
        ts += rng.randint(1, 600) * 1_000_000_000
        person = f"u{rng.randrange(people)}"
        kind = _kind(rng)
        amount = (
            Decimal(rng.randint(1000, 9999))
            if kind.value in ("deposit", "withdrawal")
            else Decimal(rng.randint(100, 20_000))
        )
        move = Movement(
            id=f"m{seq}",
            seq=seq,
            user_id=person,
            account_id=f"{person}-{rng.randrange(2)}",
            kind=kind,
            amount=amount,
            ts_ns=ts,
            day=business_day(ts, tz),
            rail="ach" if kind.value in ("deposit", "withdrawal") else None,
            symbol="ACME" if kind.value in ("buy", "sell") else None,
        )
        mine = history[person]
        mine.append(move)
        floor = ts - (rules.lookback_days + 1) * DAY_NS
        while mine and mine[0].ts_ns < floor:
            mine.pop(0)
        previous = mine[-2].ts_ns if len(mine) > 1 else None
        found += len(
            evaluate(move, mine, Context(profile=profile, previous_activity_ns=previous), rules)
        )
    cpu = time.process_time() - cpu
    return {
        "movements": movements,
        "people": people,
        "findings": found,
        "movements_per_cpu_second": round(movements / cpu),
        "simulated_days": round((ts - START_NS) / DAY_NS, 1),
    }


async def stream(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tradeguard-bench-") as scratch:
        data_dir = Path(scratch) / "var"
        settings = Settings(data_dir=data_dir, _env_file=None)  # type: ignore[call-arg]
        async with scratch_engine(data_dir, args.postgres) as engine:
            await upgrade(engine)
            clock = FrozenClock(START_NS)
            async with running_api(settings, engine, clock) as api:
                identity = api.services
                trading = api.app.state.trading
                aml: AmlServices = api.app.state.aml
                accounts: list[str] = []
                async with identity.unit_of_work() as session:
                    for i in range(args.people):
                        await identity.accounts.create_user(
                            session,
                            username=f"bench{i}",
                            email=f"bench{i}@example.com",
                            password=f"bench-{i}-correct horse battery staple",
                            role=Role.TRADER,
                        )
                async with unit_of_work(trading.sessions) as session:
                    for i in range(args.people):
                        found = await identity.accounts.find_user(session, f"bench{i}")
                        if found is None:
                            continue
                        for _ in range(2):
                            account = await trading.accounts.open_account(
                                session,
                                user_id=found[0],
                                account_type=AccountType.CASH,
                                actor=SETUP,
                            )
                            accounts.append(account.id)
                rng = random.Random(2)
                ledger = trading.deps.ledger
                appended = 0
                for start in range(0, args.movements, 1000):
                    async with unit_of_work(trading.sessions) as session:
                        for n in range(start, min(args.movements, start + 1000)):
                            clock.advance(seconds=rng.randint(1, 600))
                            account = rng.choice(accounts)
                            if rng.random() < 0.5:
                                event = LedgerEvent(
                                    type="funds:deposit:credited",
                                    actor=Party("system", "bench"),
                                    subject=Party("account", account),
                                    data={
                                        "deposit_id": f"bench-{n}",
                                        "rail": "ach",
                                        "amount": str(rng.randint(1000, 9999)),
                                        "currency": "USD",
                                        "bank_account_id": None,
                                        "credited": True,
                                    },
                                )
                            else:
                                event = LedgerEvent(
                                    type="trading:execution:created",
                                    actor=Party("system", "bench"),
                                    subject=Party("account", account),
                                    data={
                                        "execution_id": f"bench-{n}",
                                        "order_id": f"order-{n}",
                                        "symbol": "ACME",
                                        "side": rng.choice(("buy", "sell")),
                                        "quantity": str(rng.randint(1, 200)),
                                        "price": "50.00",
                                    },
                                )
                            await ledger.append(session, event)
                            appended += 1
                await LedgerSequencer(engine, clock=clock).drain()
                cpu, wall = time.process_time(), time.perf_counter()
                result = await aml.consumer.run()
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                return {
                    "database": engine.dialect.name,
                    "people": args.people,
                    "accounts": len(accounts),
                    "ledger_events": result.events,
                    "movements": result.movements,
                    "alerts": result.alerts,
                    "folded": result.folded,
                    "ctrs": result.ctrs,
                    "movements_per_s": round(result.movements / wall, 1),
                    "cpu_ms_per_movement": round(1000 * cpu / max(1, result.movements), 3),
                    "simulated_days": round(
                        timedelta(seconds=(clock.now_ns() - START_NS) / 1e9).total_seconds()
                        / 86_400,
                        1,
                    ),
                }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=200)
    parser.add_argument("--movements", type=int, default=5000)
    parser.add_argument("--rule-movements", type=int, default=50_000)
    parser.add_argument("--postgres", help="a PostgreSQL URL (a scratch schema is used)")
    args = parser.parse_args()
    report = {
        "benchmark": "aml_monitoring",
        "rules": rules_round(args.people, args.rule_movements),
        "stream": asyncio.run(stream(args)),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "machine": machine_info(),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
