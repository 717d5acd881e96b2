"""The field ciphertext format: AES-256-GCM (NIST SP 800-38D) under a versioned data key.

    byte 0      format (0x02)
    bytes 1-2   data class id (big-endian; crypto/classes.py)
    bytes 3-6   key version (big-endian)
    bytes 7-18  random 96-bit nonce
    bytes 19-   ciphertext and 128-bit tag

The header names the key, so a reader needs no lookup table and a rewrap can tell old from
new without decrypting. The associated data is the header followed by the class, table,
column and record id, each length-prefixed: the header cannot be edited to point at another
key, and a ciphertext copied to another row, column or table fails its tag.

The format before versioned keys (byte 0 = 0x01, an 8-byte master-key id, the nonce, the
ciphertext; see crypto/legacy.py) is told apart by its first byte.
"""

from __future__ import annotations

import os
import secrets
import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT_V2: Final = 0x02
FORMAT_LEGACY: Final = 0x01
HEADER: Final = struct.Struct(">BHI")
HEADER_BYTES: Final = HEADER.size  # 7
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
KEY_BYTES: Final = 32
MAX_VERSION: Final = 2**32 - 1
_AAD_LABEL: Final = b"tradeguard field v2"


class EnvelopeBroken(Exception):
    """A ciphertext that does not parse or authenticate (internal; callers map it)."""


@dataclass(frozen=True, slots=True)
class Header:
    class_id: int
    version: int

    def pack(self) -> bytes:
        return HEADER.pack(FORMAT_V2, self.class_id, self.version)


class FieldBinding(NamedTuple):
    """Where a value lives: its class, table, column and record (the associated data).

    A named tuple, not a frozen dataclass: one is made per field read or written, and a
    tuple is several times cheaper to build."""

    data_class: str
    table: str
    column: str
    record_id: bytes


def parse_header(blob: bytes) -> Header | None:
    """The class id and key version of a v2 ciphertext; None for any other bytes."""
    if len(blob) < HEADER_BYTES + NONCE_BYTES + TAG_BYTES or blob[0] != FORMAT_V2:
        return None
    _, class_id, version = HEADER.unpack_from(blob)
    return Header(class_id, version)


def is_legacy(blob: bytes) -> bool:
    return bool(blob) and blob[0] == FORMAT_LEGACY


def associated_data(header: bytes, binding: FieldBinding) -> bytes:
    # Length prefixes: ("ab", "c") and ("a", "bc") must not give the same bytes.
    record = binding.record_id
    return (
        header
        + _stem(binding.data_class, binding.table, binding.column)
        + _LENGTH.pack(len(record))
        + record
    )


_LENGTH: Final = struct.Struct(">I")
MIN_SEALED_BYTES: Final = HEADER_BYTES + NONCE_BYTES + TAG_BYTES


def record_part(record_id: bytes) -> bytes:
    """The associated data's last part: the record id, length-prefixed."""
    return _LENGTH.pack(len(record_id)) + record_id


def stem(data_class: str, table: str, column: str) -> bytes:
    """The associated data's part shared by every row of a column (after the header)."""
    return _stem(data_class, table, column)


@lru_cache(maxsize=1024)
def _stem(data_class: str, table: str, column: str) -> bytes:
    """The part of the associated data that is the same for every row of a column."""
    parts = [_AAD_LABEL, data_class.encode(), table.encode(), column.encode()]
    return b"".join(_LENGTH.pack(len(p)) + p for p in parts)


def seal(aead: AESGCM, header: Header, plaintext: bytes, binding: FieldBinding) -> bytes:
    packed = header.pack()
    nonce = os.urandom(NONCE_BYTES)
    # A random 96-bit nonce per message: at 2^32 messages per key version the collision
    # chance stays below 2^-32 (SP 800-38D 8.3); rotation every 90 days keeps versions far
    # below that, and the usage counts make the volume visible.
    return packed + nonce + aead.encrypt(nonce, plaintext, associated_data(packed, binding))


def open_sealed(aead: AESGCM, blob: bytes, binding: FieldBinding) -> bytes:
    packed = blob[:HEADER_BYTES]
    nonce = blob[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES]
    try:
        return aead.decrypt(
            nonce, blob[HEADER_BYTES + NONCE_BYTES :], associated_data(packed, binding)
        )
    except InvalidTag:
        raise EnvelopeBroken from None


def wrap_key(kek: AESGCM, key: bytes, associated: bytes) -> bytes:
    """A data key sealed under a key-encrypting key, bound to where it belongs."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + kek.encrypt(nonce, key, associated)


def unwrap_key(kek: AESGCM, wrapped: bytes, associated: bytes) -> bytes:
    try:
        key = kek.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], associated)
    except InvalidTag:
        raise EnvelopeBroken from None
    if len(key) != KEY_BYTES:
        raise EnvelopeBroken
    return key


def key_slot(data_class: str, kind: str, version: int) -> bytes:
    """The associated data of a wrapped data key: a key moved to another slot fails."""
    return f"tradeguard data key|{data_class}|{kind}|{version}".encode()
