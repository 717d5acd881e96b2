"""Where a segment's data key is wrapped: the keyring, behind the two-method `SegmentKeys`.

Each segment is encrypted under a fresh 256-bit data key (envelope encryption); only the
wrapped key is stored, in the segment's header. Wrapping goes through the keyring's
AES-256-GCM purpose key `ledger-archive-segment` with the segment's log and range as
authenticated context. The keyring is being reworked into versioned envelope keys: that
work, or a KMS, replaces `KeyringSegmentKeys` without touching the archive format, since a
wrapped key is opaque bytes to it. Whatever wraps must keep unwrapping for as long as the
segments are kept (seven years and more): keep the keyring's key material as long as the
archive.
"""

from __future__ import annotations

from tradeguard.ledger.archive.format import KEY_PURPOSE
from tradeguard.ledger.personal.keys import KeyWrapper


class KeyringSegmentKeys:
    """`SegmentKeys` over the keyring (crypto/keyring.py LocalKeyring, or a KMS)."""

    def __init__(self, keyring: KeyWrapper) -> None:
        self._keyring = keyring

    def wrap(self, data_key: bytes, *, context: bytes) -> bytes:
        return self._keyring.encrypt(data_key, purpose=KEY_PURPOSE, context=context)

    def unwrap(self, wrapped: bytes, *, context: bytes) -> bytes:
        return self._keyring.decrypt(wrapped, purpose=KEY_PURPOSE, context=context)
