"""Offline audit bundles (ledger/bundle/): what the writer lays out verifies, with our verifier
and with the independent one written from docs/audit-bundle.md; any changed byte, removed,
added or reordered entry fails and names the first bad entry; checkpoints verify only with
the trusted key; damaged files give a report, never an exception."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import bundle_reader, rfc9162
from tests.support.bundles import SyntheticLedger, new_signer
from tradeguard.core.errors import LedgerIntegrityError
from tradeguard.ledger.bundle import format as fmt
from tradeguard.ledger.bundle.verifier import BundleReport, Failure, verify_bundle
from tradeguard.ledger.bundle.writer import BundleTargetRefused, BundleWriter, EntryNotExportable
from tradeguard.ledger.chain import chain_hash, leaf_hash
from tradeguard.ledger.tree import merkle

LEDGER = SyntheticLedger.build(50)
KEYS = [LEDGER.signer.key]
# A range with a tree before it, a checkpoint at its start, one inside, one at its end and one
# beyond it (reached by a consistency proof); and the whole ledger up to a checkpoint.
RANGE = {"first": 5, "last": 40, "checkpoints": [4, 16, 40, 45]}
WHOLE = {"first": 1, "last": 50, "checkpoints": [7, 32, 50]}
PROPERTY = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bundles")
    return {
        name: LEDGER.write_bundle(
            root / name, first=shape["first"], last=shape["last"], checkpoints=shape["checkpoints"]
        )
        for name, shape in {"range": RANGE, "whole": WHOLE}.items()
    }


@contextmanager
def altered(path: Path, content: bytes) -> Iterator[None]:
    """The file holds `content` for the duration, then its original bytes again."""
    original = path.read_bytes()
    path.write_bytes(content)
    try:
        yield
    finally:
        path.write_bytes(original)


def verify(directory: Path, keys: list | None = None) -> BundleReport:  # type: ignore[type-arg]
    return verify_bundle(directory, KEYS if keys is None else keys)


def first_difference(original: bytes, changed: bytes) -> int:
    """The index of the first line that differs (an added or removed line included)."""
    before, after = _lines(original), _lines(changed)
    for index, (a, b) in enumerate(zip(before, after, strict=False)):
        if a != b:
            return index
    return min(len(before), len(after))


def _lines(content: bytes) -> list[bytes]:
    lines = content.split(b"\n")
    return lines[:-1] if content.endswith(b"\n") else lines


def names(report: BundleReport, seq: int) -> bool:
    """The report names `seq` as the first bad entry, or a range of two holding it."""
    if report.seq is not None:
        return report.seq == seq
    return report.suspects is not None and report.suspects[0] <= seq <= report.suspects[1]


class TestCompactRange:
    @given(prefix=st.integers(0, 300), count=st.integers(0, 60))
    def test_roots_from_any_prefix_equal_the_rfc_algorithm(self, prefix: int, count: int) -> None:
        leaves = [leaf_hash(str(i).encode()) for i in range(prefix + count)]
        spans = merkle.complete_subtrees(0, prefix) if prefix else []
        tree = merkle.CompactRange(
            prefix, [merkle.root(leaves[i << lv : (i + 1) << lv]) for lv, i in spans]
        )
        assert tree.root() == rfc9162.mth(leaves[:prefix])
        for size in range(prefix, prefix + count):
            tree.append(leaves[size])
            assert tree.size == size + 1
            assert tree.root() == rfc9162.mth(leaves[: size + 1])

    def test_a_prefix_of_the_wrong_shape_is_refused(self) -> None:
        with pytest.raises(ValueError, match="complete subtrees"):
            merkle.CompactRange(9, [bytes(32)])
        with pytest.raises(ValueError, match="32 bytes"):
            merkle.CompactRange(1, [b"short"])


class TestRoundTrip:
    @pytest.mark.spec("AUD-2")
    @pytest.mark.parametrize("shape", ["range", "whole"])
    def test_a_bundle_verifies_here_and_in_the_independent_verifier(
        self, bundles: dict[str, Path], shape: str
    ) -> None:
        report = verify(bundles[shape])
        independent = bundle_reader.verify(bundles[shape], [LEDGER.signer.key.vkey])
        expected = RANGE if shape == "range" else WHOLE
        assert report.ok, report.detail
        assert (report.first_seq, report.last_seq) == (expected["first"], expected["last"])
        assert report.verified == expected["last"] - expected["first"] + 1
        assert [c.size for c in report.checkpoints] == expected["checkpoints"]
        assert report.root == rfc9162.mth(LEDGER.leaves[: expected["last"]])
        assert report.head_hash == LEDGER.chains[expected["last"] - 1]
        assert independent is None

    @settings(max_examples=40, deadline=None)
    @given(data=st.data())
    def test_any_range_with_any_covering_checkpoints_verifies(
        self, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
    ) -> None:
        first = data.draw(st.integers(1, 50))
        last = data.draw(st.integers(first, 50))
        inside = data.draw(st.sets(st.integers(first - 1, last), max_size=4))
        covering = data.draw(st.sets(st.integers(last, 50), min_size=1, max_size=3))
        target = tmp_path_factory.mktemp("any") / "bundle"
        LEDGER.write_bundle(target, first=first, last=last, checkpoints=[*inside, *covering])
        report = verify(target)
        assert report.ok, report.detail
        assert bundle_reader.verify(target, [LEDGER.signer.key.vkey]) is None

    def test_the_files_are_as_documented(self, bundles: dict[str, Path]) -> None:
        directory = bundles["range"]
        manifest = json.loads((directory / fmt.MANIFEST).read_text())
        entries = (directory / fmt.ENTRIES).read_bytes().split(b"\n")
        chain = (directory / fmt.CHAIN).read_bytes().split(b"\n")
        assert manifest["format"] == "tradeguard-audit-bundle"
        assert manifest["version"] == 1
        assert entries[:-1] == LEDGER.bodies[4:40]
        assert entries[-1] == b""
        assert json.loads(chain[0]) == {
            "chain": base64.b64encode(LEDGER.chains[4]).decode(),
            "leaf": base64.b64encode(LEDGER.leaves[4]).decode(),
            "seq": 5,
        }
        # Each entry line is its ledger event as JSON (a newline in a value is escaped).
        assert json.loads(entries[2])["data"]["note"] == "line one\nline two\t\u2028 Zoë"
        assert sorted(os.listdir(directory / fmt.CHECKPOINTS)) == [
            "16.checkpoint",
            "4.checkpoint",
            "40.checkpoint",
            "45.checkpoint",
        ]
        assert (directory / fmt.KEYS).read_text() == LEDGER.signer.key.vkey + "\n"


class TestTamperedEntries:
    """The issue's property: any single changed byte, removed, added or reordered entry fails
    verification and names the first bad entry."""

    @pytest.mark.spec("AUD-2")
    @PROPERTY
    @given(shape=st.sampled_from(["range", "whole"]), data=st.data())
    def test_any_changed_byte_of_the_entries_names_its_entry(
        self, bundles: dict[str, Path], shape: str, data: st.DataObject
    ) -> None:
        path = bundles[shape] / fmt.ENTRIES
        original = path.read_bytes()
        at = data.draw(st.integers(0, len(original) - 1))
        byte = data.draw(st.integers(0, 255).filter(lambda b: b != original[at]))
        changed = original[:at] + bytes([byte]) + original[at + 1 :]
        with altered(path, changed):
            report = verify(bundles[shape])
        assert not report.ok
        assert report.seq == report.first_seq + first_difference(original, changed), report

    @pytest.mark.spec("AUD-2")
    @PROPERTY
    @given(shape=st.sampled_from(["range", "whole"]), data=st.data())
    def test_any_changed_byte_of_the_recorded_hashes_names_its_entry(
        self, bundles: dict[str, Path], shape: str, data: st.DataObject
    ) -> None:
        path = bundles[shape] / fmt.CHAIN
        original = path.read_bytes()
        at = data.draw(st.integers(0, len(original) - 1))
        byte = data.draw(st.integers(0, 255).filter(lambda b: b != original[at]))
        changed = original[:at] + bytes([byte]) + original[at + 1 :]
        with altered(path, changed):
            report = verify(bundles[shape])
        assert not report.ok
        assert report.seq == report.first_seq + first_difference(original, changed), report

    @pytest.mark.spec("AUD-2")
    @PROPERTY
    @given(shape=st.sampled_from(["range", "whole"]), data=st.data())
    def test_a_removed_added_or_reordered_entry_is_named(
        self, bundles: dict[str, Path], shape: str, data: st.DataObject
    ) -> None:
        path = bundles[shape] / fmt.ENTRIES
        original = path.read_bytes()
        lines = original.split(b"\n")[:-1]
        change = data.draw(st.sampled_from(["remove", "add", "copy", "swap"]))
        if change == "remove":
            del lines[data.draw(st.integers(0, len(lines) - 1))]
        elif change == "add":
            entry = data.draw(st.binary(max_size=300).filter(lambda b: b"\n" not in b))
            lines.insert(data.draw(st.integers(0, len(lines))), entry)
        elif change == "copy":
            copied = lines[data.draw(st.integers(0, len(lines) - 1))]
            lines.insert(data.draw(st.integers(0, len(lines))), copied)
        else:
            i = data.draw(st.integers(0, len(lines) - 2))
            j = data.draw(st.integers(i + 1, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        changed = b"".join(line + b"\n" for line in lines)
        with altered(path, changed):
            report = verify(bundles[shape])
        assert not report.ok
        assert report.seq == report.first_seq + first_difference(original, changed), report

    @pytest.mark.spec("AUD-2")
    @PROPERTY
    @given(shape=st.sampled_from(["range", "whole"]), data=st.data())
    def test_a_whole_record_removed_added_or_reordered_is_named(
        self, bundles: dict[str, Path], shape: str, data: st.DataObject
    ) -> None:
        """The same, done to an entry and its recorded hashes together, including an entry
        added with hashes that link to the one before it, as a forger would compute them."""
        directory = bundles[shape]
        first = int(json.loads((directory / fmt.MANIFEST).read_text())["first_seq"])
        entries_before = (directory / fmt.ENTRIES).read_bytes()
        chain_before = (directory / fmt.CHAIN).read_bytes()
        entries = entries_before.split(b"\n")[:-1]
        chain = chain_before.split(b"\n")[:-1]
        change = data.draw(st.sampled_from(["remove", "copy", "forge", "swap"]))
        at = data.draw(st.integers(0, len(entries) - 1))
        if change == "remove":
            del entries[at], chain[at]
        elif change == "copy":
            source = data.draw(st.integers(0, len(entries) - 1))
            entries.insert(at, entries[source])
            chain.insert(at, chain[source])
        elif change == "forge":
            body = data.draw(st.binary(min_size=1, max_size=200).filter(lambda b: b"\n" not in b))
            seq = first + at
            previous = LEDGER.chains[seq - 2] if seq > 1 else bytes(32)
            leaf = leaf_hash(body)
            entries.insert(at, body)
            chain.insert(at, fmt.chain_line(seq, leaf, chain_hash(previous, seq, leaf))[:-1])
        else:
            other = data.draw(st.integers(0, len(entries) - 1).filter(lambda i: i != at))
            for lines in (entries, chain):
                lines[at], lines[other] = lines[other], lines[at]
        with (
            altered(directory / fmt.ENTRIES, b"".join(e + b"\n" for e in entries)),
            altered(directory / fmt.CHAIN, b"".join(c + b"\n" for c in chain)),
        ):
            report = verify(directory)
        changed = b"".join(e + b"\n" for e in entries)
        assert not report.ok
        assert names(report, first + first_difference(entries_before, changed)), report

    @pytest.mark.spec("AUD-2")
    @pytest.mark.parametrize(
        ("checkpoints", "failure", "suspects"),
        [
            ([16, 40], Failure.ROOT_MISMATCH, (17, 40)),
            ([16, 45], Failure.INCONSISTENT, (17, 40)),
            ([45], Failure.INCONSISTENT, (5, 40)),
        ],
    )
    def test_an_entry_rewritten_with_all_its_hashes_is_caught_by_the_signed_root(
        self, tmp_path: Path, checkpoints: list[int], failure: Failure, suspects: tuple[int, int]
    ) -> None:
        """Every per-entry check can be satisfied by recomputing the hashes (and the proofs
        in the bundle); the signed checkpoints cannot, and bound the rewrite to the entries
        since the last one that matched."""
        rewritten = SyntheticLedger.build(0, signer=LEDGER.signer)
        rewritten.bodies = list(LEDGER.bodies)
        rewritten.bodies[20] = rewritten.bodies[20].replace(b'"qty":"100"', b'"qty":"900"')
        rewritten.leaves = [leaf_hash(b) for b in rewritten.bodies]
        previous = bytes(32)
        for seq, leaf in enumerate(rewritten.leaves, start=1):
            previous = chain_hash(previous, seq, leaf)
            rewritten.chains.append(previous)
        target = rewritten.write_bundle(tmp_path / "b", first=5, last=40, checkpoints=checkpoints)
        # The genuine checkpoints, as the log signed them.
        for size in checkpoints:
            (target / fmt.CHECKPOINTS / f"{size}.checkpoint").write_text(LEDGER.note(size))
        report = verify(target)
        assert report.failure is failure
        assert report.suspects == suspects
        assert names(report, 21)

    def test_entries_beyond_the_range_are_named(self, bundles: dict[str, Path]) -> None:
        path = bundles["range"] / fmt.ENTRIES
        with altered(path, path.read_bytes() + LEDGER.bodies[40] + b"\n"):
            report = verify(bundles["range"])
        assert report.failure is Failure.UNEXPECTED_ENTRY
        assert report.seq == 41


class TestCheckpoints:
    @pytest.mark.spec("AUD-3")
    def test_a_bundle_does_not_verify_with_another_key_even_its_own_copy_of_the_key(
        self, bundles: dict[str, Path], tmp_path: Path
    ) -> None:
        impostor = new_signer()
        forged = SyntheticLedger.build(50, signer=impostor)
        target = forged.write_bundle(tmp_path / "forged", **_shape(WHOLE))
        report = verify(target)
        wrong_key = verify(bundles["whole"], [impostor.key])
        assert report.failure is Failure.UNTRUSTED_CHECKPOINT
        assert "no signature of a trusted key" in report.detail
        assert impostor.key.id_hex in report.detail
        assert wrong_key.failure is Failure.UNTRUSTED_CHECKPOINT
        # The bundle's keys.vkeys names the impostor's key: it is never used.
        assert (target / fmt.KEYS).read_text() == impostor.key.vkey + "\n"

    @pytest.mark.spec("AUD-3")
    def test_a_tampered_signature_fails(self, bundles: dict[str, Path]) -> None:
        path = bundles["whole"] / fmt.CHECKPOINTS / "32.checkpoint"
        text, line = path.read_text().rsplit("\n\n", 1)
        dash, name, signature = line.rstrip("\n").split(" ")
        raw = bytearray(base64.b64decode(signature))
        raw[10] ^= 1
        tampered = f"{text}\n\n{dash} {name} {base64.b64encode(bytes(raw)).decode()}\n"
        with altered(path, tampered.encode()):
            report = verify(bundles["whole"])
        assert report.failure is Failure.UNTRUSTED_CHECKPOINT
        assert "does not verify" in report.detail
        assert report.detail.startswith("checkpoints/32.checkpoint")

    @PROPERTY
    @given(data=st.data())
    def test_any_changed_byte_of_a_checkpoint_fails(
        self, bundles: dict[str, Path], data: st.DataObject
    ) -> None:
        size = data.draw(st.sampled_from(WHOLE["checkpoints"]))
        path = bundles["whole"] / fmt.CHECKPOINTS / f"{size}.checkpoint"
        original = path.read_bytes()
        at = data.draw(st.integers(0, len(original) - 1))
        byte = data.draw(st.integers(0, 255).filter(lambda b: b != original[at]))
        with altered(path, original[:at] + bytes([byte]) + original[at + 1 :]):
            report = verify(bundles["whole"])
        assert report.failure in {Failure.UNTRUSTED_CHECKPOINT, Failure.MALFORMED}
        assert f"checkpoints/{size}.checkpoint" in report.detail

    def test_after_a_key_rotation_every_signer_must_be_trusted(self, tmp_path: Path) -> None:
        rotated = SyntheticLedger.build(50, signer=LEDGER.signer)
        new = new_signer()
        rotated.signers = {50: new}
        target = rotated.write_bundle(tmp_path / "b", **_shape(WHOLE))
        both = verify(target, [LEDGER.signer.key, new.key])
        only_new = verify(target, [new.key])
        assert both.ok
        assert {c.key for c in both.checkpoints} == {
            f"{LEDGER.origin}+{LEDGER.signer.key.id_hex}",
            f"{LEDGER.origin}+{new.key.id_hex}",
        }
        assert only_new.failure is Failure.UNTRUSTED_CHECKPOINT
        assert only_new.detail.startswith("checkpoints/7.checkpoint")
        assert LEDGER.signer.key.id_hex in only_new.detail

    def test_a_checkpoint_of_another_log_fails(self, bundles: dict[str, Path]) -> None:
        other = SyntheticLedger.build(50, signer=LEDGER.signer)
        other.origin = LEDGER.origin  # same key name, another log's text
        path = bundles["whole"] / fmt.CHECKPOINTS / "32.checkpoint"
        note = path.read_text().replace(LEDGER.origin + "\n", "other.example/log\n", 1)
        with altered(path, note.encode()):
            report = verify(bundles["whole"])
        assert report.failure is Failure.UNTRUSTED_CHECKPOINT

    def test_no_checkpoint_covering_the_last_entry_fails(self, tmp_path: Path) -> None:
        target = LEDGER.write_bundle(tmp_path / "b", first=1, last=40, checkpoints=[40])
        manifest = json.loads((target / fmt.MANIFEST).read_text())
        manifest["last_seq"] = 41
        (target / fmt.MANIFEST).write_text(json.dumps(manifest))
        report = verify(target)
        assert report.failure is Failure.NOT_COVERED

    def test_a_checkpoint_older_than_the_range_fails(self, tmp_path: Path) -> None:
        target = LEDGER.write_bundle(tmp_path / "b", first=10, last=40, checkpoints=[3, 40])
        assert verify(target).failure is Failure.NOT_COVERED

    def test_a_consistency_proof_that_does_not_hold_fails(self, bundles: dict[str, Path]) -> None:
        path = bundles["range"] / fmt.PROOFS
        proofs = json.loads(path.read_text())
        proofs["consistency"][0]["proof"][0] = base64.b64encode(bytes(32)).decode()
        with altered(path, json.dumps(proofs).encode()):
            report = verify(bundles["range"])
        assert report.failure is Failure.INCONSISTENT

    def test_a_wrong_tree_before_the_range_fails(self, bundles: dict[str, Path]) -> None:
        path = bundles["range"] / fmt.PROOFS
        proofs = json.loads(path.read_text())
        proofs["prefix"]["subtrees"][0] = base64.b64encode(bytes(32)).decode()
        with altered(path, json.dumps(proofs).encode()):
            report = verify(bundles["range"])
        assert report.failure is Failure.ROOT_MISMATCH


class TestDamagedFiles:
    """Truncated or garbage files give a report naming the file, never an exception."""

    FILES = (fmt.MANIFEST, fmt.ENTRIES, fmt.CHAIN, fmt.PROOFS, "checkpoints/32.checkpoint")

    @PROPERTY
    @given(name=st.sampled_from(FILES), data=st.data())
    def test_a_truncated_file_fails_with_a_report(
        self, bundles: dict[str, Path], name: str, data: st.DataObject
    ) -> None:
        path = bundles["whole"] / name
        original = path.read_bytes()
        # Whitespace after a JSON document is layout, not content.
        content = original.rstrip() if name.endswith(".json") else original
        cut = data.draw(st.integers(0, len(content) - 1))
        with altered(path, original[:cut]):
            report = verify(bundles["whole"])
        assert not report.ok
        assert report.detail

    @PROPERTY
    @given(name=st.sampled_from(FILES), garbage=st.binary(max_size=2000))
    def test_garbage_in_any_file_fails_with_a_report(
        self, bundles: dict[str, Path], name: str, garbage: bytes
    ) -> None:
        with altered(bundles["whole"] / name, garbage):
            report = verify(bundles["whole"])
        assert not report.ok
        assert report.detail

    @given(garbage=st.binary(max_size=500))
    @settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    def test_the_bundles_own_keys_file_is_never_read(
        self, bundles: dict[str, Path], garbage: bytes
    ) -> None:
        with altered(bundles["whole"] / fmt.KEYS, garbage):
            assert verify(bundles["whole"]).ok

    @pytest.mark.parametrize("name", [fmt.MANIFEST, fmt.ENTRIES, fmt.CHAIN, fmt.PROOFS])
    def test_a_missing_file_is_named(self, tmp_path: Path, name: str) -> None:
        target = LEDGER.write_bundle(tmp_path / "b", **_shape(WHOLE))
        (target / name).unlink()
        report = verify(target)
        assert report.failure is Failure.MALFORMED
        assert f"{name} is missing" in report.detail

    def test_a_directory_or_fifo_in_place_of_a_file_is_refused(self, tmp_path: Path) -> None:
        target = LEDGER.write_bundle(tmp_path / "b", **_shape(WHOLE))
        (target / fmt.ENTRIES).unlink()
        os.mkfifo(target / fmt.ENTRIES)
        (target / fmt.PROOFS).unlink()
        (target / fmt.PROOFS).mkdir()
        report = verify(target)
        assert report.failure is Failure.MALFORMED
        assert "not a regular file" in report.detail

    @pytest.mark.parametrize(
        ("change", "failure", "message"),
        [
            ({"version": 2}, Failure.UNSUPPORTED, "version 2 is not supported"),
            ({"version": 1.0}, Failure.UNSUPPORTED, "version ? is not supported"),
            ({"version": True}, Failure.UNSUPPORTED, "version ? is not supported"),
            ({"format": "zip"}, Failure.UNSUPPORTED, "does not name the format"),
            ({"extra": 1}, Failure.MALFORMED, "does not define"),
            ({"first_seq": True}, Failure.MALFORMED, "first_seq is not an integer"),
            ({"last_seq": 0}, Failure.MALFORMED, "last_seq is not an integer"),
            ({"checkpoints": [50, 7]}, Failure.MALFORMED, "increasing order"),
            ({"checkpoints": [7, 50]}, Failure.MALFORMED, "32.checkpoint is not listed"),
            ({"checkpoints": [7, 32, 33, 50]}, Failure.MALFORMED, "33.checkpoint is listed"),
            ({"origin": "other.example/log"}, Failure.UNTRUSTED_CHECKPOINT, "another log"),
        ],
    )
    def test_a_manifest_not_as_specified_is_refused(
        self, bundles: dict[str, Path], change: dict[str, object], failure: Failure, message: str
    ) -> None:
        path = bundles["whole"] / fmt.MANIFEST
        manifest = {**json.loads(path.read_text()), **change}
        with altered(path, json.dumps(manifest).encode()):
            report = verify(bundles["whole"])
        assert report.failure is failure
        assert message in report.detail

    def test_a_member_named_twice_is_refused(self, bundles: dict[str, Path]) -> None:
        path = bundles["whole"] / fmt.MANIFEST
        text = path.read_text().replace('"version": 1,', '"version": 1, "version": 1,')
        with altered(path, text.encode()):
            report = verify(bundles["whole"])
        assert "names a member twice" in report.detail

    def test_a_stray_file_among_the_checkpoints_is_refused(self, tmp_path: Path) -> None:
        target = LEDGER.write_bundle(tmp_path / "b", **_shape(WHOLE))
        (target / fmt.CHECKPOINTS / "notes.txt").write_text("hello")
        assert verify(target).failure is Failure.MALFORMED

    def test_a_non_canonical_base64_hash_is_refused(self) -> None:
        digest = hashlib.sha256(b"x").digest()
        canonical = base64.b64encode(digest)
        # The last character before '=' carries two unused bits: set one.
        alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        other = canonical[:42] + bytes([alphabet[alphabet.index(canonical[42]) | 1]]) + b"="
        assert base64.b64decode(other) == digest
        assert fmt.hash_from_b64(canonical) == digest
        with pytest.raises(fmt.FormatError, match="canonical"):
            fmt.hash_from_b64(other)


class TestWriter:
    def test_a_non_empty_directory_is_never_written_over(self, tmp_path: Path) -> None:
        (tmp_path / "taken").mkdir()
        (tmp_path / "taken" / "keep.txt").write_text("mine")
        (tmp_path / "file").write_text("mine")
        with pytest.raises(BundleTargetRefused, match="not empty"):
            LEDGER.write_bundle(tmp_path / "taken", **_shape(WHOLE))
        with pytest.raises(BundleTargetRefused, match="not a directory"):
            LEDGER.write_bundle(tmp_path / "file", **_shape(WHOLE))
        assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "taken"]

    def test_an_empty_directory_takes_the_bundle(self, tmp_path: Path) -> None:
        (tmp_path / "empty").mkdir()
        target = LEDGER.write_bundle(tmp_path / "empty", **_shape(WHOLE))
        assert verify(target).ok
        assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]

    def test_a_failed_write_leaves_nothing_behind(self, tmp_path: Path) -> None:
        def write(entries: list[tuple[int, bytes]]) -> None:
            with BundleWriter(tmp_path / "b", first_seq=1) as writer:
                for seq, body in entries:
                    writer.add_entry(seq, body, LEDGER.leaves[seq - 1], LEDGER.chains[seq - 1])

        with pytest.raises(EntryNotExportable, match="seq 2 holds a newline"):
            write([(1, LEDGER.bodies[0]), (2, b'{"a":\n1}')])
        with pytest.raises(LedgerIntegrityError, match="seq 2 is missing"):
            write([(1, LEDGER.bodies[0]), (3, LEDGER.bodies[2])])
        assert list(tmp_path.iterdir()) == []

    def test_a_bundle_is_copied_and_still_verifies(
        self, bundles: dict[str, Path], tmp_path: Path
    ) -> None:
        copy = shutil.copytree(bundles["range"], tmp_path / "copy")
        assert verify(copy).ok


def _shape(shape: dict[str, object]) -> dict[str, object]:
    return {"first": shape["first"], "last": shape["last"], "checkpoints": shape["checkpoints"]}
