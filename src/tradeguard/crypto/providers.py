"""Key-encrypting keys (KEKs): where the keys that wrap the data keys come from.

Data keys live in the database, wrapped; the KEK never does (PCI DSS 3.6.1: key-encrypting
keys stored apart from the data-encrypting keys). `LocalFileKek` is the default: a 256-bit
master key in a file only its owner may read (mode 0600, refused otherwise), optionally
sealed under a passphrase (scrypt, RFC 7914). A KMS (AWS KMS, GCP KMS, Vault transit)
implements `KekProvider` in production: it wraps and unwraps 32-byte keys and never hands
out its own.
"""

from __future__ import annotations

import os
import secrets
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from tradeguard.core.errors import ConfigurationError
from tradeguard.crypto.envelope import KEY_BYTES, NONCE_BYTES, EnvelopeBroken, unwrap_key, wrap_key
from tradeguard.crypto.legacy import LegacyFieldKeys, derive, master_key_id

# A passphrase-sealed master key file: magic, scrypt log2(N), r, p, salt, nonce, sealed key.
PROTECTED_MAGIC: Final = b"TGMK\x01"
_PROTECTED_HEADER: Final = struct.Struct(">5sBBB16s")
SALT_BYTES: Final = 16
# scrypt at N = 2^17, r = 8, p = 1: 128 MiB and about half a second, once per process start
# (the OWASP recommendation for scrypt).
DEFAULT_SCRYPT_LOG_N: Final = 17
MAX_KEY_FILE_BYTES: Final = 4096


class KeyFileError(ConfigurationError):
    slug = "key-file"
    title = "The master key file cannot be used"
    operator_detail = True  # names the file


class KekProvider(Protocol):
    """Wraps and unwraps data keys; a KMS implements this in production."""

    @property
    def kek_id(self) -> str:
        """A public, stable name of the key-encrypting key (stored beside each wrapped key)."""
        ...

    async def wrap(self, key: bytes, *, associated_data: bytes) -> bytes: ...

    async def unwrap(self, wrapped: bytes, *, associated_data: bytes) -> bytes:
        """Raises EnvelopeBroken when `wrapped` does not open under this KEK and context."""
        ...

    @property
    def legacy(self) -> LegacyFieldKeys | None:
        """The HKDF keys of data sealed before versioned keys (a local master key only)."""
        ...


class LocalFileKek:
    """A KEK derived (HKDF) from the master key in a local file."""

    def __init__(self, master: bytes) -> None:
        if len(master) != KEY_BYTES:
            raise ValueError("the master key must be 32 bytes")
        self._kek = AESGCM(derive(master, b"tradeguard key-encrypting key v1"))
        self._legacy = LegacyFieldKeys(master)
        self._kek_id = "local:" + master_key_id(master).hex()

    @classmethod
    def load_or_create(
        cls,
        path: Path,
        *,
        passphrase: str | None = None,
        scrypt_log_n: int = DEFAULT_SCRYPT_LOG_N,
    ) -> LocalFileKek:
        if not path.exists():
            create_master_key_file(path, secrets.token_bytes(KEY_BYTES), passphrase, scrypt_log_n)
        return cls(read_master_key(path, passphrase=passphrase))

    @property
    def kek_id(self) -> str:
        return self._kek_id

    @property
    def legacy(self) -> LegacyFieldKeys:
        return self._legacy

    async def wrap(self, key: bytes, *, associated_data: bytes) -> bytes:
        return wrap_key(self._kek, key, associated_data)

    async def unwrap(self, wrapped: bytes, *, associated_data: bytes) -> bytes:
        return unwrap_key(self._kek, wrapped, associated_data)


@dataclass(frozen=True, slots=True)
class KeyFileInfo:
    protected: bool
    fingerprint: str


def read_master_key(path: Path, *, passphrase: str | None = None) -> bytes:
    """The master key in `path`, refusing a file that anyone but its owner could read."""
    raw = _read_owner_only(path)
    if raw.startswith(PROTECTED_MAGIC):
        if not passphrase:
            raise KeyFileError(
                f"{path} is sealed under a passphrase; set TRADEGUARD_MASTER_KEY_PASSPHRASE"
            )
        return _unseal(raw, passphrase, path)
    if len(raw) != KEY_BYTES:
        raise KeyFileError(f"{path} is not a master key file (expected {KEY_BYTES} bytes)")
    if passphrase:
        # A passphrase is configured: a bare key in its place (copied in, or written by an
        # older `keys combine`) would silently drop the protection the operator asked for.
        raise KeyFileError(
            f"{path} is not sealed under a passphrase, but a master-key passphrase is set;"
            " unset the passphrase, or seal the key (docs/security/key-management.md)"
        )
    return raw


def create_master_key_file(
    path: Path, master: bytes, passphrase: str | None, scrypt_log_n: int = DEFAULT_SCRYPT_LOG_N
) -> None:
    """Write a new key file (mode 0600); refuses to overwrite one."""
    data = _seal(master, passphrase, scrypt_log_n) if passphrase else master
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def replace_master_key_file(
    path: Path, master: bytes, passphrase: str | None, scrypt_log_n: int = DEFAULT_SCRYPT_LOG_N
) -> None:
    """Rewrite a key file atomically (write a new file, then rename over the old one)."""
    temporary = path.with_name(path.name + ".new")
    temporary.unlink(missing_ok=True)
    create_master_key_file(temporary, master, passphrase, scrypt_log_n)
    temporary.replace(path)


def _read_owner_only(path: Path) -> bytes:
    try:
        # O_NOFOLLOW: a symlink planted in place of the key file is refused, not followed.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise KeyFileError(f"no master key file at {path}") from None
    except OSError as exc:
        raise KeyFileError(f"cannot open the master key file {path} ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        # fstat on the open file, not stat on the path: no window to swap the file between.
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"{path} is not a regular file")
        if info.st_mode & 0o077:
            raise KeyFileError(
                f"{path} is readable or writable by others (mode {stat.S_IMODE(info.st_mode):04o});"
                f" run: chmod 600 {path}"
            )
        if info.st_uid != os.geteuid():
            raise KeyFileError(f"{path} is not owned by the user running tradeguard")
        return handle.read(MAX_KEY_FILE_BYTES + 1)


def _scrypt(passphrase: str, salt: bytes, log_n: int) -> bytes:
    return Scrypt(salt=salt, length=KEY_BYTES, n=2**log_n, r=8, p=1).derive(passphrase.encode())


def _seal(master: bytes, passphrase: str, log_n: int) -> bytes:
    if not 14 <= log_n <= 22:
        raise ValueError("scrypt log2(N) must be between 14 and 22")
    salt = secrets.token_bytes(SALT_BYTES)
    header = _PROTECTED_HEADER.pack(PROTECTED_MAGIC, log_n, 8, 1, salt)
    return header + wrap_key(AESGCM(_scrypt(passphrase, salt, log_n)), master, header)


def _unseal(raw: bytes, passphrase: str, path: Path) -> bytes:
    size = _PROTECTED_HEADER.size
    if len(raw) != size + NONCE_BYTES + KEY_BYTES + 16:
        raise KeyFileError(f"{path} is damaged (unexpected length)")
    _, log_n, r, p, salt = _PROTECTED_HEADER.unpack_from(raw)
    if not 14 <= log_n <= 22 or (r, p) != (8, 1):
        raise KeyFileError(f"{path} is damaged (unexpected scrypt parameters)")
    try:
        return unwrap_key(AESGCM(_scrypt(passphrase, salt, log_n)), raw[size:], raw[:size])
    except (EnvelopeBroken, InvalidTag):
        raise KeyFileError(f"the passphrase does not open {path}") from None


def key_file_info(path: Path, *, passphrase: str | None = None) -> KeyFileInfo:
    raw = _read_owner_only(path)
    master = read_master_key(path, passphrase=passphrase)
    return KeyFileInfo(raw.startswith(PROTECTED_MAGIC), master_key_id(master).hex())
