"""Synthetic audit ledgers and their offline bundles, for tests that need no database: the
entries are real event documents (RFC 8785 bytes), chained and hashed as the ledger does."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519

from tradeguard.ledger.bundle import format as fmt
from tradeguard.ledger.bundle.writer import BundleWriter
from tradeguard.ledger.canonical import canonical_bytes
from tradeguard.ledger.chain import GENESIS_HASH, chain_hash, leaf_hash
from tradeguard.ledger.domain import LedgerEvent, Party
from tradeguard.ledger.tree import merkle
from tradeguard.ledger.tree.note import Checkpoint, NoteSigner, sign_note

ORIGIN = "tradeguard.test/audit-ledger"


def new_signer(name: str = ORIGIN) -> NoteSigner:
    return NoteSigner(name, ed25519.Ed25519PrivateKey.generate())


def event_body(n: int) -> bytes:
    """An event as the ledger stores it; some hold text that canonical JSON must escape."""
    event = LedgerEvent(
        type="trading:order:placed",
        actor=Party("user", str(uuid.UUID(int=n + 1))),
        data={"n": n, "qty": "100", "note": "line one\nline two\t\u2028 Zoë" if n % 3 == 0 else ""},
    )
    document = event.envelope(
        event_id=str(uuid.UUID(int=(1 << 64) + n)), occurred_ns=1_700_000_000_000_000_000 + n
    )
    return canonical_bytes(document)


@dataclass
class SyntheticLedger:
    bodies: list[bytes]
    leaves: list[bytes]
    chains: list[bytes]
    signers: dict[int, NoteSigner]
    signer: NoteSigner
    origin: str = ORIGIN

    @classmethod
    def build(cls, count: int, *, signer: NoteSigner | None = None) -> SyntheticLedger:
        bodies = [event_body(n) for n in range(count)]
        leaves = [leaf_hash(body) for body in bodies]
        chains = []
        previous = GENESIS_HASH
        for seq, leaf in enumerate(leaves, start=1):
            previous = chain_hash(previous, seq, leaf)
            chains.append(previous)
        return cls(bodies, leaves, chains, {}, signer or new_signer())

    def root(self, size: int) -> bytes:
        return merkle.root(self.leaves[:size])

    def note(self, size: int) -> str:
        """The checkpoint at `size`, signed by the key that signs that size (default: ours)."""
        signer = self.signers.get(size, self.signer)
        return sign_note(Checkpoint(self.origin, size, self.root(size)).text, signer)

    def subtree(self, lo: int, hi: int) -> bytes:
        return merkle.root(self.leaves[lo:hi])

    def write_bundle(
        self,
        target: Path,
        *,
        checkpoints: Sequence[int],
        first: int = 1,
        last: int | None = None,
    ) -> Path:
        """A bundle of seq first..last with checkpoints at the given sizes (which must include
        one at or beyond last), as `tradeguard audit export` lays it out."""
        last = len(self.bodies) if last is None else last
        sizes = sorted(set(checkpoints))
        prefix = first - 1
        spans = [
            (index << level, (index + 1) << level)
            for level, index in (merkle.complete_subtrees(0, prefix) if prefix else [])
        ]
        steps = [
            fmt.ConsistencyStep(
                a,
                b,
                tuple(self.subtree(lo, hi) for lo, hi in merkle.consistency_ranges(a, b)),
            )
            for a, b in fmt.consistency_chain(last, sizes)
        ]
        with BundleWriter(target, first_seq=first) as writer:
            for seq in range(first, last + 1):
                writer.add_entry(
                    seq, self.bodies[seq - 1], self.leaves[seq - 1], self.chains[seq - 1]
                )
            keys = {s.key.vkey: s.key for s in [self.signer, *self.signers.values()]}
            return writer.commit(
                manifest=fmt.Manifest(
                    origin=self.origin,
                    first_seq=first,
                    last_seq=last,
                    checkpoints=tuple(sizes),
                    exported_at="2025-01-02T03:04:05.000000000Z",
                    generator="tests",
                ),
                proofs=fmt.Proofs(
                    prefix_size=prefix,
                    prefix_subtrees=tuple(self.subtree(lo, hi) for lo, hi in spans),
                    prefix_chain_hash=self.chains[prefix - 1] if prefix else GENESIS_HASH,
                    consistency=tuple(steps),
                ),
                checkpoints={size: self.note(size) for size in sizes},
                keys=list(keys.values()),
            )
