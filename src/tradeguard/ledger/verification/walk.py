"""Walking a run of the hash chain: the computation every verification path shares (pure).

The same computation as chain.leaf_hash/chain_hash, inlined for speed: verification reads
every row of the ledger, and per row it costs two SHA-256 computations in Python.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

from tradeguard.ledger.chain import LEAF_PREFIX


class Failure(StrEnum):
    """Why verification stopped; stable strings for scripts and alerts."""

    MISSING_SEQUENCE = "missing_sequence"
    EVENT_ALTERED = "event_altered"
    CHAIN_BROKEN = "chain_broken"
    HEAD_MISMATCH = "head_mismatch"
    UNCHAINED_EVENT = "unchained_event"
    # The chain hash stored where events were purged is not the one the purge recorded.
    PURGE_BOUNDARY = "purge_boundary"
    # A purge record the ledger does not back: no chained purge event names it, or its time
    # is not supported by the events around it (ledger/archive/purges.py).
    PURGE_UNSUPPORTED = "purge_unsupported"


Stop = tuple[int, Failure]
"""The first sequence number that does not hold, and why."""


def walk(
    rows: Iterable[Any],
    previous: bytes,
    expected: int,
    bodies: Mapping[int, bytes] | None = None,
) -> tuple[bytes, int, Stop | None]:
    """Check consecutive chain rows from sequence `expected`, whose predecessor's chain hash
    is `previous`; return the last chain hash computed, the next expected sequence number
    and where it stopped, if it did.

    Rows are (seq, leaf_hash, chain_hash, body), or with `bodies` (seq, leaf_hash,
    chain_hash, event_pk) and the bodies by event pk: a chain row whose event is gone counts
    as a missing sequence number, as it does when the two are read with a join.
    """
    sha256 = hashlib.sha256
    prefix = LEAF_PREFIX
    body: bytes | None
    for seq, stored_leaf, stored_chain, ref in rows:
        if seq != expected:
            return previous, expected, (expected, Failure.MISSING_SEQUENCE)
        if bodies is None:
            body = ref
        else:
            body = bodies.get(ref)
            if body is None:
                return previous, expected, (expected, Failure.MISSING_SEQUENCE)
        try:
            leaf = sha256(prefix + body).digest()
        except TypeError:
            # SQLite returns a body rewritten as TEXT (replace() makes one) or a number as
            # str or int: not the bytes that were chained, so the event was altered.
            return previous, expected, (seq, Failure.EVENT_ALTERED)
        if leaf != stored_leaf:
            return previous, expected, (seq, Failure.EVENT_ALTERED)
        link = sha256(previous + seq.to_bytes(8, "big") + leaf).digest()
        if link != stored_chain:
            return previous, expected, (seq, Failure.CHAIN_BROKEN)
        previous = link
        expected += 1
    return previous, expected, None
