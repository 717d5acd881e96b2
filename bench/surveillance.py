"""Market surveillance: events/s through every detector at once, and precision/recall per
detector on generated markets. Prints one JSON object.

    .venv/bin/python bench/surveillance.py [--seeds 1,2,3] [--rounds 5] [--stream-events N]

**Throughput.** A generated market (`surveillance/scenarios.py`, seed 1, 200 accounts, two
sessions) is turned into ledger documents before the clock starts, as the stream holds them
after reading a batch (decoded JSON). Each round times the stream's own work per event on
one core: skip the non-market events, parse the market ones (`parse_market_event`, with the
accounts' beneficial owners) and feed them to a fresh engine with every detector (MAN-1,
MAN-2, MAN-3, MAN-4, the book tracker; the scenario's staff accounts as MAN-4's insiders).
Reported per CPU-second of this process (what one core does) and per wall-clock second (the
machine is shared), median and best of the rounds; and the processing latency of the events
that completed a finding (perf_counter_ns around `feed`).

**Precision and recall.** `tradeguard surveillance evaluate` on each seed, with the default
parameters (the settings' defaults).

**The stream with its database** (`--stream-events`, SQLite): that many of the generated
market's documents appended to a fresh ledger (with their own timestamps), chained, then
read by the stream consumer in passes of the default batch: ledger events per second
through read, owner resolution, detection, alerts and checkpoint commits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _machine import machine_info  # bench/ is on sys.path as the script's directory
from tradeguard.config import Settings
from tradeguard.core.clock import SystemClock
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.db.migrate import upgrade
from tradeguard.ledger.domain import LedgerEvent, Party
from tradeguard.ledger.sequencer import LedgerSequencer
from tradeguard.ledger.service import Ledger
from tradeguard.surveillance.container import build_surveillance, parameters_from
from tradeguard.surveillance.domain import SurveillanceParameters
from tradeguard.surveillance.engine import SurveillanceEngine
from tradeguard.surveillance.evaluation import evaluate, scenario_parameters
from tradeguard.surveillance.events import MARKET_EVENT_TYPES, parse_market_event
from tradeguard.surveillance.owners import BeneficialOwners
from tradeguard.surveillance.scenarios import Scenario, ScenarioConfig, generate
from tradeguard.trading.container import build_trading


def _round(scenario: Scenario, params: SurveillanceParameters) -> dict[str, float]:
    owners = BeneficialOwners(scenario.account_users).owner
    engine = SurveillanceEngine(params)
    engine.set_owners(owners)
    market = frozenset(MARKET_EVENT_TYPES)
    documents = scenario.documents
    wall, cpu = time.perf_counter(), time.process_time()
    found = 0
    for seq, document in enumerate(documents, start=1):
        if document["type"] in market:
            event = parse_market_event(seq, document, owners)
            if event is not None:
                found += len(engine.feed(event))
    cpu = time.process_time() - cpu
    wall = time.perf_counter() - wall
    return {"cpu": cpu, "wall": wall, "findings": found}


def _latency(scenario: Scenario, params: SurveillanceParameters) -> dict[str, float]:
    owners = BeneficialOwners(scenario.account_users).owner
    engine = SurveillanceEngine(params)
    engine.set_owners(owners)
    market = frozenset(MARKET_EVENT_TYPES)
    every: list[int] = []
    completing: list[int] = []
    clock = time.perf_counter_ns
    for seq, document in enumerate(scenario.documents, start=1):
        if document["type"] not in market:
            continue
        began = clock()
        event = parse_market_event(seq, document, owners)
        findings = engine.feed(event) if event is not None else []
        spent = clock() - began
        every.append(spent)
        if findings:
            completing.append(spent)

    def quantiles(values: list[int]) -> dict[str, float]:
        ordered = sorted(values)
        pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000  # noqa: E731
        return {"p50_us": pick(0.5), "p99_us": pick(0.99), "max_us": ordered[-1] / 1000}

    return {"all_events": quantiles(every), "completing_a_finding": quantiles(completing)}


def throughput(rounds: int) -> dict[str, Any]:
    scenario = generate(ScenarioConfig(seed=1))
    # The scenario's staff accounts are MAN-4's insiders, as in the evaluation.
    params = scenario_parameters(scenario, SurveillanceParameters())
    market = sum(1 for d in scenario.documents if d["type"] in MARKET_EVENT_TYPES)
    results = [_round(scenario, params) for _ in range(rounds)]
    per_cpu = sorted(len(scenario.documents) / r["cpu"] for r in results)
    per_wall = sorted(len(scenario.documents) / r["wall"] for r in results)
    market_cpu = sorted(market / r["cpu"] for r in results)
    return {
        "ledger_events": len(scenario.documents),
        "market_events": market,
        "findings": results[0]["findings"],
        "ledger_events_per_cpu_second": {
            "median": round(statistics.median(per_cpu)),
            "best": round(per_cpu[-1]),
        },
        "market_events_per_cpu_second": {
            "median": round(statistics.median(market_cpu)),
            "best": round(market_cpu[-1]),
        },
        "ledger_events_per_wall_second": {
            "median": round(statistics.median(per_wall)),
            "best": round(per_wall[-1]),
        },
        "processing_latency": _latency(scenario, params),
    }


def quality(seeds: list[int]) -> list[dict[str, Any]]:
    params = SurveillanceParameters()
    rows = []
    for seed in seeds:
        report = evaluate(ScenarioConfig(seed=seed), params)
        rows.append(
            {
                "seed": seed,
                "detectors": {
                    name: {
                        key: row[key]
                        for key in (
                            "episodes",
                            "not_completed",
                            "detected",
                            "recall",
                            "alerts",
                            "true_alerts",
                            "precision",
                            "detection_delay_seconds",
                        )
                    }
                    for name, row in report["detectors"].items()
                },
                "near_misses_flagged": {
                    kind: f"{row['flagged']}/{row['episodes']}"
                    for kind, row in report["near_misses"].items()
                },
            }
        )
    return rows


class _ReplayClock:
    """The ledger's clock during the load: each event keeps its generated timestamp."""

    def __init__(self) -> None:
        self.now = 0

    def now_ns(self) -> int:
        return self.now

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()


async def stream(events: int) -> dict[str, Any]:
    scenario = generate(ScenarioConfig(seed=1))
    documents = scenario.documents[:events]
    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(data_dir=Path(scratch), _env_file=None)  # type: ignore[call-arg]
        engine = create_engine(settings.main_database_url)
        try:
            await upgrade(engine)
            sessions = session_factory(engine)
            replay = _ReplayClock()
            ledger = Ledger(clock=replay, ids=IdGenerator(SystemClock()))
            loaded = time.perf_counter()
            for start in range(0, len(documents), 1000):
                async with unit_of_work(sessions) as session:
                    for document in documents[start : start + 1000]:
                        replay.now = int(document["ts"])
                        await ledger.append(
                            session,
                            LedgerEvent(
                                type=document["type"],
                                data=document["data"],
                                actor=Party(**document["actor"]),
                                subject=Party(**document["subject"]),
                            ),
                        )
            await LedgerSequencer(engine).drain()
            loaded = time.perf_counter() - loaded
            clock = SystemClock()
            trading = build_trading(
                settings, clock=clock, ids=IdGenerator(clock), sessions=sessions, with_venue=False
            )
            services = build_surveillance(
                settings,
                clock=clock,
                ids=IdGenerator(clock),
                sessions=sessions,
                ledger=trading.deps.ledger,
                accounts=trading.accounts,
                orders=trading.orders,
            )
            wall, cpu = time.perf_counter(), time.process_time()
            result = await services.consumer.run()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        finally:
            await engine.dispose()
    return {
        "database": "sqlite",
        "ledger_events": result.events,
        "market_events": result.market_events,
        "alerts": result.alerts,
        "folded": result.folded,
        "batch": settings.surveillance_batch_size,
        "events_per_wall_second": round(result.events / wall),
        "events_per_cpu_second_of_this_process": round(result.events / cpu),
        "note": "accounts have no users in this database: owners are the accounts themselves",
        "load_seconds": round(loaded, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--stream-events", type=int, default=0)
    args = parser.parse_args()
    load_before = os.getloadavg()
    report: dict[str, Any] = {
        "machine": machine_info(),
        "load_average_before": [round(x, 2) for x in load_before],
        "defaults": repr(parameters_from(Settings(_env_file=None))),  # type: ignore[call-arg]
        "throughput": throughput(args.rounds),
        "quality": quality([int(s) for s in args.seeds.split(",") if s]),
    }
    if args.stream_events:
        report["stream"] = asyncio.run(stream(args.stream_events))
    report["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
