"""Cost of the account-takeover signals per sign-in (ATO-1), in microseconds. Prints one JSON
object.

    .venv/bin/python bench/takeover.py [--sign-ins N] [--postgres URL]

- `geolocate_us`: one offline lookup (geoip2fast, country and network) of a public address.
- `signals_us`: the pure rules over a history of 50 sign-ins (new device, country, network,
  impossible travel) after the lookup: what the defence adds in CPU to each sign-in.
- `assess_us`: `TakeoverDefence.signed_in` on a migrated database, in its own transaction
  with commit: history query, the sign-in row, signal and assessment ledger events, and the
  response (step-up, prompt email) for the sign-ins that score. SQLite always; PostgreSQL
  with --postgres (a scratch schema, dropped after).
Median and p99 of single calls; run it on an idle machine (the load average is printed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text

from _machine import machine_info  # bench/ is on sys.path as the script's directory
from tradeguard.access.domain import Role
from tradeguard.config import Settings
from tradeguard.core.clock import NS_PER_SECOND, SystemClock
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory
from tradeguard.db.migrate import upgrade
from tradeguard.fraud.container import build_fraud, policy_from
from tradeguard.fraud.domain import PastSignIn, SignInFacts, sign_in_signals
from tradeguard.fraud.geo import OfflineGeoLocator
from tradeguard.identity.common import RequestInfo, SignIn
from tradeguard.identity.container import start_identity
from tradeguard.identity.password_hashing import Argon2Parameters
from tradeguard.trading.container import build_trading

# Public addresses in four countries (MaxMind's test addresses and well-known resolvers).
ADDRESSES = ("81.2.69.142", "2.125.160.216", "89.160.20.112", "8.8.8.8", "1.1.1.1")
PASSWORD = "violet tractor juggles quietly"  # noqa: S105 - a benchmark input, not a secret


def summary(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "median_us": round(statistics.median(ordered) / 1000, 2),
        "p99_us": round(p99 / 1000, 2),
    }


def pure(sign_ins: int) -> dict[str, Any]:
    locator = OfflineGeoLocator()
    started = time.perf_counter()
    locator.load()
    load_seconds = time.perf_counter() - started
    policy = policy_from(Settings(_env_file=None))  # type: ignore[call-arg]
    history = []
    for n in range(50):
        where = locator.locate(ADDRESSES[n % 2])
        if where is None:
            raise SystemExit("the offline database did not place a public test address")
        history.append(
            PastSignIn(
                n * NS_PER_SECOND,
                f"device-{n % 3}",
                where.country,
                where.network,
                where.latitude,
                where.longitude,
            )
        )
    history.reverse()
    lookups, signals = [], []
    for n in range(sign_ins):
        ip = ADDRESSES[n % len(ADDRESSES)]
        start = time.perf_counter_ns()
        where = locator.locate(ip)
        middle = time.perf_counter_ns()
        facts = SignInFacts(3600 * NS_PER_SECOND, f"device-{n % 5}", where)
        sign_in_signals(facts, history, policy)
        end = time.perf_counter_ns()
        lookups.append(middle - start)
        signals.append(end - start)
    return {
        "database_load_seconds": round(load_seconds, 3),
        "geolocate_us": summary(lookups),
        "signals_us": summary(signals),
    }


async def assess(database: str, sign_ins: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(data_dir=Path(scratch), _env_file=None)  # type: ignore[call-arg]
        schema = None
        if database == "sqlite":
            engine = create_engine(settings.main_database_url)
            admin = None
        else:
            schema = "bench_" + secrets.token_hex(4)
            admin = create_engine(database, pool_size=1)
            async with admin.begin() as conn:
                await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            engine = create_engine(database, pg_schema=schema)
        try:
            await upgrade(engine)
            clock = SystemClock()
            ids = IdGenerator(clock)
            sessions = session_factory(engine)
            identity = await start_identity(
                settings,
                clock=clock,
                ids=ids,
                sessions=sessions,
                argon2=Argon2Parameters(time_cost=1, memory_cost_kib=1024, parallelism=1),
            )
            trading = build_trading(
                settings, clock=clock, ids=ids, sessions=sessions, with_venue=False
            )
            fraud = build_fraud(settings, identity=identity, trading=trading)
            await fraud.warm()
            async with identity.unit_of_work() as session:
                user = await identity.accounts.create_user(
                    session,
                    username="bench",
                    email="bench@example.com",
                    password=PASSWORD,
                    role=Role.TRADER,
                    email_verified=True,
                )
            timings = []
            responses: dict[str, int] = {}
            for n in range(sign_ins):
                # Mostly home, now and then a new device or another country.
                ip = ADDRESSES[0] if n % 10 else ADDRESSES[n // 10 % len(ADDRESSES)]
                sign_in = SignIn(
                    user_id=user.id,
                    session_id=ids.new_str(),
                    device_id="home" if n % 7 else f"device-{n}",
                    role=Role.TRADER.value,
                    at_ns=clock.now_ns(),
                    request=RequestInfo(ip=ip, user_agent="bench"),
                )
                start = time.perf_counter_ns()
                async with fraud.unit_of_work() as session:
                    await fraud.defence.signed_in(session, sign_in)
                timings.append(time.perf_counter_ns() - start)
            async with fraud.unit_of_work() as session:
                rows = await session.execute(
                    text("SELECT response, count(*) FROM fraud_sign_ins GROUP BY response")
                )
                responses = {str(r[0]): int(r[1]) for r in rows}
            return {"assess_us": summary(timings), "responses": responses}
        finally:
            await engine.dispose()
            if admin is not None:
                async with admin.begin() as conn:
                    await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                await admin.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sign-ins", type=int, default=300, help="sign-ins per measurement")
    parser.add_argument("--postgres", help="a PostgreSQL URL to measure on as well")
    args = parser.parse_args()
    report: dict[str, Any] = {
        "benchmark": "takeover_signals_per_sign_in",
        "machine": {**machine_info(), "load_average_1m_at_start": round(os.getloadavg()[0], 2)},
        "sign_ins": args.sign_ins,
        "pure": pure(args.sign_ins * 10),
        "sqlite": await assess("sqlite", args.sign_ins),
    }
    if args.postgres:
        report["postgresql"] = await assess(args.postgres, args.sign_ins)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
