"""The archive directory: files written once and never replaced (WORM-style), read back.

A file is written to a temporary name in the same directory, synced, made read-only, then
*linked* to its final name and the temporary name removed; the directory is synced after.
Linking is atomic like a rename, but unlike a rename it fails when the name exists, so an
archive file is never replaced, not even by a second `seal` racing this one. Put the
directory on storage that enforces retention (object lock, WORM volumes): read-only
permissions stop mistakes, not an administrator.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from tradeguard.ledger.archive.errors import ArchiveUnavailable, SegmentExists
from tradeguard.ledger.archive.format import MANIFEST_SUFFIX, SEGMENT_SUFFIX, parse_name

READ_ONLY = 0o444


def ensure_directory(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True, mode=0o750)


def write_once(path: Path, data: bytes) -> None:
    """Write `data` to `path`, which must not exist; durable when this returns."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, READ_ONLY)
        try:
            os.link(temporary, path)
        except FileExistsError:
            raise SegmentExists(
                f"{path.name} already exists; archive files are never replaced"
            ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class ListedSegment:
    """A segment's files as found in the directory (either may be missing)."""

    name: str
    first_seq: int
    last_seq: int
    segment: Path | None
    manifest: Path | None


def list_segments(directory: Path) -> tuple[list[ListedSegment], list[str]]:
    """The segments in the directory by first seq, and the names of other files in it."""
    if not directory.is_dir():
        raise ArchiveUnavailable(f"{directory} is not a directory")
    found: dict[str, dict[str, Path]] = {}
    others = []
    for path in directory.iterdir():
        for suffix in (SEGMENT_SUFFIX, MANIFEST_SUFFIX):
            if path.name.endswith(suffix) and parse_name(path.name[: -len(suffix)]):
                found.setdefault(path.name[: -len(suffix)], {})[suffix] = path
                break
        else:
            others.append(path.name)
    listed = []
    for name, paths in found.items():
        first, last = parse_name(name) or (0, 0)
        listed.append(
            ListedSegment(name, first, last, paths.get(SEGMENT_SUFFIX), paths.get(MANIFEST_SUFFIX))
        )
    listed.sort(key=lambda s: (s.first_seq, s.last_seq))
    return listed, sorted(others)


def read_file(path: Path, *, limit: int) -> bytes:
    """A file's bytes, refusing one larger than `limit` (never read a crafted huge file)."""
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ArchiveUnavailable(f"{path.name} is larger than any segment can be")
    return data
