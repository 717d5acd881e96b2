"""Field encryption before versioned keys: one AES-256-GCM key per purpose, derived from the
master key with HKDF (RFC 5869), the purpose as `info`.

Kept so data sealed that way still reads (as version 0 of its class) until `tradeguard keys
rewrap` moves it to a versioned key; nothing new is written in this format by the keyring.
Format: 0x01, the master key's 8-byte id, a 96-bit nonce, ciphertext and tag; the first nine
bytes and the caller's context are the associated data.
"""

from __future__ import annotations

import secrets
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tradeguard.crypto.envelope import FORMAT_LEGACY, NONCE_BYTES, TAG_BYTES, EnvelopeBroken

KEY_ID_BYTES: Final = 8
HEADER_BYTES: Final = 1 + KEY_ID_BYTES


def derive(master: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master)


def master_key_id(master: bytes) -> bytes:
    """A short public fingerprint of the master key (stored in every legacy ciphertext)."""
    return derive(master, b"tradeguard key id")[:KEY_ID_BYTES]


class LegacyFieldKeys:
    """The per-purpose HKDF keys of one master key."""

    def __init__(self, master: bytes) -> None:
        if len(master) != 32:
            raise ValueError("the master key must be 32 bytes")
        self._master = master
        self.key_id = master_key_id(master)
        self._cache: dict[str, AESGCM] = {}

    def _aead(self, purpose: str) -> AESGCM:
        aead = self._cache.get(purpose)
        if aead is None:
            aead = AESGCM(derive(self._master, b"tradeguard field key:" + purpose.encode()))
            self._cache[purpose] = aead
        return aead

    def derive_secret(self, purpose: str) -> bytes:
        return derive(self._master, b"tradeguard secret:" + purpose.encode())

    def encrypt(self, plaintext: bytes, *, purpose: str, context: bytes = b"") -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        header = bytes([FORMAT_LEGACY]) + self.key_id
        return header + nonce + self._aead(purpose).encrypt(nonce, plaintext, header + context)

    def decrypt(self, blob: bytes, *, purpose: str, context: bytes = b"") -> bytes:
        if len(blob) < HEADER_BYTES + NONCE_BYTES + TAG_BYTES or blob[0] != FORMAT_LEGACY:
            raise EnvelopeBroken
        header = blob[:HEADER_BYTES]
        if header[1:] != self.key_id:
            raise EnvelopeBroken  # sealed under another master key
        nonce = blob[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES]
        try:
            return self._aead(purpose).decrypt(
                nonce, blob[HEADER_BYTES + NONCE_BYTES :], header + context
            )
        except InvalidTag:
            raise EnvelopeBroken from None
