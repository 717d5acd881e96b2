"""Offline verification of the audit ledger's hash chain (AUD-2 tamper-evidence)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tradeguard.db.engine import read_only
from tradeguard.ledger import repository
from tradeguard.ledger.chain import GENESIS_HASH, LEAF_PREFIX

CHUNK = 20_000


class Failure(StrEnum):
    """Why verification stopped; stable strings for scripts and alerts."""

    MISSING_SEQUENCE = "missing_sequence"
    EVENT_ALTERED = "event_altered"
    CHAIN_BROKEN = "chain_broken"
    HEAD_MISMATCH = "head_mismatch"
    UNCHAINED_EVENT = "unchained_event"


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


async def verify_chain(
    engine: AsyncEngine, *, progress: Callable[[int, int], None] | None = None
) -> VerifyReport:
    """Walk the chain from the genesis; name the first sequence number that does not hold.

    The sequencer's recorded state is read first, and exactly seq 1..state.last_seq is
    verified against the head it recorded: chain rows the sequencer commits while this runs
    are newer and ignored, so a live system never produces a false alarm (on PostgreSQL each
    statement here sees a newer snapshot; chain rows are append-only, so the prefix is fixed).
    """
    async with engine.connect() as conn:
        await read_only(conn)
        state = await repository.load_state(conn)
        top = state.last_seq
        unsequenced = await repository.count_after_cursor(conn, state)
        previous = GENESIS_HASH
        expected = 1
        # Fetch the next chunk while this one is hashed: the driver's I/O (aiosqlite's thread,
        # asyncpg's socket) then overlaps with the CPU work, which dominates otherwise.
        pending = _fetch(conn, expected, top)
        while expected <= top:
            rows = await pending
            pending = _fetch(conn, expected + len(rows), top)
            previous, expected, failure = _walk(rows, previous, expected)
            if failure is None and (not rows or (expected <= top and rows[-1][0] != expected - 1)):
                failure = (expected, Failure.MISSING_SEQUENCE)
            if failure is not None:
                pending.cancel()
                return _fail(*failure, previous, unsequenced)
            if progress is not None:
                progress(expected - 1, top)
        pending.cancel()
        # The sequencer's recorded head guards against a chain rewritten or cut short.
        if state.last_chain_hash != previous:
            return _fail(top, Failure.HEAD_MISMATCH, previous, unsequenced)
        # Every event the sequencer has passed must be in the chain: one inserted behind its
        # back (below the cursor) would otherwise never be chained nor reported. Each of the
        # top chain rows holds a distinct event at or below the cursor, so equal counts prove
        # it cheaply; only a mismatch pays for the anti-join that names the event.
        stray = None
        if await repository.count_through_cursor(conn, state) != top:
            stray = await repository.first_unchained_behind_cursor(conn, state)
        if stray is not None:
            return _fail(
                top + 1,
                Failure.UNCHAINED_EVENT,
                previous,
                unsequenced,
                verified=top,
                event_pk=stray.pk,
                event_id=stray.event_id,
            )
        return VerifyReport(True, top, top, previous.hex(), unsequenced)


def _fetch(conn: AsyncConnection, first: int, top: int) -> asyncio.Task[Sequence[Any]]:
    if first > top:
        empty: asyncio.Future[Sequence[Any]] = asyncio.get_running_loop().create_future()
        empty.set_result([])
        return asyncio.ensure_future(empty)
    return asyncio.ensure_future(repository.chain_range(conn, first, min(first + CHUNK - 1, top)))


def _walk(
    rows: Sequence[Any], previous: bytes, expected: int
) -> tuple[bytes, int, tuple[int, Failure] | None]:
    """Check one chunk; the same computation as chain.leaf_hash/chain_hash, inlined for speed."""
    sha256 = hashlib.sha256
    for seq, stored_leaf, stored_chain, body in rows:
        if seq != expected:
            return previous, expected, (expected, Failure.MISSING_SEQUENCE)
        leaf = sha256(LEAF_PREFIX + body).digest()
        if leaf != stored_leaf:
            return previous, expected, (seq, Failure.EVENT_ALTERED)
        link = sha256(previous + seq.to_bytes(8, "big") + leaf).digest()
        if link != stored_chain:
            return previous, expected, (seq, Failure.CHAIN_BROKEN)
        previous = link
        expected += 1
    return previous, expected, None


_DETAILS = {
    Failure.MISSING_SEQUENCE: "sequence {seq} is missing from the chain",
    Failure.EVENT_ALTERED: "event at sequence {seq} does not match its recorded hash",
    Failure.CHAIN_BROKEN: "chain link at sequence {seq} does not follow from the one before",
    Failure.HEAD_MISMATCH: (
        "the chain up to sequence {seq} does not end in the head the sequencer recorded"
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
) -> VerifyReport:
    done = max(seq - 1, 0) if verified is None else verified
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
    )
