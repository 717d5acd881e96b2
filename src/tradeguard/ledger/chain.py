"""Hash chain over ledger events; leaves use RFC 6962 section 2.1 leaf hashing.

leaf_n  = SHA-256(0x00 || canonical_event_n)        (an RFC 6962 Merkle leaf hash)
chain_n = SHA-256(chain_{n-1} || uint64_be(n) || leaf_n), chain_0 = 32 zero bytes

Using the RFC 6962 leaf hash means the same leaves later form the Merkle tree whose signed
tree heads allow offline inclusion and consistency proofs, without re-hashing history.
Binding the sequence number into each link means rows cannot be swapped or renumbered.
"""

from __future__ import annotations

import hashlib

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
