"""The ledger's checkpoint signing key on disk: one active Ed25519 key, and the public keys
of the retired ones so checkpoints they signed stay verifiable.

Files live in `<data_dir>/keys/ledger/` (directory 0700): `active.pem` (PKCS #8, mode 0600)
and `retired-<key ID>.vkey`, the retired key's public verifier key. A retired private key is
not kept: nothing needs it, and a stolen one could sign checkpoints that look old. Rotation
writes the retired public key before replacing the private one, so a crash in between leaves
a usable directory (at worst the active key is also listed as retired, which is harmless).

`signed.note` is the last checkpoint this log signed, kept here and not in the database so a
rewrite of the database (its checkpoint rows deleted with the rest) cannot make the signer
forget what it signed before (c2sp.org/tlog-checkpoint: never sign a checkpoint inconsistent
with an earlier one). It belongs to the directory, not to a key: a rotation carries it.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tradeguard.core.errors import TradeguardError
from tradeguard.ledger.tree.errors import MalformedNote, SignerStateUnreadable
from tradeguard.ledger.tree.note import Checkpoint, NoteSigner, VerifierKey, open_checkpoint

ACTIVE_KEY_FILE = "active.pem"
RETIRED_KEY_GLOB = "retired-*.vkey"
SIGNED_STATE_FILE = "signed.note"


@dataclass(frozen=True, slots=True)
class LogKeys:
    """The key that signs new checkpoints and the retired keys that signed older ones."""

    active: NoteSigner
    retired: tuple[VerifierKey, ...] = ()

    @property
    def verifiers(self) -> list[VerifierKey]:
        """Every public key, the active one first."""
        return [self.active.key, *(k for k in self.retired if k.id != self.active.key.id)]

    def published(self) -> str:
        """The verifier keys, one per line: what a third party needs to check checkpoints."""
        return "".join(key.vkey + "\n" for key in self.verifiers)


def _write_private(path: Path, data: bytes) -> None:
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _new_private_pem() -> bytes:
    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _read_active(directory: Path, name: str) -> NoteSigner:
    key = serialization.load_pem_private_key((directory / ACTIVE_KEY_FILE).read_bytes(), None)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise MalformedNote(f"{directory / ACTIVE_KEY_FILE} is not an Ed25519 private key")
    return NoteSigner(name, key)


MAX_VKEY_FILE_BYTES = 1 << 20


def read_verifier_keys(path: Path) -> list[VerifierKey]:
    """Verifier keys from a file of vkey lines (blank lines and # comments skipped)."""
    with path.open("rb") as handle:
        # Bounded: a key file named by a user may be /dev/zero or a huge file.
        data = handle.read(MAX_VKEY_FILE_BYTES + 1)
    if len(data) > MAX_VKEY_FILE_BYTES:
        raise MalformedNote(f"a file of verifier keys is at most {MAX_VKEY_FILE_BYTES} bytes")
    keys = []
    for line in data.decode("utf-8").splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keys.append(VerifierKey.parse(stripped))
    return keys


def load_log_keys(directory: Path, name: str) -> LogKeys:
    """The keys as on disk; the active key signs under `name` (the log's origin)."""
    retired = []
    for path in sorted(directory.glob(RETIRED_KEY_GLOB)):
        retired.extend(read_verifier_keys(path))
    return LogKeys(_read_active(directory, name), tuple(retired))


def load_or_create_log_keys(directory: Path, name: str) -> LogKeys:
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    if not (directory / ACTIVE_KEY_FILE).exists():
        _write_private(directory / ACTIVE_KEY_FILE, _new_private_pem())
    return load_log_keys(directory, name)


def rotate_log_key(directory: Path, name: str) -> tuple[LogKeys, VerifierKey]:
    """Make a new active key; the old one's public key is kept. Returns the new keys and the
    key just retired."""
    previous = load_or_create_log_keys(directory, name).active.key
    _write_private(directory / f"retired-{previous.id_hex}.vkey", (previous.vkey + "\n").encode())
    _write_private(directory / ACTIVE_KEY_FILE, _new_private_pem())
    return load_log_keys(directory, name), previous


def key_files_fingerprint(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """What changes when a key file is written or replaced (a rotation by another process)."""
    entries = []
    for path in [directory / ACTIVE_KEY_FILE, *directory.glob(RETIRED_KEY_GLOB)]:
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        entries.append((path.name, stat.st_ino, stat.st_mtime_ns))
    return tuple(sorted(entries))


def read_signed_state(
    directory: Path, origin: str, keys: Iterable[VerifierKey]
) -> Checkpoint | None:
    """The last checkpoint this log signed, as remembered beside its key; None when there is
    no such file yet (a new log, or one signed before the file existed).

    It must verify with one of the log's keys (active or retired) and name this log:
    anything else is refused rather than ignored, since ignoring it would let whoever
    replaced it make the signer forget what it signed.
    """
    path = directory / SIGNED_STATE_FILE
    try:
        note = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise SignerStateUnreadable(
            f"{path} (the last signed checkpoint) cannot be read ({type(error).__name__}); "
            "nothing is signed"
        ) from None
    try:
        checkpoint, _ = open_checkpoint(note, keys, origin=origin)
    except TradeguardError as error:
        raise SignerStateUnreadable(
            f"{path} (the last signed checkpoint) is not a checkpoint of this log signed by "
            f"its keys ({error.detail}); nothing is signed"
        ) from None
    return checkpoint


def remember_signed(directory: Path, note: str, checkpoint: Checkpoint) -> None:
    """Keep `note` as the last signed checkpoint (atomically: temp file, fsync, rename;
    mode 0600). Never moves back: a smaller tree than the one remembered is left out, so two
    signers finishing out of order keep the larger."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        # The directory's lock serializes the read-compare-replace between processes.
        fcntl.flock(fd, fcntl.LOCK_EX)
        path = directory / SIGNED_STATE_FILE
        try:
            current = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            current = None
        if current is not None and _remembered_size(current) > checkpoint.size:
            return
        _write_private(path, note.encode())
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _remembered_size(note: str) -> int:
    lines = note.split("\n")
    try:
        return int(lines[1])
    except (IndexError, ValueError):
        return -1
