"""The streaming compact range against the RFC 9162 text (tests/support/rfc9162.py): the root
at every size, and every subtree the ledger stores, recomputed leaf by leaf as `audit verify`
does (ledger/tree/integrity.py)."""

from __future__ import annotations

import hashlib

from tests.support import rfc9162
from tradeguard.ledger.tree.layout import STRIDE, stored_among
from tradeguard.ledger.tree.merkle import CompactRange


def leaf(n: int) -> bytes:
    return rfc9162.leaf(hashlib.sha256(n.to_bytes(4, "big")).digest())


class TestStreamedTree:
    def test_the_root_at_every_size_up_to_600_is_the_rfc_mth(self) -> None:
        tree = CompactRange()
        leaves: list[bytes] = []
        assert tree.root() == rfc9162.mth([])
        for n in range(600):
            leaves.append(leaf(n))
            tree.append(leaves[-1], [])
            assert tree.size == n + 1
            assert tree.root() == rfc9162.mth(leaves), n + 1

    def test_every_stored_subtree_is_reported_once_with_its_hash(self) -> None:
        leaves = [leaf(n) for n in range(16 * 16 * 2 + 7)]
        tree = CompactRange()
        stored = []
        for digest in leaves:
            merged: list[tuple[int, bytes]] = []
            tree.append(digest, merged)
            stored += stored_among(tree.size, merged)
        expected = {
            (level, index): rfc9162.mth(leaves[index << level : (index + 1) << level])
            for level in (STRIDE, 2 * STRIDE)
            for index in range(len(leaves) >> level)
        }
        assert {(n.level, n.index): n.hash for n in stored} == expected
        assert len(stored) == len(expected)
