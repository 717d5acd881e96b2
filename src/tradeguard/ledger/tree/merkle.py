"""RFC 9162 Merkle tree hashing and proofs (section 2.1).

Leaves are the ledger's stored leaf hashes, SHA-256(0x00 || event) (section 2.1.1), so the
tree is built over them without re-hashing any event. An interior node is
SHA-256(0x01 || left || right), and the hash of n > 1 leaves splits at k, the largest power
of two smaller than n. Leaf indices are zero-based: the event at chain position `seq` is
leaf `seq - 1`.

Proofs are produced here as lists of leaf ranges [lo, hi) whose subtree hashes make up the
proof (`inclusion_ranges`, `consistency_ranges`), so the caller decides where the hashes
come from (stored subtrees for the ledger, a list of leaves in tests). Every such range is
either a complete subtree (hi - lo a power of two, lo a multiple of it) or starts at a
multiple of the next power of two above its length: `complete_subtrees` splits it into
complete subtrees of decreasing size and `fold_right` hashes them back together.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

HASH_SIZE = 32
NODE_PREFIX = b"\x01"
# MTH({}) = HASH(): the hash of an empty tree is the hash of the empty string.
EMPTY_ROOT = hashlib.sha256(b"").digest()

Range = tuple[int, int]


def node_hash(left: bytes, right: bytes) -> bytes:
    """An interior node: SHA-256(0x01 || left || right)."""
    digest = hashlib.sha256(NODE_PREFIX)
    digest.update(left)
    digest.update(right)
    return digest.digest()


def split_point(n: int) -> int:
    """k, the largest power of two smaller than n (n > 1)."""
    if n < 2:
        raise ValueError("only a tree of two or more leaves is split")
    return 1 << ((n - 1).bit_length() - 1)


def perfect_root(hashes: Sequence[bytes]) -> bytes:
    """The hash of a complete subtree over 2^k hashes of one level (k >= 0)."""
    count = len(hashes)
    if count == 0 or count & (count - 1):
        raise ValueError("a complete subtree has a power-of-two number of nodes")
    level = list(hashes)
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[0:n]) over leaf hashes (section 2.1.1)."""
    if not leaves:
        return EMPTY_ROOT
    return fold_right(
        [perfect_root(leaves[lo:hi]) for lo, hi in _spans(complete_subtrees(0, len(leaves)))]
    )


def fold_right(subtree_hashes: Sequence[bytes]) -> bytes:
    """The hash of a range from its complete subtrees, largest (leftmost) first."""
    if not subtree_hashes:
        raise ValueError("a range has at least one subtree")
    result = subtree_hashes[-1]
    for left in reversed(subtree_hashes[:-1]):
        result = node_hash(left, result)
    return result


def complete_subtrees(lo: int, hi: int) -> list[tuple[int, int]]:
    """Split [lo, hi) into complete subtrees (level, index), largest first.

    A subtree (level, index) covers leaves [index * 2^level, (index + 1) * 2^level). The
    range must start at a multiple of the power of two at or above its length (every range
    a proof is made of does), so that the pieces shrink from left to right and the range's
    hash is their right fold.
    """
    if not 0 <= lo < hi:
        raise ValueError("an empty or negative range has no subtrees")
    if lo % (1 << (hi - lo - 1).bit_length()):
        raise ValueError(f"range [{lo}, {hi}) does not start on a subtree boundary")
    pieces = []
    start = lo
    while start < hi:
        level = (hi - start).bit_length() - 1
        pieces.append((level, start >> level))
        start += 1 << level
    return pieces


def _spans(subtrees: Iterable[tuple[int, int]]) -> list[Range]:
    return [(index << level, (index + 1) << level) for level, index in subtrees]


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """PATH(m, D[n]) of section 2.1.3.1 as leaf ranges, from the leaf's sibling upward.

    PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n]) for m < k, and
    PATH(m - k, D[k:n]) : MTH(D[0:k]) for m >= k; the path of a single leaf is empty.
    """
    if not 0 <= index < size:
        raise ValueError("the leaf index must be below the tree size")
    path: list[Range] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = split_point(hi - lo)
        if index < lo + k:
            path.append((lo + k, hi))
            hi = lo + k
        else:
            path.append((lo, lo + k))
            lo += k
    path.reverse()
    return path


def consistency_ranges(first: int, second: int) -> list[Range]:
    """PROOF(m, D[n]) of section 2.1.4.1 as leaf ranges (0 < m <= n; empty when m == n).

    SUBPROOF(m, D[m], true) = {}; SUBPROOF(m, D[m], false) = {MTH(D[m])}; for m < n,
    SUBPROOF(m, D[n], b) = SUBPROOF(m, D[0:k], b) : MTH(D[k:n]) when m <= k, and
    SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k]) when m > k.
    """
    if not 0 < first <= second:
        raise ValueError("a consistency proof needs 0 < first <= second")
    tail: list[Range] = []
    lo, hi, m, whole = 0, second, first, True
    while m != hi - lo:
        k = split_point(hi - lo)
        if m <= k:
            tail.append((lo + k, hi))
            hi = lo + k
        else:
            tail.append((lo, lo + k))
            lo += k
            m -= k
            whole = False
    head = [] if whole else [(lo, hi)]
    return head + tail[::-1]


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], expected_root: bytes
) -> bool:
    """Section 2.1.3.2: does `proof` show leaf `index` of a tree of `size` under the root?"""
    computed = root_from_inclusion(index, size, leaf, proof)
    return computed is not None and computed == expected_root


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes | None:
    """The root an inclusion proof leads to, or None when the proof has the wrong shape."""
    if not 0 <= index < size or any(len(p) != HASH_SIZE for p in proof):
        return None
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Section 2.1.4.2: is the tree of `second` leaves an extension of the one of `first`?

    The RFC defines proofs for 0 < first < second. At first == second the proof is empty and
    the roots must be equal; every tree extends the empty one (first == 0, empty proof), as
    the C2SP witness protocol also has it.
    """
    if not 0 <= first <= second or any(len(p) != HASH_SIZE for p in proof):
        return False
    if first == second:
        return not proof and first_root == second_root
    if first == 0:
        return not proof
    if not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0


def hashes_of(ranges: Sequence[Range], subtree_hash: Callable[[int, int], bytes]) -> list[bytes]:
    """A proof's hashes from its ranges, given MTH(D[lo:hi]) for each."""
    return [subtree_hash(lo, hi) for lo, hi in ranges]


class CompactRange:
    """The complete subtrees covering leaves [0, size), largest first: what is needed to append
    leaves one at a time and read MTH(D[0:size]) at every size on the way, in O(log size)
    memory (a stream of a million leaves keeps some twenty hashes).

    It may start from a prefix of the tree given by its subtree hashes
    (`complete_subtrees(0, size)`, largest first), e.g. from a proof: the leaves appended
    after it are then bound to their positions by any root computed from it.
    """

    __slots__ = ("_hashes", "_levels", "_size")

    def __init__(self, size: int = 0, subtree_hashes: Sequence[bytes] = ()) -> None:
        levels = [level for level, _ in complete_subtrees(0, size)] if size > 0 else []
        if size < 0 or len(subtree_hashes) != len(levels):
            raise ValueError(f"a tree of {size} leaves has {len(levels)} complete subtrees")
        if any(len(h) != HASH_SIZE for h in subtree_hashes):
            raise ValueError("a subtree hash is 32 bytes")
        self._size = size
        self._levels = levels
        self._hashes = list(subtree_hashes)

    @property
    def size(self) -> int:
        return self._size

    def append(self, leaf: bytes, merged: list[tuple[int, bytes]] | None = None) -> None:
        """Add the next leaf hash, merging the subtrees it completes; with `merged`, each
        subtree completed on the way is added to it as (level, hash), lowest first."""
        levels, hashes = self._levels, self._hashes
        level, digest = 0, leaf
        while levels and levels[-1] == level:
            levels.pop()
            # node_hash inlined: one call per leaf on the verification path.
            digest = hashlib.sha256(NODE_PREFIX + hashes.pop() + digest).digest()
            level += 1
            if merged is not None:
                merged.append((level, digest))
        levels.append(level)
        hashes.append(digest)
        self._size += 1

    def root(self) -> bytes:
        """MTH(D[0:size]) of the leaves so far."""
        return fold_right(self._hashes) if self._hashes else EMPTY_ROOT
