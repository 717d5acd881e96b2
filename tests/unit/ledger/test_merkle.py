"""RFC 9162 Merkle tree (ledger/tree/merkle.py) and the stored-subtree layout (layout.py),
checked against the independent RFC verifier in tests/support/rfc9162.py."""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support import rfc9162
from tradeguard.ledger.chain import leaf_hash
from tradeguard.ledger.tree import layout, merkle

LEAVES = [leaf_hash(f"event {i}".encode()) for i in range(1100)]


def our_proof(ranges: list[tuple[int, int]], leaves: list[bytes]) -> list[bytes]:
    return [merkle.root(leaves[lo:hi]) for lo, hi in ranges]


class TestRoot:
    @pytest.mark.spec("AUD-2")
    def test_roots_match_the_rfc_algorithm_for_every_size_from_1_to_1000(self) -> None:
        mismatched = [
            n for n in range(1, 1001) if merkle.root(LEAVES[:n]) != rfc9162.mth(LEAVES[:n])
        ]
        assert mismatched == []

    def test_certificate_transparency_reference_vectors(self) -> None:
        # The RFC 6962 test tree of the Certificate Transparency reference implementations:
        # eight leaves and the root at each size.
        entries = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657"]
        entries.append("606162636465666768696a6b6c6d6e6f")
        roots = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ]
        leaves = [leaf_hash(bytes.fromhex(e)) for e in entries]
        assert [merkle.root(leaves[:n]).hex() for n in range(1, 9)] == roots

    def test_the_empty_tree_hashes_the_empty_string(self) -> None:
        assert merkle.root([]) == hashlib.sha256(b"").digest() == merkle.EMPTY_ROOT

    def test_a_range_not_on_a_subtree_boundary_is_refused(self) -> None:
        with pytest.raises(ValueError, match="boundary"):
            merkle.complete_subtrees(3, 7)
        with pytest.raises(ValueError, match="empty"):
            merkle.complete_subtrees(4, 4)


class TestInclusion:
    @pytest.mark.spec("AUD-2")
    def test_every_proof_up_to_130_leaves_verifies_independently_and_equals_the_rfc_path(
        self,
    ) -> None:
        for size in range(1, 131):
            leaves = LEAVES[:size]
            root = rfc9162.mth(leaves)
            for index in range(size):
                proof = our_proof(merkle.inclusion_ranges(index, size), leaves)
                assert proof == rfc9162.path(index, leaves), (index, size)
                assert rfc9162.verify_inclusion(index, size, leaves[index], proof, root)
                assert merkle.verify_inclusion(index, size, leaves[index], proof, root)

    def test_proofs_in_a_large_tree_verify_independently(self) -> None:
        size = 1037
        leaves = LEAVES[:size]
        root = rfc9162.mth(leaves)
        for index in (0, 1, 511, 512, 1023, 1024, 1036):
            proof = our_proof(merkle.inclusion_ranges(index, size), leaves)
            assert rfc9162.verify_inclusion(index, size, leaves[index], proof, root)

    @given(
        size=st.integers(2, 200),
        data=st.data(),
    )
    def test_any_altered_proof_fails(self, size: int, data: st.DataObject) -> None:
        leaves = LEAVES[:size]
        root = merkle.root(leaves)
        index = data.draw(st.integers(0, size - 1))
        proof = our_proof(merkle.inclusion_ranges(index, size), leaves)
        # (A different tree size is not among the changes: a proof for leaf 0 of 3 leaves also
        # shapes a valid path for leaf 0 of 4. The size is bound by the signed checkpoint.)
        change = data.draw(st.sampled_from(["flip", "drop", "extra", "index", "leaf"]))
        bad_index, bad_leaf = index, leaves[index]
        if change == "flip":
            at = data.draw(st.integers(0, len(proof) - 1))
            proof[at] = bytes([proof[at][0] ^ 1]) + proof[at][1:]
        elif change == "drop":
            proof.pop()
        elif change == "extra":
            proof.append(leaves[0])
        elif change == "index":
            bad_index = (index + 1) % size
        else:
            bad_leaf = leaf_hash(b"forged")
        assert not merkle.verify_inclusion(bad_index, size, bad_leaf, proof, root)

    def test_a_proof_of_the_wrong_shape_is_refused(self) -> None:
        assert merkle.root_from_inclusion(5, 5, LEAVES[5], []) is None
        assert merkle.root_from_inclusion(0, 2, LEAVES[0], [b"short"]) is None
        with pytest.raises(ValueError, match="below the tree size"):
            merkle.inclusion_ranges(3, 3)


class TestConsistency:
    @pytest.mark.spec("AUD-2")
    def test_every_proof_up_to_100_leaves_verifies_independently_and_equals_the_rfc_proof(
        self,
    ) -> None:
        for second in range(1, 101):
            leaves = LEAVES[:second]
            second_root = rfc9162.mth(leaves)
            for first in range(1, second):
                first_root = rfc9162.mth(leaves[:first])
                proof = our_proof(merkle.consistency_ranges(first, second), leaves)
                assert proof == rfc9162.proof(first, leaves), (first, second)
                assert rfc9162.verify_consistency(first, second, first_root, second_root, proof)
                assert merkle.verify_consistency(first, second, first_root, second_root, proof)

    @given(second=st.integers(2, 150), data=st.data())
    def test_a_proof_between_different_histories_fails(
        self, second: int, data: st.DataObject
    ) -> None:
        first = data.draw(st.integers(1, second - 1))
        leaves = LEAVES[:second]
        forked = list(leaves)
        forked[data.draw(st.integers(0, first - 1))] = leaf_hash(b"rewritten")
        proof = our_proof(merkle.consistency_ranges(first, second), forked)
        # The forked tree's proof cannot link the honest first root to the forked second one.
        assert not merkle.verify_consistency(
            first, second, merkle.root(leaves[:first]), merkle.root(forked), proof
        )

    def test_equal_sizes_need_equal_roots_and_an_empty_proof(self) -> None:
        root = merkle.root(LEAVES[:5])
        assert merkle.verify_consistency(5, 5, root, root, [])
        assert not merkle.verify_consistency(5, 5, root, merkle.root(LEAVES[:4]), [])
        assert not merkle.verify_consistency(5, 5, root, root, [root])
        assert merkle.consistency_ranges(5, 5) == []

    def test_every_tree_extends_the_empty_one_and_nothing_shrinks(self) -> None:
        root = merkle.root(LEAVES[:5])
        assert merkle.verify_consistency(0, 5, merkle.EMPTY_ROOT, root, [])
        assert not merkle.verify_consistency(0, 5, merkle.EMPTY_ROOT, root, [root])
        assert not merkle.verify_consistency(6, 5, root, root, [root])
        assert not merkle.verify_consistency(3, 5, root, root, [])
        with pytest.raises(ValueError, match="0 < first <= second"):
            merkle.consistency_ranges(0, 5)


class TestStoredLayout:
    def test_extending_in_random_batches_stores_exactly_the_complete_stride_subtrees(
        self,
    ) -> None:
        rng = random.Random(9)
        stored: dict[tuple[int, int], bytes] = {}
        size, pending = 0, {}
        while size < 1100:
            batch = LEAVES[size : size + rng.randint(1, 70)]
            nodes = layout.extend(size, pending, batch)
            stored.update({(n.level, n.index): n.hash for n in nodes})
            pending = layout.advance_pending(size, pending, batch, nodes)
            size += len(batch)
        expected = {
            (level, i): rfc9162.mth(LEAVES[i << level : (i + 1) << level])
            for level in (4, 8)
            for i in range(1100 >> level)
        }
        assert stored == expected

    def test_roots_rebuilt_from_stored_subtrees_match_for_every_size(self) -> None:
        stored = {
            (level, i): rfc9162.mth(LEAVES[i << level : (i + 1) << level])
            for level in (4, 8)
            for i in range(1100 >> level)
        }

        def node(level: int, index: int) -> bytes:
            return LEAVES[index] if level == 0 else stored[(level, index)]

        for size in range(1, 1001):
            pieces = []
            for level, index in merkle.complete_subtrees(0, size):
                span = layout.base_span(level, index)
                assert span.end - span.first <= 8
                pieces.append(
                    merkle.perfect_root([node(span.level, i) for i in range(span.first, span.end)])
                )
            assert merkle.fold_right(pieces) == rfc9162.mth(LEAVES[:size]), size

    def test_pending_nodes_that_do_not_match_the_size_are_refused(self) -> None:
        with pytest.raises(ValueError, match="do not match"):
            layout.extend(20, {0: LEAVES[16:18]}, LEAVES[20:40])
