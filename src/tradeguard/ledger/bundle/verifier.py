"""Verifying an audit bundle offline, with nothing but the log's public keys (AUD-2): no
database, no network, no stored hash taken on trust (docs/audit-bundle.md, "Verifying").

1. Every checkpoint must carry a signature of a trusted key (C2SP signed-note), for the
   bundle's origin; one of them must cover the last entry.
2. The entries are read in order, in one pass and in constant memory. For each seq: its
   chain record must be the next one and link to the one before
   (chain = SHA-256(previous chain || uint64_be(seq) || leaf)); the entry's leaf hash
   SHA-256(0x00 || entry bytes) is computed here and must equal the recorded one; the leaf
   joins the Merkle tree (RFC 9162), started from the subtree hashes before the range.
3. Wherever a checkpoint's size is reached, the tree's root must equal the signed root, so
   every checkpoint inside the range is checked against the entries themselves (and so is
   their consistency with one another); checkpoints beyond the range are reached through
   RFC 9162 consistency proofs from the last entry.

The first thing that does not hold stops the run and is reported with the seq of the first
bad entry where one can be named: an entry changed, removed, added or moved is named exactly
(its recorded leaf hash no longer matches; the chain record says which seq belongs there).
Only a rewrite of entries together with their recorded hashes passes those checks; it is
then caught by the signed root, which bounds it to the entries since the last checkpoint
that matched.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO, NoReturn

from tradeguard.ledger.bundle import format as fmt
from tradeguard.ledger.chain import GENESIS_HASH, LEAF_PREFIX
from tradeguard.ledger.tree.errors import MalformedNote, NoteNotVerified
from tradeguard.ledger.tree.merkle import CompactRange, verify_consistency
from tradeguard.ledger.tree.note import MAX_NOTE_BYTES, VerifierKey, open_checkpoint, parse_note

PROGRESS_EVERY = 8192

Progress = Callable[[int, int], None]


class Failure(StrEnum):
    """Why a bundle does not verify; stable strings for scripts."""

    MALFORMED = "malformed"
    UNSUPPORTED = "unsupported_version"
    UNTRUSTED_CHECKPOINT = "untrusted_checkpoint"
    NOT_COVERED = "not_covered"
    MISSING_ENTRY = "missing_entry"
    OUT_OF_ORDER = "out_of_order"
    ENTRY_ALTERED = "entry_altered"
    CHAIN_BROKEN = "chain_broken"
    UNEXPECTED_ENTRY = "unexpected_entry"
    ROOT_MISMATCH = "root_mismatch"
    INCONSISTENT = "inconsistent"


@dataclass(frozen=True, slots=True)
class CheckedCheckpoint:
    """A checkpoint whose signature verified, and the trusted key that signed it."""

    size: int
    root: bytes
    key: str


@dataclass(frozen=True, slots=True)
class BundleReport:
    """The outcome. `seq` names the first bad entry when it is known exactly; `suspects`
    the range of seqs it lies in when only a signed root could tell (a consistent rewrite)."""

    ok: bool
    verified: int
    origin: str | None = None
    first_seq: int | None = None
    last_seq: int | None = None
    root: bytes | None = None
    head_hash: bytes | None = None
    checkpoints: tuple[CheckedCheckpoint, ...] = ()
    failure: Failure | None = None
    seq: int | None = None
    suspects: tuple[int, int] | None = None
    detail: str = ""


class _Stopped(Exception):
    def __init__(self, report: BundleReport) -> None:
        super().__init__(report.detail)
        self.report = report


def verify_bundle(
    directory: Path, keys: Sequence[VerifierKey], *, progress: Progress | None = None
) -> BundleReport:
    """Verify the bundle in `directory` against the trusted `keys` (never the bundle's own)."""
    run = _Verification(directory, list(keys), progress)
    try:
        return run.verify()
    except _Stopped as stopped:
        return stopped.report


class _Verification:
    def __init__(self, directory: Path, keys: list[VerifierKey], progress: Progress | None) -> None:
        self._directory = directory
        self._keys = keys
        self._progress = progress
        self._manifest: fmt.Manifest | None = None
        self._checked: list[CheckedCheckpoint] = []
        self._verified = 0
        # The last tree size whose root matched a signed one: a consistent rewrite of entries
        # and hashes can only lie after it.
        self._matched: int | None = None
        self._chain = _ChainReader(None)

    # -- reporting ---------------------------------------------------------------------

    def _fail(
        self,
        failure: Failure,
        detail: str,
        *,
        seq: int | None = None,
        suspects: tuple[int, int] | None = None,
    ) -> NoReturn:
        manifest = self._manifest
        raise _Stopped(
            BundleReport(
                ok=False,
                verified=self._verified,
                origin=manifest.origin if manifest else None,
                first_seq=manifest.first_seq if manifest else None,
                last_seq=manifest.last_seq if manifest else None,
                checkpoints=tuple(self._checked),
                failure=failure,
                seq=seq,
                suspects=suspects,
                detail=detail,
            )
        )

    def _read(self, name: str, limit: int) -> bytes:
        path = self._directory / name
        if path.exists() and not path.is_file():
            self._fail(Failure.MALFORMED, f"{name} is not a regular file")
        try:
            with open(path, "rb") as handle:
                data = handle.read(limit + 1)
        except FileNotFoundError:
            self._fail(Failure.MALFORMED, f"{name} is missing")
        except OSError as error:
            self._fail(Failure.MALFORMED, f"{name} cannot be read ({_reason(error)})")
        if len(data) > limit:
            self._fail(Failure.MALFORMED, f"{name} is larger than {limit} bytes")
        return data

    # -- the run -----------------------------------------------------------------------

    def verify(self) -> BundleReport:
        if not self._directory.is_dir():
            self._fail(Failure.MALFORMED, f"{self._directory} is not a directory")
        try:
            manifest = fmt.parse_manifest(self._read(fmt.MANIFEST, fmt.MAX_JSON_BYTES))
        except fmt.UnsupportedBundle as error:
            self._fail(Failure.UNSUPPORTED, str(error))
        except fmt.FormatError as error:
            self._fail(Failure.MALFORMED, str(error))
        self._manifest = manifest
        roots = self._checkpoints(manifest)
        proofs, tree = self._proofs(manifest, roots)
        for name in (fmt.ENTRIES, fmt.CHAIN):
            # Not a device or a pipe, which could be read forever.
            if (self._directory / name).exists() and not (self._directory / name).is_file():
                self._fail(Failure.MALFORMED, f"{name} is not a regular file")
        try:
            with (
                open(self._directory / fmt.ENTRIES, "rb") as entries,
                open(self._directory / fmt.CHAIN, "rb") as chain,
            ):
                self._chain = _ChainReader(chain)
                head = self._entries(manifest, entries, proofs.prefix_chain_hash, tree, roots)
                self._nothing_after(manifest, entries)
        except FileNotFoundError as error:
            self._fail(Failure.MALFORMED, f"{Path(error.filename or '?').name} is missing")
        except OSError as error:
            self._fail(Failure.MALFORMED, f"the entries cannot be read ({_reason(error)})")
        self._consistency(manifest, proofs, tree.root(), roots)
        return BundleReport(
            ok=True,
            verified=self._verified,
            origin=manifest.origin,
            first_seq=manifest.first_seq,
            last_seq=manifest.last_seq,
            root=tree.root(),
            head_hash=head,
            checkpoints=tuple(self._checked),
        )

    def _checkpoints(self, manifest: fmt.Manifest) -> dict[int, bytes]:
        """Open every checkpoint with the trusted keys; their roots by size."""
        folder = self._directory / fmt.CHECKPOINTS
        try:
            names = sorted(os.listdir(folder))
        except OSError as error:
            self._fail(Failure.MALFORMED, f"{fmt.CHECKPOINTS}/ cannot be listed ({_reason(error)})")
        found = {}
        for name in names:
            size = fmt.checkpoint_size_of(name)
            if size is None:
                self._fail(
                    Failure.MALFORMED,
                    f"{fmt.CHECKPOINTS}/ holds a file not named <tree size>{fmt.CHECKPOINT_SUFFIX}",
                )
            found[size] = name
        listed = set(manifest.checkpoints)
        if unlisted := sorted(set(found) - listed):
            self._fail(
                Failure.MALFORMED,
                f"{fmt.CHECKPOINTS}/{found[unlisted[0]]} is not listed in {fmt.MANIFEST}",
            )
        if absent := sorted(listed - set(found)):
            self._fail(
                Failure.MALFORMED,
                f"{fmt.CHECKPOINTS}/{fmt.checkpoint_file_name(absent[0])} is listed in "
                f"{fmt.MANIFEST} but missing",
            )
        roots = {}
        for size in manifest.checkpoints:
            name = f"{fmt.CHECKPOINTS}/{found[size]}"
            roots[size] = self._checkpoint(manifest, name, size)
        if manifest.checkpoints[0] < manifest.first_seq - 1:
            self._fail(
                Failure.NOT_COVERED,
                f"the checkpoint at size {manifest.checkpoints[0]} is older than the bundle's "
                f"first entry (seq {manifest.first_seq}): nothing in the bundle can check it",
            )
        if manifest.checkpoints[-1] < manifest.last_seq:
            self._fail(
                Failure.NOT_COVERED,
                f"no checkpoint covers the last entry (seq {manifest.last_seq}); the largest "
                f"is at size {manifest.checkpoints[-1]}",
                suspects=(manifest.checkpoints[-1] + 1, manifest.last_seq),
            )
        return roots

    def _checkpoint(self, manifest: fmt.Manifest, name: str, size: int) -> bytes:
        data = self._read(name, MAX_NOTE_BYTES)
        try:
            note = data.decode("utf-8")
        except UnicodeDecodeError:
            self._fail(Failure.MALFORMED, f"{name} is not UTF-8 text")
        try:
            checkpoint, verified = open_checkpoint(note, self._keys)
        except NoteNotVerified as error:
            self._fail(
                Failure.UNTRUSTED_CHECKPOINT,
                f"{name}: {error.detail} (signed by {_signers(note)}; trusted: "
                f"{', '.join(k.name + '+' + k.id_hex for k in self._keys)})",
            )
        except MalformedNote as error:
            self._fail(Failure.MALFORMED, f"{name}: {error.detail}")
        if checkpoint.size != size:
            self._fail(Failure.MALFORMED, f"{name} signs tree size {checkpoint.size}")
        if checkpoint.origin != manifest.origin:
            self._fail(
                Failure.UNTRUSTED_CHECKPOINT,
                f"{name} is a checkpoint of another log than the one {fmt.MANIFEST} names",
            )
        key = verified[0]
        self._checked.append(CheckedCheckpoint(size, checkpoint.root, f"{key.name}+{key.id_hex}"))
        return checkpoint.root

    def _proofs(
        self, manifest: fmt.Manifest, roots: dict[int, bytes]
    ) -> tuple[fmt.Proofs, CompactRange]:
        try:
            proofs = fmt.parse_proofs(self._read(fmt.PROOFS, fmt.MAX_JSON_BYTES))
        except fmt.FormatError as error:
            self._fail(Failure.MALFORMED, str(error))
        prefix = manifest.first_seq - 1
        if proofs.prefix_size != prefix:
            self._fail(
                Failure.MALFORMED,
                f"{fmt.PROOFS}: the prefix is the tree of {proofs.prefix_size} leaves, not the "
                f"{prefix} before the first entry",
            )
        if prefix == 0 and proofs.prefix_chain_hash != GENESIS_HASH:
            self._fail(Failure.MALFORMED, f"{fmt.PROOFS}: the chain starts from 32 zero bytes")
        try:
            tree = CompactRange(prefix, proofs.prefix_subtrees)
        except ValueError as error:
            self._fail(Failure.MALFORMED, f"{fmt.PROOFS} prefix subtrees: {error}")
        needed = fmt.consistency_chain(manifest.last_seq, manifest.checkpoints)
        given = [(step.first, step.second) for step in proofs.consistency]
        if given != needed:
            wanted = ", ".join(f"{a} to {b}" for a, b in needed) or "none"
            self._fail(
                Failure.MALFORMED,
                f"{fmt.PROOFS}: the consistency proofs are not the ones the checkpoints need "
                f"(tree sizes {wanted})",
            )
        if prefix in roots:
            if tree.root() != roots[prefix]:
                self._fail(
                    Failure.ROOT_MISMATCH,
                    f"the tree before the first entry ({fmt.PROOFS} prefix) does not give the "
                    f"root signed in the checkpoint at size {prefix}",
                )
            self._matched = prefix
        return proofs, tree

    def _entries(
        self,
        manifest: fmt.Manifest,
        entries: BinaryIO,
        previous: bytes,
        tree: CompactRange,
        roots: dict[int, bytes],
    ) -> bytes:
        """Walk every entry; the chain hash of the last one."""
        sha256 = hashlib.sha256
        total = manifest.count
        previous_leaf = None
        earlier: tuple[bytes, fmt.ChainRecord] | None = None
        for seq in range(manifest.first_seq, manifest.last_seq + 1):
            record = self._chain_record(seq, earlier)
            link = sha256(previous + seq.to_bytes(8, "big") + record.leaf).digest()
            if link != record.chain:
                self._fail(
                    Failure.CHAIN_BROKEN,
                    f"the chain record of seq {seq} does not link to the one before it "
                    f"({fmt.CHAIN} line {self._chain.line_number})",
                    seq=seq,
                )
            body = self._entry(entries, seq)
            leaf = sha256(LEAF_PREFIX + body).digest()
            if leaf != record.leaf:
                self._altered(seq, leaf, previous_leaf)
            tree.append(leaf)
            earlier = (previous, record)
            previous, previous_leaf = link, leaf
            self._verified += 1
            if seq in roots:
                self._root_matches(manifest, seq, tree.root(), roots[seq])
            if self._progress is not None and self._verified % PROGRESS_EVERY == 0:
                self._progress(self._verified, total)
        if self._progress is not None:
            self._progress(self._verified, total)
        return previous

    def _root_matches(self, manifest: fmt.Manifest, size: int, root: bytes, signed: bytes) -> None:
        if root != signed:
            start = manifest.first_seq if self._matched is None else self._matched + 1
            before = (
                f" (or the tree before seq {manifest.first_seq} in {fmt.PROOFS})"
                if self._matched is None and manifest.first_seq > 1
                else ""
            )
            self._fail(
                Failure.ROOT_MISMATCH,
                f"the entries through seq {size}{before} do not give the root signed in the "
                f"checkpoint at size {size}: every entry passed its own checks, so entries "
                f"from seq {start} to {size} were rewritten together with their recorded hashes",
                suspects=(start, size),
            )
        self._matched = size

    def _chain_record(
        self, seq: int, earlier: tuple[bytes, fmt.ChainRecord] | None
    ) -> fmt.ChainRecord:
        """The chain record of `seq`; `earlier` is the previous seq's record and the chain
        hash before it, to tell a repeated record from a second one at that seq."""
        line = self._chain.next_line()
        if not line:
            self._fail(
                Failure.MISSING_ENTRY,
                f"{fmt.CHAIN} ends before seq {seq}: the chain records of seq {seq} to "
                f"{self._last} are missing",
                seq=seq,
            )
        if not line.endswith(fmt.NEWLINE):
            cut = len(line) < fmt.CHAIN_LINE_BYTES
            self._fail(
                Failure.MALFORMED,
                f"{fmt.CHAIN} line {self._chain.line_number} (seq {seq}) "
                + ("is cut short" if cut else "is not a chain record"),
                seq=seq,
            )
        try:
            record = fmt.parse_chain_line(line[:-1])
        except fmt.FormatError as error:
            self._fail(
                Failure.MALFORMED, f"{fmt.CHAIN} line {self._chain.line_number}: {error}", seq=seq
            )
        if record.seq > seq:
            self._fail(
                Failure.MISSING_ENTRY,
                f"seq {seq} is missing from {fmt.CHAIN} (line {self._chain.line_number} holds seq "
                f"{record.seq})",
                seq=seq,
            )
        if earlier is not None and record.seq == seq - 1 and record != earlier[1]:
            before, _ = earlier
            link = hashlib.sha256(before + record.seq.to_bytes(8, "big") + record.leaf).digest()
            if link == record.chain:
                self._fork(seq, record)
        if record.seq < seq:
            self._fail(
                Failure.OUT_OF_ORDER,
                f"{fmt.CHAIN} line {self._chain.line_number} holds seq {record.seq} where seq "
                f"{seq} belongs (repeated or out of order)",
                seq=seq,
            )
        return record

    def _fork(self, seq: int, record: fmt.ChainRecord) -> NoReturn:
        """Two different records of the previous seq, each linking to the one before them:
        a forger computes a link as well as the ledger does, so either may be the one
        inserted. If the next record links to this one, the earlier one was."""
        following = self._chain.peek()
        if following is not None and following.seq == seq:
            link = hashlib.sha256(record.chain + seq.to_bytes(8, "big") + following.leaf).digest()
            if link == following.chain:
                self._fail(
                    Failure.OUT_OF_ORDER,
                    f"seq {record.seq} appears twice in {fmt.CHAIN} (lines "
                    f"{self._chain.line_number - 1} and {self._chain.line_number}) and the chain "
                    "goes on from the second: the first, and its entry, was inserted",
                    seq=record.seq,
                )
        self._fail(
            Failure.OUT_OF_ORDER,
            f"seq {record.seq} appears twice in {fmt.CHAIN} (lines "
            f"{self._chain.line_number - 1} and {self._chain.line_number}): one of the two, "
            "and its entry, was inserted",
            suspects=(record.seq, seq),
        )

    @property
    def _first(self) -> int:
        return self._manifest.first_seq if self._manifest else 1

    @property
    def _last(self) -> int:
        return self._manifest.last_seq if self._manifest else 0

    def _entry(self, entries: BinaryIO, seq: int) -> bytes:
        line = entries.readline(fmt.MAX_ENTRY_BYTES + 1)
        if not line:
            self._fail(
                Failure.MISSING_ENTRY,
                f"{fmt.ENTRIES} ends before seq {seq}: the entries of seq {seq} to "
                f"{self._last} are missing",
                seq=seq,
            )
        if not line.endswith(fmt.NEWLINE):
            if len(line) > fmt.MAX_ENTRY_BYTES:
                self._fail(
                    Failure.MALFORMED,
                    f"the entry at seq {seq} is longer than {fmt.MAX_ENTRY_BYTES} bytes",
                    seq=seq,
                )
            self._fail(
                Failure.MALFORMED,
                f"{fmt.ENTRIES} is cut short in the entry of seq {seq} (it has no newline)",
                seq=seq,
            )
        return line[:-1]

    def _altered(self, seq: int, leaf: bytes, previous_leaf: bytes | None) -> NoReturn:
        following = self._chain.peek()
        if following is not None and following.seq == seq + 1 and following.leaf == leaf:
            why = (
                f"it is the entry recorded for seq {seq + 1}: the entry of seq {seq} was removed "
                "or moved"
            )
        elif previous_leaf is not None and leaf == previous_leaf:
            why = f"it repeats the entry of seq {seq - 1}: an entry was inserted"
        else:
            why = "its bytes were changed, or an entry was inserted, removed or moved here"
        self._fail(
            Failure.ENTRY_ALTERED,
            f"the entry at seq {seq} ({fmt.ENTRIES} line {seq - self._first + 1}) does not hash "
            f"to the leaf recorded for it ({why})",
            seq=seq,
        )

    def _nothing_after(self, manifest: fmt.Manifest, entries: BinaryIO) -> None:
        after = manifest.last_seq + 1
        if entries.read(1):
            self._fail(
                Failure.UNEXPECTED_ENTRY,
                f"{fmt.ENTRIES} holds an entry after seq {manifest.last_seq}, beyond the "
                f"bundle's range ({fmt.MANIFEST})",
                seq=after,
            )
        if self._chain.next_line():
            self._fail(
                Failure.UNEXPECTED_ENTRY,
                f"{fmt.CHAIN} holds a record after seq {manifest.last_seq}, beyond the bundle's "
                f"range ({fmt.MANIFEST})",
                seq=after,
            )

    def _consistency(
        self, manifest: fmt.Manifest, proofs: fmt.Proofs, root: bytes, roots: dict[int, bytes]
    ) -> None:
        known = {**roots, manifest.last_seq: root}
        for step in proofs.consistency:
            if verify_consistency(
                step.first, step.second, known[step.first], known[step.second], step.proof
            ):
                continue
            start = manifest.first_seq if self._matched is None else self._matched + 1
            if step.first == manifest.last_seq and start <= manifest.last_seq:
                # Nothing signed vouched for the entries since `start`: they may be the cause.
                self._fail(
                    Failure.INCONSISTENT,
                    f"the checkpoint at size {step.second} does not extend the tree of the "
                    f"entries through seq {step.first} ({fmt.PROOFS}): the entries from seq "
                    f"{start} to {step.first} were rewritten together with their recorded "
                    "hashes, or the proof was altered",
                    suspects=(start, step.first),
                )
            self._fail(
                Failure.INCONSISTENT,
                f"the checkpoint at size {step.second} does not extend the tree of size "
                f"{step.first} ({fmt.PROOFS}): the proof was altered, or the log signed two "
                "different histories",
            )


class _ChainReader:
    """chain.jsonl read line by line, with one line of look-ahead."""

    def __init__(self, stream: BinaryIO | None) -> None:
        self._stream = stream
        self._pending: bytes | None = None
        self.line_number = 0

    def _read(self) -> bytes:
        return self._stream.readline(fmt.CHAIN_LINE_BYTES) if self._stream else b""

    def next_line(self) -> bytes:
        """The next line (empty at the end), with its newline if it has one."""
        line = self._pending if self._pending is not None else self._read()
        self._pending = None
        self.line_number += 1
        return line

    def peek(self) -> fmt.ChainRecord | None:
        """The next chain record, if it reads as one (for naming what went wrong)."""
        if self._pending is None:
            self._pending = self._read()
        line = self._pending
        if not line.endswith(fmt.NEWLINE):
            return None
        try:
            return fmt.parse_chain_line(line[:-1])
        except fmt.FormatError:
            return None


def _reason(error: OSError) -> str:
    return error.strerror or type(error).__name__


def _signers(note: str) -> str:
    """The keys whose signature lines a note carries (name+ID), for the message."""
    try:
        signatures = parse_note(note).signatures
    except MalformedNote:
        return "no readable key"
    return ", ".join(f"{s.name}+{s.key_id.hex()}" for s in signatures) or "no key"
