"""A verification worker process: verifies one range of the chain and reports on stdout.

Run as `python -m tradeguard.ledger.verification.worker` by ledger/verification/parallel.py,
which writes the job (a `Job` as JSON) to its stdin; the worker prints `progress N` lines
(events of its range verified so far) and one final `result {json}` line.

The worker starts from the chain hash STORED at the range's predecessor (its anchor) and
reports the anchor with its result: the parent joins the ranges up by checking that each
range's anchor is the chain hash the range before it computed.
"""

from __future__ import annotations

import contextlib
import gc
import json
import sqlite3
import sys
from dataclasses import dataclass
from typing import Any

from tradeguard.ledger.chain import GENESIS_HASH
from tradeguard.ledger.verification import reads
from tradeguard.ledger.verification.walk import Failure, Stop, walk

MODULE = "tradeguard.ledger.verification.worker"


@dataclass(frozen=True, slots=True)
class Job:
    """One range to verify, as the parent sends it (JSON on stdin)."""

    dialect: str  # "postgresql" or "sqlite"
    connect: dict[str, Any]  # asyncpg.connect keyword arguments, or {"uri": read-only file URI}
    first: int
    last: int
    chunk: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a range's walk ended: `anchor` is None if the predecessor's row was not found."""

    anchor: bytes | None
    previous: bytes
    expected: int
    stop: Stop | None


def _progress(done: int) -> None:
    sys.stdout.write(f"progress {done}\n")
    sys.stdout.flush()


async def verify_postgres(job: Job) -> Outcome:
    import asyncpg  # noqa: PLC0415 - only PostgreSQL workers need the driver

    conn = await asyncpg.connect(**job.connect)
    try:
        previous: bytes | None = GENESIS_HASH
        if job.first > 1:
            previous = await conn.fetchval(reads.CHAIN_HASH_SQL_PG, job.first - 1)
        if previous is None:
            return Outcome(None, GENESIS_HASH, job.first, None)
        anchor, expected = previous, job.first
        # Fixed runs: after a run that ends short, the next one's first row is not the
        # expected sequence number, which the walk names as missing, as a run starting
        # there would.
        runs = reads.postgres_runs(conn, job.first, job.last, job.chunk)
        async with contextlib.aclosing(runs):
            async for rows, bodies in runs:
                previous, expected, stop = walk(rows, previous, expected, bodies)
                if stop is None and not rows:
                    stop = (expected, Failure.MISSING_SEQUENCE)
                if stop is not None:
                    return Outcome(anchor, previous, expected, stop)
                _progress(expected - job.first)
        if expected <= job.last:  # the range's last rows are gone
            return Outcome(anchor, previous, expected, (expected, Failure.MISSING_SEQUENCE))
        return Outcome(anchor, previous, expected, None)
    finally:
        await conn.close()


def verify_sqlite(job: Job) -> Outcome:
    conn = sqlite3.connect(job.connect["uri"], uri=True, timeout=30, isolation_level=None)
    try:
        # One read transaction: a single snapshot for the anchor and the whole range.
        conn.execute("BEGIN")
        previous: bytes | None = GENESIS_HASH
        if job.first > 1:
            found = conn.execute(reads.CHAIN_HASH_SQL_SQLITE, (job.first - 1,)).fetchone()
            previous = None if found is None else bytes(found[0])
        if previous is None:
            return Outcome(None, GENESIS_HASH, job.first, None)
        anchor, expected = previous, job.first
        cursor = conn.execute(reads.JOINED_SQL_SQLITE, (job.first, job.last))
        while expected <= job.last:
            rows = cursor.fetchmany(job.chunk)
            previous, expected, stop = walk(rows, previous, expected)
            if stop is None and not rows:
                stop = (expected, Failure.MISSING_SEQUENCE)
            if stop is not None:
                return Outcome(anchor, previous, expected, stop)
            _progress(expected - job.first)
        return Outcome(anchor, previous, expected, None)
    finally:
        conn.close()


def encode(outcome: Outcome) -> str:
    return json.dumps(
        {
            "anchor": outcome.anchor.hex() if outcome.anchor is not None else None,
            "previous": outcome.previous.hex(),
            "expected": outcome.expected,
            "stop": list(outcome.stop) if outcome.stop else None,
        }
    )


def main() -> None:
    # Every row read is a new tracked container (a record, a tuple) that lives until its run
    # is walked, so the cyclic collector would keep scanning them: a quarter of the CPU time.
    # This short-lived process creates no reference cycles worth collecting.
    gc.disable()
    job = Job(**json.loads(sys.stdin.buffer.read()))
    if job.dialect == "postgresql":
        import asyncio  # noqa: PLC0415 - SQLite workers do without the event loop's imports

        outcome = asyncio.run(verify_postgres(job))
    else:
        outcome = verify_sqlite(job)
    sys.stdout.write(f"result {encode(outcome)}\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
