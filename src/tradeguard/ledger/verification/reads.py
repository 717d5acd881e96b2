"""Reading runs of the chain with their event bodies, straight from the database drivers.

Verification reads every row of the ledger, so these queries bypass SQLAlchemy (its per-row
processing would triple their cost); they are still parameterized.

PostgreSQL reads a run as two index range scans, the chain rows by seq and then their events
by pk, joined here: the sequencer chains events in (transaction id, pk) order, so a run's
events lie in a narrow pk range. A join in SQL made the planner pick a hash join over a
scan of the whole event table for every run (a LATERAL subquery is flattened into the same
plan), which cost five times as much and grew with the ledger. SQLite has no such planner
choice: its join looks each body up by primary key, in process.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Sequence
from typing import Any

CHAIN_SQL_PG = (
    "SELECT seq, leaf_hash, chain_hash, event_pk FROM audit_chain "
    "WHERE seq >= $1 AND seq <= $2 ORDER BY seq"
)
BODIES_BY_RANGE_SQL_PG = "SELECT pk, body FROM audit_event WHERE pk >= $1 AND pk <= $2"
BODIES_BY_KEY_SQL_PG = "SELECT pk, body FROM audit_event WHERE pk = ANY($1::bigint[])"
CHAIN_HASH_SQL_PG = "SELECT chain_hash FROM audit_chain WHERE seq = $1"

# A body that is not a BLOB (TEXT written by hand; SQLite keeps what it is given) is read
# as NULL, never decoded: the walk names it (event_altered), where invalid UTF-8 in it would
# otherwise fail the whole read.
JOINED_SQL_SQLITE = (
    "SELECT c.seq, c.leaf_hash, c.chain_hash, "
    "CASE WHEN typeof(e.body) = 'blob' THEN e.body END FROM audit_chain c "
    "JOIN audit_event e ON e.pk = c.event_pk "
    "WHERE c.seq >= ? AND c.seq <= ? ORDER BY c.seq"
)
CHAIN_HASH_SQL_SQLITE = "SELECT chain_hash FROM audit_chain WHERE seq = ?"

# A run whose events spread over more than this many pks per event (events chained far from
# their neighbours, e.g. behind a long transaction) has its bodies read by key instead.
SPARSE_SPAN = 4


async def postgres_run(
    driver: Any, first: int, last: int
) -> tuple[Sequence[Any], dict[int, bytes]]:
    """Chain rows (seq, leaf_hash, chain_hash, event_pk) for seq in [first, last] in order,
    and the bodies of their events by pk, on an asyncpg connection."""
    chain = await driver.fetch(CHAIN_SQL_PG, first, last)
    return chain, await _bodies(driver, chain)


async def _bodies(driver: Any, chain: Sequence[Any]) -> dict[int, bytes]:
    if not chain:
        return {}
    keys = [row[3] for row in chain]
    low, high = min(keys), max(keys)
    if high - low < SPARSE_SPAN * len(keys):
        events = await driver.fetch(BODIES_BY_RANGE_SQL_PG, low, high)
    else:
        events = await driver.fetch(BODIES_BY_KEY_SQL_PG, keys)
    return dict(events)


async def postgres_runs(
    driver: Any, first: int, last: int, size: int
) -> AsyncGenerator[tuple[Sequence[Any], dict[int, bytes]]]:
    """`postgres_run` for [first, first + size - 1], [first + size, ...], ... up to `last`,
    pipelined: the next run's bodies are requested before this one is handed out, so the
    server reads them while the caller hashes (one query in flight at a time)."""
    starts = range(first, last + 1, size)
    if not starts:
        return
    chain = await driver.fetch(CHAIN_SQL_PG, first, min(first + size - 1, last))
    pending = asyncio.ensure_future(_bodies(driver, chain))
    try:
        for start in starts:
            current, bodies = chain, await pending
            following = start + size
            if following <= last:
                chain = await driver.fetch(CHAIN_SQL_PG, following, min(following + size - 1, last))
                pending = asyncio.ensure_future(_bodies(driver, chain))
                await asyncio.sleep(0)  # let it send the query before the caller walks
            yield current, bodies
    finally:
        if not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pending
