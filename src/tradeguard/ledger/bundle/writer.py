"""Writing an audit bundle (docs/audit-bundle.md) to a directory, streamed: entries go to disk
as they come, so a bundle of millions of entries needs no more memory than one.

The bundle is written into a fresh directory beside the target and renamed into place only
when complete (after an fsync of every file), so the target either does not exist or holds a
whole bundle; a bundle is never written over anything (a non-empty target is refused).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from tradeguard.core.errors import InvalidInput, LedgerIntegrityError
from tradeguard.ledger.bundle import format as fmt
from tradeguard.ledger.tree.note import VerifierKey

BUFFER_BYTES = 1 << 20


class BundleTargetRefused(InvalidInput):
    """The output directory exists and is not empty, or is not a directory."""

    slug = "bundle-target-refused"
    title = "The bundle's directory cannot be written"


class EntryNotExportable(LedgerIntegrityError):
    """A stored entry the format cannot carry (a newline byte): the ledger was altered."""

    slug = "entry-not-exportable"
    title = "A ledger entry cannot be exported"


def check_target(target: Path) -> None:
    """Refuse a target that is a file, or a directory with anything in it."""
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise BundleTargetRefused(f"{target} exists and is not a directory")
    if target.is_dir():
        with os.scandir(target) as found:
            if next(found, None) is not None:
                raise BundleTargetRefused(
                    f"{target} is not empty; a bundle is only written to a new or empty directory"
                )


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BundleWriter:
    """One bundle being written. Use as a context manager: an exception (or leaving without
    commit) removes everything written so far."""

    def __init__(self, target: Path, *, first_seq: int) -> None:
        if first_seq < 1:
            raise ValueError("the first entry's seq is 1 or more")
        check_target(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        self._target = target
        self._staging = Path(
            tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
        )
        self._first = first_seq
        self._next = first_seq
        self._streams: list[BinaryIO] = []
        self._done = False
        try:
            # Closed in commit or abort.
            self._entries = self._open(fmt.ENTRIES)
            self._chain = self._open(fmt.CHAIN)
        except OSError:
            self.abort()
            raise

    def _open(self, name: str) -> BinaryIO:
        stream = open(self._staging / name, "wb", buffering=BUFFER_BYTES)  # noqa: SIM115
        self._streams.append(stream)
        return stream

    def __enter__(self) -> BundleWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if not self._done:
            self.abort()

    @property
    def written(self) -> int:
        return self._next - self._first

    def add_entry(self, seq: int, body: bytes, leaf: bytes, chain: bytes) -> None:
        """Append the next entry: its stored bytes and the hashes the ledger recorded for it."""
        if seq != self._next:
            raise LedgerIntegrityError(f"seq {self._next} is missing from the ledger's chain")
        if fmt.NEWLINE in body:
            # Canonical JSON (RFC 8785) never holds a raw newline; a stored body that does was
            # not written by the ledger.
            raise EntryNotExportable(
                f"the stored event at seq {seq} holds a newline byte: it is not an entry the "
                "ledger wrote (run `tradeguard audit verify`)"
            )
        self._entries.write(body)
        self._entries.write(fmt.NEWLINE)
        self._chain.write(fmt.chain_line(seq, leaf, chain))
        self._next += 1

    def commit(
        self,
        *,
        manifest: fmt.Manifest,
        proofs: fmt.Proofs,
        checkpoints: Mapping[int, str],
        keys: Sequence[VerifierKey],
    ) -> Path:
        """Write the rest, sync it all and move the bundle into place; its final path."""
        if (manifest.first_seq, manifest.last_seq) != (self._first, self._next - 1):
            raise ValueError("the manifest's range is not the entries written")
        if sorted(checkpoints) != list(manifest.checkpoints):
            raise ValueError("the manifest's checkpoints are not the ones given")
        for stream in self._streams:
            stream.flush()
            os.fsync(stream.fileno())
            stream.close()
        (self._staging / fmt.CHECKPOINTS).mkdir()
        files = {
            fmt.PROOFS: fmt.dump_json(proofs.as_json()),
            fmt.KEYS: "".join(key.vkey + "\n" for key in keys).encode(),
            **{
                f"{fmt.CHECKPOINTS}/{fmt.checkpoint_file_name(size)}": note.encode()
                for size, note in checkpoints.items()
            },
            # Last: a directory with a manifest was written through.
            fmt.MANIFEST: fmt.dump_json(manifest.as_json()),
        }
        for name, data in files.items():
            with open(self._staging / name, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        _fsync_directory(self._staging / fmt.CHECKPOINTS)
        _fsync_directory(self._staging)
        try:
            # rename(2) replaces an empty directory and fails on one that is not empty, so a
            # directory filled meanwhile is never written over.
            self._staging.rename(self._target)
        except OSError:
            self.abort()
            raise BundleTargetRefused(
                f"{self._target} could not be replaced (was something written to it meanwhile?)"
            ) from None
        _fsync_directory(self._target.parent)
        self._done = True
        return self._target

    def abort(self) -> None:
        """Remove the partial bundle."""
        for stream in self._streams:
            with contextlib.suppress(OSError):
                stream.close()
        shutil.rmtree(self._staging, ignore_errors=True)
        self._done = True
