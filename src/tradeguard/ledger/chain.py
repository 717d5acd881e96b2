"""Hash chain over ledger events; leaves use RFC 6962 section 2.1 leaf hashing.

leaf_n  = SHA-256(0x00 || canonical_event_n)        (an RFC 6962 Merkle leaf hash)
chain_n = SHA-256(chain_{n-1} || uint64_be(n) || leaf_n), chain_0 = 32 zero bytes

Using the RFC 6962 leaf hash means the same leaves later form the Merkle tree whose signed
tree heads allow offline inclusion and consistency proofs, without re-hashing history.
Binding the sequence number into each link means rows cannot be swapped or renumbered.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tradeguard.core.errors import LedgerIntegrityError

GENESIS_HASH = bytes(32)
LEAF_PREFIX = b"\x00"


def leaf_hash(body: bytes) -> bytes:
    digest = hashlib.sha256(LEAF_PREFIX)
    digest.update(body)
    return digest.digest()


def chain_hash(previous: bytes, seq: int, leaf: bytes) -> bytes:
    digest = hashlib.sha256(previous)
    digest.update(seq.to_bytes(8, "big"))
    digest.update(leaf)
    return digest.digest()


class EventBodyNotBytes(LedgerIntegrityError):
    """A stored event body that is not a byte string: rewritten behind the triggers."""

    slug = "event-body-not-bytes"
    title = "An audit event's stored body is not bytes"


class EventBodyUnreadable(LedgerIntegrityError):
    """A stored event body that is not a JSON object: rewritten behind the triggers."""

    slug = "event-body-unreadable"
    title = "An audit event's stored body is not a JSON object"


def stored_document(value: object, *, seq: int) -> dict[str, Any]:
    """An event body parsed: the JSON object every appended event is, or an error naming the
    sequence (one line) for bytes rewritten into anything else."""
    body = stored_body(value, seq=seq)
    try:
        document = json.loads(body)
    except ValueError:  # not JSON, or not UTF-8
        document = None
    if not isinstance(document, dict):
        raise EventBodyUnreadable(
            f"the event at seq {seq} has a body that is not a JSON object: it was altered "
            "after it was chained (run `tradeguard audit verify`)"
        )
    return document


def stored_body(value: object, *, seq: int) -> bytes:
    """An event body as the database driver returned it, checked to be bytes.

    The column is a BLOB (bytea on PostgreSQL), but SQLite stores whatever a statement
    writes: a body rewritten with replace() comes back as TEXT, or as a number. Such a body
    is not the one that was chained, so it is refused as tampering, never encoded or hashed.
    """
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise EventBodyNotBytes(
        f"the event at seq {seq} has a body that is not stored as bytes: it was altered "
        "after it was chained (run `tradeguard audit verify`)"
    )
