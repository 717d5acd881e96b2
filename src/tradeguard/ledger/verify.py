"""Offline verification of the audit ledger's hash chain (AUD-2 tamper-evidence)."""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import aclosing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tradeguard.db.engine import CONNECT_TIMEOUT_SECONDS, read_only
from tradeguard.ledger import repository
from tradeguard.ledger.archive import repository as archive_repository
from tradeguard.ledger.archive.purges import check_purges
from tradeguard.ledger.chain import GENESIS_HASH
from tradeguard.ledger.tree.note import VerifierKey
from tradeguard.ledger.verification import parallel
from tradeguard.ledger.verification.walk import Failure, Stop, walk

__all__ = ["CHUNK", "Failure", "VerifyReport", "verify_chain"]

CHUNK = 20_000
# Below this many events verification stays in this process: starting a worker process costs
# about a tenth of a second, in which this process verifies some 20,000 events itself.
PARALLEL_MIN_EVENTS = 100_000
MAX_WORKERS = 4


@dataclass(frozen=True, slots=True)
class VerifyReport:
    ok: bool
    verified: int
    last_seq: int
    head_hash: str
    unsequenced: int
    first_bad_seq: int | None = None
    failure: Failure | None = None
    detail: str = ""
    unchained_event_pk: int | None = None
    # Events chained at or below this were purged after sealing (ledger/archive/): the walk
    # starts above it, from the chain hash the purge recorded there.
    purged_through: int = 0


Progress = Callable[[int, int], None]


async def verify_chain(
    engine: AsyncEngine,
    *,
    progress: Progress | None = None,
    workers: int | None = None,
    purge_keys: Sequence[VerifierKey] | None = None,
    origin: str = "",
) -> VerifyReport:
    """Walk the chain from the genesis; name the first sequence number that does not hold.

    The sequencer's recorded state is read first, and exactly seq 1..state.last_seq is
    verified against the head it recorded: chain rows the sequencer commits while this runs
    are newer and ignored, so a live system never produces a false alarm (on PostgreSQL each
    statement here sees a newer snapshot; chain rows are append-only, so the prefix is fixed).

    `workers` > 1 splits the chain into that many ranges verified by worker processes at
    once (see ledger/verification/); None picks one per core (at most MAX_WORKERS) for a
    chain of PARALLEL_MIN_EVENTS or more, and this process alone below that. The report is
    the same either way: the ranges are joined up in order, and the first that fails names
    the same sequence number as a walk from the genesis would.

    `purge_keys` (the log's public keys, `origin` its name): each purge's authorization is
    checked too (ledger/archive/purges.py); without them it is not.
    """
    async with engine.connect() as conn:
        await read_only(conn)
        state = await repository.load_state(conn)
        top = state.last_seq
        unsequenced = await repository.count_after_cursor(conn, state)
        # After a purge the walk starts from the purge's boundary, which must still be the
        # chain hash stored there (the chain rows outlive the purged events).
        horizon = await archive_repository.purge_horizon(conn)
        purged, start = horizon.through_seq, GENESIS_HASH
        if horizon.boundary_chain_hash is not None:
            stored = await archive_repository.chain_hash_at(conn, purged)
            if stored != horizon.boundary_chain_hash:
                return _fail(purged, Failure.PURGE_BOUNDARY, start, unsequenced, purged=purged)
            start = horizon.boundary_chain_hash
        count = _worker_count(workers, top - purged)
        target = await _worker_target(conn) if count > 1 else None
        if target is None:
            previous, stop = await _verify_range(
                conn, purged + 1, top, start, progress=progress, top=top
            )
        else:
            previous, stop = await _verify_in_workers(
                conn, target, (purged + 1, start), top, count=count, progress=progress
            )
        if stop is not None:
            return _fail(*stop, previous, unsequenced, purged=purged)
        # The sequencer's recorded head guards against a chain rewritten or cut short.
        if state.last_chain_hash != previous:
            return _fail(top, Failure.HEAD_MISMATCH, previous, unsequenced, purged=purged)
        # Every event the sequencer has passed must be in the chain: one inserted behind its
        # back (below the cursor) would otherwise never be chained nor reported. Each of the
        # chain rows above the purge holds a distinct event at or below the cursor, so equal
        # counts prove it cheaply; only a mismatch pays for the anti-join naming the event.
        stray = None
        if await repository.count_through_cursor(conn, state) != top - purged:
            stray = await repository.first_unchained_behind_cursor(conn, state)
        if stray is not None:
            return _fail(
                top + 1,
                Failure.UNCHAINED_EVENT,
                previous,
                unsequenced,
                verified=top - purged,
                event_pk=stray.pk,
                event_id=stray.event_id,
                purged=purged,
            )
        # Every purge record must be backed by the (now verified) chain's purge events.
        problem = await check_purges(conn, keys=purge_keys, origin=origin)
        if problem is not None:
            return VerifyReport(
                ok=False,
                verified=top - purged,
                last_seq=problem.through_seq,
                head_hash=previous.hex(),
                unsequenced=unsequenced,
                first_bad_seq=problem.through_seq,
                failure=Failure.PURGE_UNSUPPORTED,
                detail=problem.detail,
                purged_through=purged,
            )
        return VerifyReport(
            True, top - purged, top, previous.hex(), unsequenced, purged_through=purged
        )


async def _verify_range(
    conn: AsyncConnection,
    first: int,
    last: int,
    previous: bytes,
    *,
    progress: Progress | None,
    top: int,
) -> tuple[bytes, Stop | None]:
    """Walk seq first..last in this process from the chain hash before `first`."""
    expected = first
    with _collector_paused():
        while expected <= last:
            rows, bodies = await repository.chain_range(
                conn, expected, min(expected + CHUNK - 1, last)
            )
            previous, expected, stop = walk(rows, previous, expected, bodies)
            if stop is None and not rows:
                stop = (expected, Failure.MISSING_SEQUENCE)
            if stop is not None:
                return previous, stop
            if progress is not None:
                progress(expected - 1, top)
    return previous, None


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while rows stream through.

    Every row read is a new tracked container that lives until its run is walked, so the
    collector keeps scanning them: it added some 40% to the CPU per event. The walk creates no
    reference cycles; the process's other tasks may, and theirs are collected once this
    ends (within seconds: verification runs at hundreds of thousands of events a second).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


async def _verify_in_workers(
    conn: AsyncConnection,
    target: tuple[str, dict[str, Any]],
    start: tuple[int, bytes],
    top: int,
    *,
    count: int,
    progress: Progress | None,
) -> tuple[bytes, Stop | None]:
    """Verify ranges of the chain in worker processes and join them up in order.

    A worker starts from the chain hash stored before its range. Range k's result stands
    only if that stored hash is the one computed through range k-1 (the ranges join up); as
    every earlier range held, its walk is then exactly the walk from the genesis. Otherwise,
    and where a worker failed, this process walks the range itself from the computed hash.
    """
    dialect, connect = target
    first, previous = start
    ranges = parallel.split(top, count, first)
    report = None if progress is None else (lambda done: progress(done, top))
    async with aclosing(
        parallel.run(dialect, connect, ranges, chunk=CHUNK, progress=report)
    ) as results:
        async for (first, last), outcome in results:
            if outcome is None or outcome.anchor != previous:
                previous, stop = await _verify_range(
                    conn, first, last, previous, progress=progress, top=top
                )
            else:
                previous, stop = outcome.previous, outcome.stop
            if stop is not None:
                return previous, stop
    return previous, None


def _worker_count(workers: int | None, top: int) -> int:
    if workers is None:
        if top < PARALLEL_MIN_EVENTS:
            return 1
        workers = min(os.cpu_count() or 1, MAX_WORKERS)
    return max(1, min(workers, top))


async def _worker_target(conn: AsyncConnection) -> tuple[str, dict[str, Any]] | None:
    """How a worker process reaches this database (read only), or None if it cannot."""
    url = conn.engine.url
    if conn.dialect.name == "sqlite":
        database = url.database
        if not database or database == ":memory:" or database.startswith("file:"):
            return None
        return "sqlite", {"uri": _read_only_uri(database)}
    _, connect = conn.dialect.create_connect_args(url)
    search_path = (await conn.execute(text("SELECT current_setting('search_path')"))).scalar_one()
    connect = {
        **connect,
        "timeout": CONNECT_TIMEOUT_SECONDS,
        "server_settings": {
            "search_path": str(search_path),
            "application_name": "tradeguard-audit-verify",
            "default_transaction_read_only": "on",
            # The workers are the parallelism: a parallel plan per query would only make
            # them compete for the same cores.
            "max_parallel_workers_per_gather": "0",
        },
    }
    try:
        json.dumps(connect)
    except TypeError:  # a driver option that cannot travel to another process
        return None
    return "postgresql", connect


def _read_only_uri(database: str) -> str:
    """The SQLite file as a read-only URI, relative paths taken as this process takes them."""
    return Path(os.path.abspath(database)).as_uri() + "?mode=ro"


_DETAILS = {
    Failure.MISSING_SEQUENCE: "sequence {seq} is missing from the chain",
    Failure.EVENT_ALTERED: "event at sequence {seq} does not match its recorded hash",
    Failure.CHAIN_BROKEN: "chain link at sequence {seq} does not follow from the one before",
    Failure.HEAD_MISMATCH: (
        "the chain up to sequence {seq} does not end in the head the sequencer recorded"
    ),
    Failure.PURGE_BOUNDARY: (
        "the chain hash stored at sequence {seq}, where events were purged after sealing, is "
        "not the one the purge recorded"
    ),
    Failure.UNCHAINED_EVENT: (
        "event pk {event_pk} (id {event_id}) is behind the sequencer's cursor but not in the "
        "chain; the chain through sequence {verified} holds"
    ),
}


def _fail(
    seq: int,
    failure: Failure,
    previous: bytes,
    unsequenced: int,
    *,
    verified: int | None = None,
    event_pk: int | None = None,
    event_id: str | None = None,
    purged: int = 0,
) -> VerifyReport:
    done = max(seq - 1 - purged, 0) if verified is None else verified
    return VerifyReport(
        ok=False,
        verified=done,
        last_seq=seq,
        head_hash=previous.hex(),
        unsequenced=unsequenced,
        first_bad_seq=seq,
        failure=failure,
        detail=_DETAILS[failure].format(
            seq=seq, verified=done, event_pk=event_pk, event_id=event_id
        ),
        unchained_event_pk=event_pk,
        purged_through=purged,
    )
