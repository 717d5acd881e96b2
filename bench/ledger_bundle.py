"""Offline audit bundles: `tradeguard audit export` and `audit verify --bundle` at growing sizes.

Usage: python bench/ledger_bundle.py [--events 100000,1000000] [--backends sqlite,postgresql]
           [--postgres URL] [--keep DIR]
Prints one JSON object. Each ledger is filled in bulk and chained by the real sequencer (as in
bench/ledger_verify.py), a checkpoint is signed, then the two commands run as they would for
an operator, each in a process of its own: wall time, entries/s, CPU time and the process's
peak resident memory. A command that held its entries in memory would grow with the size;
streaming keeps the peak flat (compare with `--help`, the same process doing nothing).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info
from ledger_verify import chained_events, fill
from tradeguard.config import Settings
from tradeguard.core.clock import SystemClock
from tradeguard.db.engine import async_url, create_engine
from tradeguard.db.migrate import upgrade
from tradeguard.ledger.tree.service import LedgerTree


def run_measured(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run `python -m tradeguard ARGS` and read its own resource use (wait4)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "tradeguard", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    stdout = process.stdout.read().decode() if process.stdout else ""
    stderr = process.stderr.read().decode() if process.stderr else ""
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{args[:2]} failed: {stderr.strip() or stdout.strip()}")
    return {
        "wall_s": round(wall, 3),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "stdout": stdout,
    }


def rates(events: int, run: dict[str, Any], idle: dict[str, Any]) -> dict[str, int | None]:
    """Entries per second of wall time, and per CPU-second once the interpreter and the CLI
    are loaded (what `--help` costs: seconds on a loaded machine, and it varies by tenths,
    so under half a second of work beyond it the rate is not given)."""
    working = run["cpu_s"] - idle["cpu_s"]
    return {
        "entries_per_s": round(events / run["wall_s"]),
        "entries_per_cpu_s_after_startup": round(events / working) if working >= 0.5 else None,
    }


async def prepare(url: str, data_dir: Path, events: int) -> None:
    engine = create_engine(url)
    try:
        await upgrade(engine)
        if await chained_events(engine) != events:
            raise RuntimeError("the database holds another ledger: start from an empty one")
        settings = Settings(data_dir=data_dir, database_url=url, _env_file=None)  # type: ignore[call-arg]
        await LedgerTree.from_settings(settings, engine, clock=SystemClock()).sign_checkpoint()
    finally:
        await engine.dispose()


async def filled(url: str, events: int) -> None:
    engine = create_engine(url)
    try:
        await upgrade(engine)
        if await chained_events(engine) == 0:
            await fill(engine, events)
    finally:
        await engine.dispose()


async def empty_postgres_database(base: str, name: str) -> str:
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    admin = create_async_engine(async_url(base), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            found = await conn.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            )
            if not found:
                await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await admin.dispose()
    return url


async def drop_postgres_database(base: str, name: str) -> None:
    admin = create_async_engine(async_url(base), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    finally:
        await admin.dispose()


async def measure(backend: str, events: int, args: argparse.Namespace, scratch: Path) -> Any:
    data_dir = scratch / f"{backend}_{events}"
    data_dir.mkdir(parents=True, exist_ok=True)
    if backend == "sqlite":
        url = f"sqlite:///{data_dir / 'tradeguard.db'}"
    else:
        url = await empty_postgres_database(args.postgres, f"bench_bundle_{events}")
    await filled(url, events)
    await prepare(url, data_dir, events)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TRADEGUARD_")},
        "TRADEGUARD_DATABASE_URL": url,
    }
    bundle = scratch / f"bundle_{backend}_{events}"
    shutil.rmtree(bundle, ignore_errors=True)
    vkeys = run_measured(["audit", "keys", "list", "--data-dir", str(data_dir)], env)
    (scratch / "ledger.vkeys").write_text(vkeys["stdout"])
    idle = run_measured(["audit", "export", "--help"], env)
    export = run_measured(
        ["audit", "export", str(bundle), "--json", "--data-dir", str(data_dir)], env
    )
    offline = {k: v for k, v in env.items() if k != "TRADEGUARD_DATABASE_URL"}
    verify = run_measured(
        [
            "audit",
            "verify",
            "--bundle",
            str(bundle),
            "--public-key",
            str(scratch / "ledger.vkeys"),
            "--json",
        ],
        offline,
    )
    report = json.loads(verify.pop("stdout"))
    if not report["ok"] or report["verified"] != events:
        raise RuntimeError(f"the bundle did not verify: {report['detail']}")
    export.pop("stdout")
    idle.pop("stdout")
    size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())
    if args.keep is None:
        shutil.rmtree(bundle)
        if backend == "postgresql":
            await drop_postgres_database(args.postgres, f"bench_bundle_{events}")
    return {
        "bundle_mb": round(size / 2**20, 1),
        "idle_process": idle,
        "export": {**export, **rates(events, export, idle)},
        "verify": {**verify, **rates(events, verify, idle)},
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", default="100000,1000000")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--keep", type=Path, default=None)
    args = parser.parse_args()
    result: dict[str, Any] = {
        "benchmark": "ledger_bundle",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    with tempfile.TemporaryDirectory() as tmp:
        scratch = args.keep or Path(tmp)
        for backend in args.backends.split(","):
            result[backend] = {}
            for events in (int(n) for n in args.events.split(",")):
                result[backend][str(events)] = await measure(backend, events, args, scratch)
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["machine"] = machine_info()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
