"""Access-token signing keys on disk: one active PEM and the retired ones kept for verifying.

Files live in `<data_dir>/keys/jwt/` with mode 0600: `active.pem` and `retired-<kid>.pem`.
Rotation writes the new key before moving the old one, so a crash leaves a usable ring.
"""

from __future__ import annotations

import os
from pathlib import Path

from tradeguard.identity.signing_keys import SigningKey, SigningKeyRing


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
    active_path = directory / "active.pem"
    if not active_path.exists():
        _write_private(active_path, SigningKey.generate().to_pem())
    retired = [p.read_bytes() for p in sorted(directory.glob("retired-*.pem"))]
    return SigningKeyRing.from_pems(active_path.read_bytes(), retired)


def rotate_ring(directory: Path) -> SigningKeyRing:
    """Make a new active key; the previous one is kept to verify tokens it already signed."""
    ring = load_or_create_ring(directory)
    previous = ring.active
    _write_private(directory / f"retired-{previous.kid}.pem", previous.to_pem())
    _write_private(directory / "active.pem", SigningKey.generate().to_pem())
    return load_or_create_ring(directory)
