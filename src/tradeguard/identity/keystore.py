"""Access-token signing keys on disk: one active PEM and the retired ones kept for verifying.

Files live in `<data_dir>/keys/jwt/` with mode 0600: `active.pem` and `retired-<kid>.pem`.
Rotation writes the new key before moving the old one, so a crash leaves a usable ring.
A running server watches the directory (`watch_signing_keys`), so `tradeguard keys
rotate-jwt` takes effect without a restart, in every process that shares the directory.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from tradeguard.core.workers import pause
from tradeguard.identity.signing_keys import SigningKey, SigningKeyRing

ACTIVE_KEY_FILE = "active.pem"
RETIRED_KEY_GLOB = "retired-*.pem"
# A stat of a handful of files per second is negligible; a token signed by a key rotated in
# another process is refused here for at most this long.
KEY_WATCH_INTERVAL_SECONDS = 1.0

log = logging.getLogger(__name__)

# (file name, inode, modification time in ns, size) of every key file.
Fingerprint = tuple[tuple[str, int, int, int], ...]


def _write_private(path: Path, data: bytes) -> None:
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def load_or_create_ring(directory: Path) -> SigningKeyRing:
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    active_path = directory / ACTIVE_KEY_FILE
    if not active_path.exists():
        _write_private(active_path, SigningKey.generate().to_pem())
    return _read_ring(directory)


def _read_ring(directory: Path) -> SigningKeyRing:
    retired = [p.read_bytes() for p in sorted(directory.glob(RETIRED_KEY_GLOB))]
    return SigningKeyRing.from_pems((directory / ACTIVE_KEY_FILE).read_bytes(), retired)


def rotate_ring(directory: Path) -> SigningKeyRing:
    """Make a new active key; the previous one is kept to verify tokens it already signed."""
    ring = load_or_create_ring(directory)
    previous = ring.active
    _write_private(directory / f"retired-{previous.kid}.pem", previous.to_pem())
    _write_private(directory / ACTIVE_KEY_FILE, SigningKey.generate().to_pem())
    return load_or_create_ring(directory)


def key_files_fingerprint(directory: Path) -> Fingerprint:
    """What changes whenever a key file is written, replaced or removed."""
    entries = []
    for path in [directory / ACTIVE_KEY_FILE, *directory.glob(RETIRED_KEY_GLOB)]:
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        entries.append((path.name, stat.st_ino, stat.st_mtime_ns, stat.st_size))
    return tuple(sorted(entries))


class SigningKeyWatcher:
    """Re-reads the key directory into a live ring whenever its files change."""

    def __init__(self, directory: Path, ring: SigningKeyRing) -> None:
        self._directory = directory
        self._ring = ring
        # None: the first check always re-reads, so a rotation between the ring's first load
        # and the watcher's start is not missed.
        self._fingerprint: Fingerprint | None = None

    def changed_ring(self) -> SigningKeyRing | None:
        """The ring as now on disk if the files changed since the last look, else None.

        Raises when the files cannot be read (a half-copied directory, a bad PEM); the
        fingerprint is then not recorded, so the next look tries again.
        """
        fingerprint = key_files_fingerprint(self._directory)
        if fingerprint == self._fingerprint:
            return None
        ring = _read_ring(self._directory)
        self._fingerprint = fingerprint
        return ring

    def adopt(self, ring: SigningKeyRing) -> bool:
        """Install a re-read ring; True when the active key changed."""
        before = self._ring.active.kid
        self._ring.adopt(ring)
        return self._ring.active.kid != before


async def watch_signing_keys(
    watcher: SigningKeyWatcher,
    *,
    interval_seconds: float = KEY_WATCH_INTERVAL_SECONDS,
    stop: asyncio.Event | None = None,
) -> None:
    """Keep a server's signing keys in step with its key directory until `stop` is set."""
    while stop is None or not stop.is_set():
        try:
            # File reads off the event loop; the swap itself happens on the loop, between
            # requests, so a request never sees half a ring.
            ring = await asyncio.to_thread(watcher.changed_ring)
            if ring is not None and watcher.adopt(ring):
                log.info(
                    "access tokens are now signed with key %s",
                    ring.active.kid,
                    extra={"retired_keys": len(ring.retired)},
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Keep signing with the keys in memory; say why the new files were not taken.
            log.warning(
                "signing keys on disk could not be read; still using the loaded keys",
                extra={"error": type(exc).__name__},
            )
        if await pause(stop, interval_seconds):
            return
