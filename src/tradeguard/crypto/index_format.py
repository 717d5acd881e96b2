"""The stored blind-index format: an HMAC-SHA256 (RFC 2104) that names its index key version.

    byte 0      format (0x03)
    bytes 1-2   data class id (big-endian; crypto/classes.py)
    bytes 3-6   index key version (big-endian)
    bytes 7-38  HMAC-SHA256 of the normalized value under that version's index key

As a Tink keyset's output prefix or a Vault transit "vault:v2:" prefix does, the header lets a
reindex tell old values from new without the plaintext, and a usage count group stored values
by version in the database. A lookup computes the HMAC under every live version and matches
any of them, so a value indexed under the old key is found while a rotation is under way.

Values stored before index keys had versions are the bare 32-byte HMAC under version 1 (the
only index key there was): they read as version 1, told apart by their length, until
`tradeguard keys reindex` rewrites them in this format.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import Final, NamedTuple

FORMAT_INDEX: Final = 0x03
INDEX_HEADER: Final = struct.Struct(">BHI")
INDEX_HEADER_BYTES: Final = INDEX_HEADER.size  # 7
DIGEST_BYTES: Final = hashlib.sha256().digest_size  # 32
INDEX_BYTES: Final = INDEX_HEADER_BYTES + DIGEST_BYTES  # 39
# The version of an untagged (pre-rotation) value.
UNTAGGED_VERSION: Final = 1


class IndexHeader(NamedTuple):
    class_id: int
    version: int


def index_digest(key: bytes, normalized: str) -> bytes:
    """The bare HMAC: equal values give equal digests under one key, nothing without it."""
    return hmac.new(key, normalized.encode("utf-8"), hashlib.sha256).digest()


def tag_index(class_id: int, version: int, digest: bytes) -> bytes:
    return INDEX_HEADER.pack(FORMAT_INDEX, class_id, version) + digest


def parse_index(value: bytes) -> IndexHeader | None:
    """The class id and version a stored index value is under; None for anything else.

    An untagged 32-byte value has no class id in it: its class id is 0 and its version 1.
    """
    if len(value) == INDEX_BYTES and value[0] == FORMAT_INDEX:
        _, class_id, version = INDEX_HEADER.unpack_from(value)
        return IndexHeader(class_id, version)
    if len(value) == DIGEST_BYTES:
        return IndexHeader(0, UNTAGGED_VERSION)
    return None


def version_of_index_prefix(prefix: bytes, length: int, class_id: int) -> int | None:
    """The version of a stored value given only its first 7 bytes and its length (the
    database groups by these, so counting reads no whole values)."""
    if length == DIGEST_BYTES:
        return UNTAGGED_VERSION
    if length != INDEX_BYTES or len(prefix) != INDEX_HEADER_BYTES or prefix[0] != FORMAT_INDEX:
        return None
    _, found_class, version = INDEX_HEADER.unpack(prefix)
    return int(version) if found_class == class_id else None
