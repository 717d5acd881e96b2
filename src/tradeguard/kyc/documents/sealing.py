"""Envelope encryption of document files (ENC-2, class kyc_document).

A file of up to the upload limit is too large to seal as one keyring field (a rewrap would
re-encrypt every byte, and one AES-GCM call would hold it twice in memory). Each document
gets its own random 256-bit data key; the file is cut into chunks, each sealed with
AES-256-GCM (NIST SP 800-38D) under that key with a fresh nonce, its associated data
binding the document id, the chunk's position and the chunk count (a chunk moved to another
document, reordered, or a file cut short fails its tag). The data key itself is a keyring
field of the document row (crypto/columns.py), so `tradeguard keys rewrap` moves documents
to a new key version by resealing 32 bytes each, never the files.
"""

from __future__ import annotations

import os
import struct

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

CHUNK_BYTES = 1024 * 1024
NONCE_BYTES = 12
_LABEL = b"tradeguard kyc document v1"
_POSITION = struct.Struct(">II")


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def _associated(document_id: str, index: int, count: int) -> bytes:
    return _LABEL + document_id.encode() + _POSITION.pack(index, count)


def seal_chunks(key: bytes, document_id: str, content: bytes) -> list[bytes]:
    aead = AESGCM(key)
    count = max(1, -(-len(content) // CHUNK_BYTES))
    sealed = []
    for index in range(count):
        chunk = content[index * CHUNK_BYTES : (index + 1) * CHUNK_BYTES]
        nonce = os.urandom(NONCE_BYTES)
        sealed.append(nonce + aead.encrypt(nonce, chunk, _associated(document_id, index, count)))
    return sealed


def open_chunks(key: bytes, document_id: str, sealed: list[bytes]) -> bytes:
    """The file; cryptography's InvalidTag when any chunk is not exactly where it was."""
    aead = AESGCM(key)
    count = len(sealed)
    return b"".join(
        aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], _associated(document_id, i, count))
        for i, blob in enumerate(sealed)
    )
