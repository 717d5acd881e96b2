"""SQLite backups through the online backup API (sqlite.org/backup.html).

The copy is made in one step, so it is one read transaction on the source: under WAL the
application keeps writing meanwhile, and the copy is the database as of one commit. (Step
by step, every write by another connection between two steps restarts the copy, which under
steady writes may never finish.) The copy is written to a file beside the source, with the
source's protection (same directory, same disk, mode 0600), read once into the encrypted
stream, and deleted; it is never held in memory whole.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from tradeguard.backup.errors import BackupRefused

SQLITE_MAGIC = b"SQLite format 3\x00"
# Files beside a database that belong to it: a restore must find none of them.
COMPANIONS = ("-wal", "-shm", "-journal")
BUSY_TIMEOUT_SECONDS = 30.0


def sqlite_version() -> str:
    return sqlite3.sqlite_version


def _new_private_file(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)


def _remove_with_companions(path: Path) -> None:
    for suffix in ("", *COMPANIONS):
        with contextlib.suppress(FileNotFoundError):
            Path(str(path) + suffix).unlink()


VERSION_TABLES = frozenset({"alembic_version", "vault_alembic_version"})


def _revision(connection: sqlite3.Connection, version_table: str) -> str | None:
    if version_table not in VERSION_TABLES:  # a constant of ours, never input
        raise ValueError(f"unknown version table {version_table!r}")
    try:
        row = connection.execute(f"SELECT version_num FROM {version_table}").fetchone()  # noqa: S608
    except sqlite3.Error:
        return None
    return None if row is None else str(row[0])


@contextmanager
def snapshot(
    source: Path, version_table: str = "alembic_version"
) -> Iterator[tuple[BinaryIO, int, str | None]]:
    """A consistent copy of `source`, open for reading: (file, size, schema revision)."""
    if not source.is_file():
        raise BackupRefused(f"no SQLite database at {source}")
    copy = source.with_name(f".{source.name}.backup-{secrets.token_hex(6)}")
    _new_private_file(copy)
    try:
        reader = sqlite3.connect(source, timeout=BUSY_TIMEOUT_SECONDS)
        writer = sqlite3.connect(copy)
        try:
            reader.backup(writer)  # pages=-1: the whole database in one step
            revision = _revision(writer, version_table)
            # The copy keeps the source's WAL flag in its header; make it a plain rollback
            # file, so the copy is this one file (the application switches WAL on again).
            writer.execute("PRAGMA journal_mode=DELETE")
        finally:
            writer.close()
            reader.close()
        with copy.open("rb") as handle:
            yield handle, os.fstat(handle.fileno()).st_size, revision
    finally:
        _remove_with_companions(copy)


def check_fresh_target(target: Path) -> None:
    """A restore writes only a database that does not exist yet (nor its companion files)."""
    for suffix in ("", *COMPANIONS):
        candidate = Path(str(target) + suffix)
        if candidate.exists() or candidate.is_symlink():
            raise BackupRefused(
                f"{candidate} exists; a restore only creates a new database (name a new path)"
            )
    if not target.parent.is_dir():
        raise BackupRefused(f"the directory {target.parent} does not exist")


def restore(blocks: Iterator[bytes], target: Path) -> None:
    """Write the restored database beside `target`, check it, then move it into place.

    `target` appears only once the whole stream authenticated and SQLite finds the file
    sound; a link, not a rename, so a file created at `target` meanwhile is never replaced.
    """
    check_fresh_target(target)
    partial = target.with_name(f".{target.name}.restore-{secrets.token_hex(6)}")
    _new_private_file(partial)
    try:
        with partial.open("wb") as handle:
            first = True
            for block in blocks:
                if first and not block.startswith(SQLITE_MAGIC):
                    raise BackupRefused("the backup's contents are not a SQLite database")
                first = False
                handle.write(block)
            handle.flush()
            os.fsync(handle.fileno())
        _check_integrity(partial)
        try:
            os.link(partial, target)
        except FileExistsError:
            raise BackupRefused(f"{target} was created during the restore; left as it is") from None
        _fsync_directory(target.parent)
    finally:
        _remove_with_companions(partial)


def _check_integrity(path: Path) -> None:
    connection = sqlite3.connect(path)
    try:
        result = connection.execute("PRAGMA integrity_check").fetchall()
    except sqlite3.DatabaseError as error:
        raise BackupRefused(f"the restored file is not a sound SQLite database ({error})") from None
    finally:
        connection.close()
    if result != [("ok",)]:
        raise BackupRefused("the restored file fails SQLite's integrity check")


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
