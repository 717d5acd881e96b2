"""The backup manifest: what a backup file is, signed with Ed25519 as a C2SP signed note
(c2sp.org/signed-note; the format of the ledger's checkpoints, under a key of its own).

The note's text is one line of canonical JSON (RFC 8785) and a newline; the signature line
follows. Everything a verifier compares is in it: the format, when and from what the backup
was made (backend, schema revision), the sizes, the chunk count, the SHA-256 of the
ciphertext file, and the data key sealed under the keyring's `backup` class with the class
key version that sealed it (itself wrapped by the key-encrypting key, so a restore needs the
master key or KMS and nothing from the lost database). Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import asdict, dataclass
from typing import Any, Final

import rfc8785

from tradeguard.backup.errors import BackupRejected, RejectReason
from tradeguard.backup.format import MAX_CHUNK_BYTES
from tradeguard.core.errors import TradeguardError
from tradeguard.ledger.tree.note import NoteSigner, VerifierKey, open_note, sign_note

MANIFEST_FORMAT: Final = 1
BACKENDS: Final = ("sqlite", "postgresql")
MAX_MANIFEST_BYTES: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class WrappedKeys:
    """How the backup's data key is protected, and what it takes to open it."""

    data_class: str
    version: int
    kek_id: str
    # The class key version as the key table holds it: wrapped by the key-encrypting key.
    wrapped_class_key: str  # base64
    # The backup's data key sealed under that class key (crypto/envelope.py format 0x02).
    sealed_data_key: str  # base64


@dataclass(frozen=True, slots=True)
class Manifest:
    format: int
    backup_id: str  # hex, also in the file's header
    created_at: str
    backend: str
    pg_schema: str | None
    schema_revision: str | None
    tools: dict[str, str]
    file_name: str
    compression: str
    cipher: str
    chunk_bytes: int
    chunk_count: int
    plaintext_bytes: int
    compressed_bytes: int
    ciphertext_bytes: int
    ciphertext_sha256: str
    keys: WrappedKeys
    tradeguard_version: str

    def text(self) -> str:
        return rfc8785.dumps(asdict(self)).decode("utf-8") + "\n"

    def sign(self, signer: NoteSigner) -> str:
        return sign_note(self.text(), signer)

    @property
    def backup_id_bytes(self) -> bytes:
        return bytes.fromhex(self.backup_id)

    def wrapped_class_key(self) -> bytes:
        return _b64(self.keys.wrapped_class_key)

    def sealed_data_key(self) -> bytes:
        return _b64(self.keys.sealed_data_key)


def _b64(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BackupRejected(RejectReason.MANIFEST_MALFORMED, "a key in it is not base64") from None


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def open_manifest(note: str, keys: list[VerifierKey]) -> tuple[Manifest, VerifierKey]:
    """The manifest, once a trusted key's signature on it verifies; BackupRejected if not."""
    if len(note.encode("utf-8")) > MAX_MANIFEST_BYTES:
        raise BackupRejected(RejectReason.MANIFEST_MALFORMED, "the manifest is too large")
    if not keys:
        raise BackupRejected(RejectReason.SIGNATURE_INVALID, "no public key to check it with")
    try:
        parsed, verified = open_note(note, keys)
    except TradeguardError as error:
        raise BackupRejected(
            RejectReason.SIGNATURE_INVALID,
            f"the manifest's signature does not verify ({error.detail})",
        ) from None
    return parse_manifest(parsed.text), verified[0]


def parse_manifest(text: str) -> Manifest:
    try:
        document = json.loads(text)
        keys = WrappedKeys(**document.pop("keys"))
        manifest = Manifest(keys=keys, **document)
    except (ValueError, TypeError, KeyError, AttributeError):
        raise BackupRejected(
            RejectReason.MANIFEST_MALFORMED, "the manifest is not a backup manifest"
        ) from None
    _check(manifest)
    return manifest


def _check(manifest: Manifest) -> None:
    """Types and ranges: a signed manifest from a buggy or hostile signer is still data."""
    checks: list[tuple[bool, str]] = [
        (manifest.format == MANIFEST_FORMAT, f"manifest format {manifest.format!r}"),
        (manifest.backend in BACKENDS, f"backend {manifest.backend!r}"),
        (_is_int(manifest.chunk_count) and manifest.chunk_count >= 1, "chunk count"),
        (
            _is_int(manifest.chunk_bytes) and 1 <= manifest.chunk_bytes <= MAX_CHUNK_BYTES,
            "chunk size",
        ),
        (_is_int(manifest.plaintext_bytes) and manifest.plaintext_bytes >= 0, "size"),
        (_is_int(manifest.ciphertext_bytes) and manifest.ciphertext_bytes >= 0, "file size"),
        (_is_int(manifest.keys.version) and manifest.keys.version >= 1, "key version"),
        (_is_hex(manifest.backup_id, 32), "backup id"),
        (_is_hex(manifest.ciphertext_sha256, 64), "ciphertext SHA-256"),
    ]
    for ok, what in checks:
        if not ok:
            raise BackupRejected(RejectReason.MANIFEST_MALFORMED, f"the manifest's {what} is bad")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_hex(value: Any, length: int) -> bool:
    return (
        isinstance(value, str)
        and len(value) == length
        and all(c in "0123456789abcdef" for c in value)
    )
