"""The ledger's Merkle tree on the database: extended with each chained batch, read for
roots and proofs (RFC 9162 section 2.1; the stored layout is in layout.py)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from tradeguard.core.errors import LedgerIntegrityError
from tradeguard.ledger.tree import layout, merkle, repository
from tradeguard.ledger.tree.layout import GROUP, Span


async def extend_tree(conn: AsyncConnection, size: int, leaves: Sequence[bytes]) -> int:
    """Store the subtrees that appending `leaves` to a tree of `size` completes; called by the
    sequencer in the transaction that chains them. Returns how many nodes were stored.

    Most passes complete nothing (fewer than 16 leaves to the next group) and cost no query.
    """
    if size % GROUP + len(leaves) < GROUP:
        return 0
    spans = layout.pending_spans(size)
    found = await repository.read_spans(conn, spans)
    pending = {s.level: _nodes(found, s) for s in spans}
    nodes = layout.extend(size, pending, leaves)
    if nodes:
        await repository.insert_nodes(conn, nodes)
    return len(nodes)


def _nodes(found: dict[tuple[int, int], bytes], span: Span) -> list[bytes]:
    try:
        return [found[(span.level, i)] for i in range(span.first, span.end)]
    except KeyError:
        raise LedgerIntegrityError(
            f"the Merkle tree is missing stored level-{span.level} nodes "
            f"{span.first}..{span.end - 1}"
        ) from None


class TreeReader:
    """Roots and proofs of the stored tree at any size up to the chained size."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def range_hashes(self, ranges: Sequence[merkle.Range]) -> list[bytes]:
        """MTH(D[lo:hi]) for each range, from one read of the stored nodes they need."""
        pieces = [merkle.complete_subtrees(lo, hi) for lo, hi in ranges]
        spans = [layout.base_span(level, index) for part in pieces for level, index in part]
        found = await repository.read_spans(self._conn, layout.merged_spans(spans))
        hashes = []
        for part in pieces:
            subtree_hashes = []
            for level, index in part:
                span = layout.base_span(level, index)
                subtree_hashes.append(merkle.perfect_root(_nodes(found, span)))
            hashes.append(merkle.fold_right(subtree_hashes))
        return hashes

    async def root(self, size: int) -> bytes:
        if size == 0:
            return merkle.EMPTY_ROOT
        [digest] = await self.range_hashes([(0, size)])
        return digest

    async def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return await self.range_hashes(merkle.inclusion_ranges(index, size))

    async def consistency_proof(self, first: int, second: int) -> list[bytes]:
        if first == 0:
            return []
        return await self.range_hashes(merkle.consistency_ranges(first, second))

    async def root_and_proof(
        self, size: int, ranges: Sequence[merkle.Range]
    ) -> tuple[bytes, list[bytes]]:
        """The root at `size` and a proof's hashes, in one read."""
        if size == 0:
            return merkle.EMPTY_ROOT, await self.range_hashes(ranges)
        hashes = await self.range_hashes([(0, size), *ranges])
        return hashes[0], hashes[1:]
