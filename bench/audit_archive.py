"""Sealed archive speed: `audit seal` (read, re-verify, compress, encrypt, sign, write once) and
`audit archive verify` (decrypt, decompress, re-hash, check against the database).

Usage: python bench/audit_archive.py [--events 200000] [--segment-events 100000]
           [--backends sqlite,postgresql] [--postgres URL]
Prints one JSON object: per backend, events/s and MB/s of event bytes (before compression)
for sealing and for verifying, the compression ratio, and the process CPU time beside the
wall clock (on a shared machine the wall clock measures our share of it), with the load
average before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info
from ledger_verify import fill
from tradeguard.config import Settings
from tradeguard.core.clock import SystemClock
from tradeguard.crypto.keyring import LocalKeyring
from tradeguard.db.engine import create_engine
from tradeguard.db.migrate import upgrade
from tradeguard.ledger.archive.keys import KeyringSegmentKeys
from tradeguard.ledger.archive.service import LedgerArchive
from tradeguard.ledger.domain import Party


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


async def measure(
    url: str, schema: str | None, args: argparse.Namespace, scratch: Path
) -> dict[str, Any]:
    engine = create_engine(url, pg_schema=schema)
    try:
        await upgrade(engine)
        await fill(engine, args.events)
        settings = Settings(  # type: ignore[call-arg]
            data_dir=scratch / (schema or "sqlite"),
            ledger_archive_segment_events=args.segment_events,
            _env_file=None,
        )
        keys = KeyringSegmentKeys(LocalKeyring(secrets.token_bytes(32)))
        archive = LedgerArchive.from_settings(settings, engine, clock=SystemClock(), keys=keys)
        load_before = os.getloadavg()
        cpu, wall = cpu_seconds(), time.perf_counter()
        report = await archive.seal(actor=Party("operator", "bench"))
        seal_wall, seal_cpu = time.perf_counter() - wall, cpu_seconds() - cpu
        sealed_events = sum(s.count for s in report.segments)
        plain = sum(s.plain_bytes for s in report.segments)
        stored = sum(s.file_bytes for s in report.segments)
        cpu, wall = cpu_seconds(), time.perf_counter()
        verified = await archive.verify()
        verify_wall, verify_cpu = time.perf_counter() - wall, cpu_seconds() - cpu
        assert verified.ok, verified.failure  # noqa: S101 - a benchmark of a failing archive is void
        return {
            "events_sealed": sealed_events,
            "segments": len(report.segments),
            "plain_mb": round(plain / 1e6, 1),
            "file_mb": round(stored / 1e6, 1),
            "compression_ratio": round(plain / stored, 2),
            "seal": {
                "wall_s": round(seal_wall, 2),
                "cpu_s": round(seal_cpu, 2),
                "events_per_s": round(sealed_events / seal_wall),
                "mb_per_s": round(plain / 1e6 / seal_wall, 1),
                "events_per_cpu_s": round(sealed_events / seal_cpu),
            },
            "verify": {
                "wall_s": round(verify_wall, 2),
                "cpu_s": round(verify_cpu, 2),
                "events_per_s": round(sealed_events / verify_wall),
                "mb_per_s": round(plain / 1e6 / verify_wall, 1),
                "events_per_cpu_s": round(sealed_events / verify_cpu),
            },
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        }
    finally:
        await engine.dispose()


async def main(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": machine_info(), "events": args.events}
    with tempfile.TemporaryDirectory() as scratch:
        for backend in args.backends.split(","):
            if backend == "sqlite":
                url = f"sqlite:///{Path(scratch) / 'bench.db'}"
                results["sqlite"] = await measure(url, None, args, Path(scratch))
            elif backend == "postgresql":
                schema = f"bench_archive_{secrets.token_hex(4)}"
                admin = create_engine(args.postgres, pool_size=1)
                async with admin.begin() as conn:
                    await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
                try:
                    results["postgresql"] = await measure(
                        args.postgres, schema, args, Path(scratch)
                    )
                finally:
                    async with admin.begin() as conn:
                        await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                    await admin.dispose()
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--segment-events", type=int, default=100_000)
    parser.add_argument("--backends", default="sqlite")
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "TRADEGUARD_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1/test"
        ),
    )
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=2))
