"""The sealed archive's pure parts: range proofs against the RFC 9162 root, the segment file
format (any change fails to open), manifests (signed, canonical, never a checkpoint), where
segments are cut, and the retention arithmetic (AUD-2, ENC-3)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import replace

import pytest
import zstandard
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.rfc9162 import mth
from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.core.errors import InvalidInput
from tradeguard.crypto.keyring import LocalKeyring
from tradeguard.ledger.archive.domain import (
    MIN_RETENTION_YEARS,
    SegmentCutter,
    parse_before,
    retention_cutoff_ns,
)
from tradeguard.ledger.archive.errors import SegmentInvalid
from tradeguard.ledger.archive.format import (
    MAGIC,
    ArchivedEntry,
    Manifest,
    open_manifest,
    open_segment,
    parse_manifest_text,
    parse_name,
    seal_segment,
    segment_name,
)
from tradeguard.ledger.archive.keys import KeyringSegmentKeys
from tradeguard.ledger.archive.proofs import range_proof_ranges, root_from_range
from tradeguard.ledger.tree.errors import MalformedNote
from tradeguard.ledger.tree.note import Checkpoint, NoteSigner, parse_checkpoint, parse_note

ORIGIN = "example.test/audit-ledger"
KEYS = KeyringSegmentKeys(LocalKeyring(bytes(range(32))))


def leaves(n: int) -> list[bytes]:
    return [hashlib.sha256(b"\x00" + str(i).encode()).digest() for i in range(n)]


def range_hashes(all_leaves: list[bytes], ranges: list[tuple[int, int]]) -> list[bytes]:
    return [mth(all_leaves[lo:hi]) for lo, hi in ranges]


class TestRangeProof:
    def test_every_range_of_every_small_tree_gives_the_rfc_root(self) -> None:
        for size in range(1, 40):
            tree = leaves(size)
            root = mth(tree)
            for lo in range(size):
                for hi in range(lo + 1, size + 1):
                    proof = range_hashes(tree, range_proof_ranges(lo, hi, size))
                    assert root_from_range(lo, hi, size, tree[lo:hi], proof) == root

    @settings(max_examples=200, deadline=None)
    @given(st.data())
    def test_a_changed_leaf_or_proof_hash_gives_another_root(self, data: st.DataObject) -> None:
        size = data.draw(st.integers(2, 300))
        lo = data.draw(st.integers(0, size - 1))
        hi = data.draw(st.integers(lo + 1, size))
        tree = leaves(size)
        proof = range_hashes(tree, range_proof_ranges(lo, hi, size))
        root = mth(tree)
        part = tree[lo:hi]
        which = data.draw(st.integers(0, len(part) + len(proof) - 1))
        if which < len(part):
            part = [*part[:which], bytes(32), *part[which + 1 :]]
        else:
            k = which - len(part)
            proof = [*proof[:k], bytes(32), *proof[k + 1 :]]
        assert root_from_range(lo, hi, size, part, proof) != root

    def test_a_proof_too_short_or_too_long_is_refused(self) -> None:
        tree = leaves(20)
        proof = range_hashes(tree, range_proof_ranges(5, 9, 20))
        assert root_from_range(5, 9, 20, tree[5:9], proof[:-1]) is None
        assert root_from_range(5, 9, 20, tree[5:9], [*proof, bytes(32)]) is None
        assert root_from_range(5, 9, 20, tree[5:8], proof) is None


def entries(first: int = 5, count: int = 4) -> list[ArchivedEntry]:
    return [
        ArchivedEntry(
            seq, f"0190c5a0-0000-7000-8000-{seq:012d}", b'{"ts":"%d","n":%d}' % (seq, seq)
        )
        for seq in range(first, first + count)
    ]


class TestSegmentFile:
    def test_a_sealed_segment_opens_to_the_same_entries(self) -> None:
        sealed = seal_segment(entries(), origin=ORIGIN, keys=KEYS)
        opened = open_segment(sealed.blob, keys=KEYS, origin=ORIGIN, first_seq=5, last_seq=8)
        assert opened.entries == entries()
        assert opened.plain_bytes == sealed.plain_bytes
        assert sealed.blob.startswith(MAGIC)

    @pytest.mark.spec("ENC-3")
    def test_the_file_holds_no_plaintext_and_every_changed_byte_is_refused(self) -> None:
        sealed = seal_segment(entries(), origin=ORIGIN, keys=KEYS)
        assert b'"n":5' not in sealed.blob
        for offset in range(len(sealed.blob)):
            tampered = bytearray(sealed.blob)
            tampered[offset] ^= 0x80
            with pytest.raises(SegmentInvalid):
                open_segment(bytes(tampered), keys=KEYS, origin=ORIGIN, first_seq=5, last_seq=8)

    @pytest.mark.parametrize(
        ("origin", "first", "last"),
        [("other.test/log", 5, 8), (ORIGIN, 6, 9), (ORIGIN, 5, 7)],
    )
    def test_a_segment_read_as_another_range_or_log_is_refused(
        self, origin: str, first: int, last: int
    ) -> None:
        sealed = seal_segment(entries(), origin=ORIGIN, keys=KEYS)
        with pytest.raises(SegmentInvalid, match="another range or log"):
            open_segment(sealed.blob, keys=KEYS, origin=origin, first_seq=first, last_seq=last)

    def test_another_keyring_cannot_open_it(self) -> None:
        sealed = seal_segment(entries(), origin=ORIGIN, keys=KEYS)
        other = KeyringSegmentKeys(LocalKeyring(secrets.token_bytes(32)))
        with pytest.raises(SegmentInvalid, match="does not decrypt"):
            open_segment(sealed.blob, keys=other, origin=ORIGIN, first_seq=5, last_seq=8)

    def test_a_wrapped_key_moved_to_another_segment_does_not_unwrap(self) -> None:
        one = seal_segment(entries(5), origin=ORIGIN, keys=KEYS)
        two = seal_segment(entries(9), origin=ORIGIN, keys=KEYS)
        # Graft the first segment's header (its wrapped key) onto the second's range.
        head = one.blob[: one.blob.index(b"}") + 1].replace(b'"first_seq":5', b'"first_seq":9')
        head = head.replace(b'"last_seq":8', b'"last_seq":12')
        with pytest.raises(SegmentInvalid):
            open_segment(
                head + two.blob[len(head) :], keys=KEYS, origin=ORIGIN, first_seq=9, last_seq=12
            )

    def test_a_frame_that_claims_more_than_its_manifest_is_refused_before_decompressing(
        self,
    ) -> None:
        sealed = seal_segment(entries(), origin=ORIGIN, keys=KEYS)
        with pytest.raises(SegmentInvalid, match="more than a segment may hold"):
            open_segment(
                sealed.blob,
                keys=KEYS,
                origin=ORIGIN,
                first_seq=5,
                last_seq=8,
                max_plain_bytes=sealed.plain_bytes - 1,
            )
        assert (
            zstandard.frame_content_size(
                zstandard.ZstdCompressor(write_content_size=True).compress(b"x" * 100)
            )
            == 100
        )

    def test_names_carry_the_range(self) -> None:
        assert segment_name(1, 42) == "audit-0000000000000000001-0000000000000000042"
        assert parse_name(segment_name(1, 42)) == (1, 42)
        for bad in ("audit-1-42", "audit-0000000000000000042-0000000000000000001", "x"):
            assert parse_name(bad) is None


def manifest(**changes: object) -> Manifest:
    base = Manifest(
        origin=ORIGIN,
        first_seq=5,
        last_seq=8,
        count=4,
        previous_chain_hash=bytes(32),
        first_chain_hash=b"\x01" * 32,
        last_chain_hash=b"\x02" * 32,
        range_root=b"\x03" * 32,
        checkpoint_size=10,
        checkpoint_root=b"\x04" * 32,
        checkpoint_note="note \u2014 with a dash\n",
        range_proof=(b"\x05" * 32,),
        min_occurred_ns=2**62,
        max_occurred_ns=2**62 + 1,
        file_sha256=b"\x06" * 32,
        file_bytes=100,
        compressed_bytes=60,
        plain_bytes=80,
        created_ns=2**62 + 2,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


class TestManifest:
    def test_a_signed_manifest_opens_with_its_key_only(self) -> None:
        signer = NoteSigner(ORIGIN, Ed25519PrivateKey.generate())
        note = manifest().signed(signer)
        opened, key = open_manifest(note, [signer.key], segment="s")
        assert opened == manifest()
        assert key == signer.key
        stranger = NoteSigner(ORIGIN, Ed25519PrivateKey.generate())
        with pytest.raises(SegmentInvalid, match="does not verify"):
            open_manifest(note, [stranger.key], segment="s")
        with pytest.raises(SegmentInvalid, match="does not verify"):
            open_manifest(note.replace('"count":4', '"count":5'), [signer.key], segment="s")

    def test_a_manifest_is_never_a_checkpoint_nor_a_checkpoint_a_manifest(self) -> None:
        text = manifest().text
        with pytest.raises(MalformedNote):
            parse_checkpoint(text)
        checkpoint = Checkpoint(ORIGIN, 10, bytes(32))
        with pytest.raises(MalformedNote):
            parse_manifest_text(checkpoint.text)
        assert parse_note(manifest().signed(NoteSigner(ORIGIN, Ed25519PrivateKey.generate())))

    @pytest.mark.parametrize(
        "edit",
        [
            lambda t: t.replace('"count":4', '"count":3'),
            lambda t: t.replace('"count":4', '"count":"4"'),
            lambda t: t.replace('"plain_bytes":80', '"plain_bytes":80,"extra":1'),
            lambda t: t.replace('"first_seq":5', '"first_seq": 5'),
            lambda t: t.replace('"checkpoint_size":10', '"checkpoint_size":7'),
            lambda t: t.replace("zstd", "gzip"),
            lambda t: t + "more\n",
        ],
    )
    def test_malformed_or_inconsistent_manifests_are_refused(self, edit: object) -> None:
        with pytest.raises(MalformedNote):
            parse_manifest_text(edit(manifest().text))  # type: ignore[operator]


DAY = 86_400 * NS_PER_SECOND


def ns(year: int, month: int, day: int) -> int:
    return parse_before(f"{year:04d}-{month:02d}-{day:02d}")


class TestRules:
    def test_a_segment_closes_at_its_size_or_a_later_month_not_an_earlier_one(self) -> None:
        cutter = SegmentCutter(max_events=3)
        jan, feb = ns(2030, 1, 31), ns(2030, 2, 1)
        assert [cutter.closes_before(t, 10) for t in (jan, jan, feb)] == [False, False, True]
        # A straggler from January chained after February's first event stays with it.
        assert cutter.closes_before(jan, 10) is False
        assert cutter.closes_before(feb, 10) is False
        assert cutter.full
        assert cutter.closes_before(feb, 10) is True

    def test_a_segment_closes_before_its_byte_budget_is_exceeded(self) -> None:
        cutter = SegmentCutter(max_events=100, max_bytes=25)
        day = ns(2030, 1, 1)
        assert [cutter.closes_before(day, 10) for _ in range(4)] == [False, False, True, False]

    @pytest.mark.spec("AUD-2")
    def test_the_retention_cutoff_is_seven_calendar_years_back(self) -> None:
        assert retention_cutoff_ns(ns(2037, 3, 2), 7) == ns(2030, 3, 2)
        assert retention_cutoff_ns(ns(2032, 2, 29), 7) == ns(2025, 2, 28)
        assert retention_cutoff_ns(ns(2037, 3, 2) + 5, 10) == ns(2027, 3, 2) + 5
        with pytest.raises(InvalidInput, match="at least 7"):
            retention_cutoff_ns(ns(2037, 3, 2), MIN_RETENTION_YEARS - 1)

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("2030-03-01", ns(2030, 3, 1)),
            ("2030-03-01T00:00:00Z", ns(2030, 3, 1)),
            ("2030-02-28T19:00:00-05:00", ns(2030, 3, 1)),
        ],
    )
    def test_before_is_a_date_or_an_instant_with_an_offset(self, value: str, expected: int) -> None:
        assert parse_before(value) == expected

    @pytest.mark.parametrize(
        "value",
        ["", "2030", "1767225600000000000", "2030-02-30", "2030-03-01T00:00:00", "1960-01-01"],
    )
    def test_anything_else_is_refused(self, value: str) -> None:
        with pytest.raises(InvalidInput):
            parse_before(value)
