"""That a range of leaves is part of a signed RFC 9162 tree (section 2.1.1 hashing).

A segment's manifest carries the hashes of the subtrees of the checkpoint's tree that lie
wholly outside the segment's leaves, in the order a left-to-right walk of MTH meets them.
With the segment's own leaves they give the tree's root, so anyone holding the segment, its
manifest and the log's public key can check, offline, that these entries are leaves
`first_seq - 1 .. last_seq - 1` of the signed checkpoint. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from tradeguard.ledger.tree import merkle


def range_proof_ranges(lo: int, hi: int, size: int) -> list[merkle.Range]:
    """The subtrees [a, b) of the tree of `size` leaves, wholly outside [lo, hi), that sit
    beside the paths from the leaves of [lo, hi) to the root (0 <= lo < hi <= size)."""
    if not 0 <= lo < hi <= size:
        raise ValueError("a range proof needs 0 <= lo < hi <= size")
    found: list[merkle.Range] = []

    def visit(a: int, b: int) -> None:
        if b <= lo or a >= hi:
            found.append((a, b))
        elif not (lo <= a and b <= hi):
            k = merkle.split_point(b - a)
            visit(a, a + k)
            visit(a + k, b)

    visit(0, size)
    return found


def root_from_range(
    lo: int, hi: int, size: int, leaves: Sequence[bytes], proof: Sequence[bytes]
) -> bytes | None:
    """The tree's root from the leaves of [lo, hi) and the proof; None if the proof does not
    have exactly the hashes it needs."""
    if not 0 <= lo < hi <= size or len(leaves) != hi - lo:
        return None
    given: Iterator[bytes] = iter(proof)
    missing = object()

    def compute(a: int, b: int) -> bytes | None:
        if b <= lo or a >= hi:
            digest = next(given, missing)
            return digest if isinstance(digest, bytes) else None
        if lo <= a and b <= hi:
            return merkle.root(leaves[a - lo : b - lo])
        k = merkle.split_point(b - a)
        left = compute(a, a + k)
        right = compute(a + k, b)
        return None if left is None or right is None else merkle.node_hash(left, right)

    result = compute(0, size)
    if next(given, missing) is not missing:
        return None  # more hashes than the tree has room for
    return result
