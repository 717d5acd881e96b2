"""Local keyring: AES-256-GCM field encryption under per-purpose keys (ENC-2).

A 256-bit key-encryption key lives in a file readable only by the service (mode 0600). Each
data class (TOTP secrets, phone numbers, ...) gets its own key derived from it with HKDF
(RFC 5869) and the purpose as `info`, so one class's key never decrypts another's data.
Ciphertexts carry a version and the key id, so keys can rotate and old data be re-wrapped;
an external KMS replaces this class behind the same two methods.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tradeguard.core.errors import TradeguardError

_FORMAT_VERSION = 1
_NONCE_BYTES = 12
_KEY_ID_BYTES = 8


class DecryptionFailed(TradeguardError):
    status = 500
    slug = "decryption-failed"
    title = "Stored data could not be decrypted"


class LocalKeyring:
    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != 32:
            raise ValueError("the key-encryption key must be 32 bytes")
        self._master = master_key
        # A short public fingerprint of the master key, stored beside each ciphertext.
        self.key_id = _derive(master_key, b"tradeguard key id")[:_KEY_ID_BYTES]
        self._cache: dict[str, AESGCM] = {}

    @classmethod
    def load_or_create(cls, path: Path) -> LocalKeyring:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(secrets.token_bytes(32))
        return cls(path.read_bytes())

    def _aead(self, purpose: str) -> AESGCM:
        aead = self._cache.get(purpose)
        if aead is None:
            aead = AESGCM(_derive(self._master, b"tradeguard field key:" + purpose.encode()))
            self._cache[purpose] = aead
        return aead

    def derive_secret(self, purpose: str) -> bytes:
        """A 32-byte secret for one purpose (e.g. an HMAC pepper), never stored anywhere."""
        return _derive(self._master, b"tradeguard secret:" + purpose.encode())

    def encrypt(self, plaintext: bytes, *, purpose: str, context: bytes = b"") -> bytes:
        """Encrypt; `context` (e.g. the owning row id) is authenticated, not stored."""
        nonce = secrets.token_bytes(_NONCE_BYTES)
        header = bytes([_FORMAT_VERSION]) + self.key_id
        sealed = self._aead(purpose).encrypt(nonce, plaintext, header + context)
        return header + nonce + sealed

    def decrypt(self, blob: bytes, *, purpose: str, context: bytes = b"") -> bytes:
        header_len = 1 + _KEY_ID_BYTES
        if len(blob) < header_len + _NONCE_BYTES + 16 or blob[0] != _FORMAT_VERSION:
            raise DecryptionFailed
        header, nonce = blob[:header_len], blob[header_len : header_len + _NONCE_BYTES]
        if header[1:] != self.key_id:
            raise DecryptionFailed("ciphertext was sealed under another key")
        try:
            return self._aead(purpose).decrypt(
                nonce, blob[header_len + _NONCE_BYTES :], header + context
            )
        except InvalidTag:
            raise DecryptionFailed from None


def _derive(master: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master)
