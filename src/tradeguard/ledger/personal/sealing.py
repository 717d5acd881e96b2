"""The sealed personal section of a ledger event: AES-256-GCM under its owner's data key.

Stored in the event document (and so covered by its leaf hash and the chain) as

    "personal": {"alg": "A256GCM", "key": "<subject key id>", "fields": ["ip", ...],
                 "ct": "<base64url of nonce(12) || ciphertext || tag(16)>"}

The plaintext is the RFC 8785 canonical JSON of the fields, padded with spaces to a multiple
of 32 bytes, so the ciphertext's length does not tell one address from another. The field
names stay readable: once the key is destroyed a reader can still say which fields were
there (each reads as ERASED). The associated data binds the ciphertext to its owner, its
key and its event: a section copied into another event, or onto another person's key, does
not open (UNREADABLE).

Pure: no I/O; the keys come from ledger/personal/keys.py.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tradeguard.ledger.canonical import canonical_bytes

ALG: Final = "A256GCM"
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
PAD_TO: Final = 32
DATA_KEY_BYTES: Final = 32
# The keyring purpose that wraps subject data keys (its own HKDF key: see crypto/keyring.py).
WRAP_PURPOSE: Final = "ledger-subject-key"


class Redacted(str):
    """A personal field that cannot be read. A `str`, so reports and JSON exports print it
    as it is; tell it from a real value with `is_redacted`, never by comparing text."""

    __slots__ = ()


ERASED: Final = Redacted("[erased]")
"""The owner's key was destroyed (crypto-shredded): the value is gone for good."""
UNREADABLE: Final = Redacted("[unreadable]")
"""The ciphertext did not open under its key and context: moved, altered or of unknown key."""


def is_redacted(value: object) -> bool:
    return isinstance(value, Redacted)


class SealBroken(Exception):
    """A sealed section did not open (internal to the reader, which reports UNREADABLE)."""


@dataclass(frozen=True, slots=True)
class SealedSection:
    key_id: str
    fields: tuple[str, ...]
    blob: bytes


def wrap_context(subject: str, key_id: str) -> bytes:
    """The keyring context of a wrapped data key: it opens only as this subject's key."""
    return canonical_bytes({"key": key_id, "subject": subject})


def _associated_data(*, subject: str, key_id: str, event_id: str, fields: Sequence[str]) -> bytes:
    return canonical_bytes(
        {
            "event": event_id,
            "fields": list(fields),
            "key": key_id,
            "purpose": "tradeguard ledger personal data",
            "subject": subject,
        }
    )


def _padded(plaintext: bytes) -> bytes:
    # JSON allows trailing whitespace, so the padding needs no length prefix.
    return plaintext + b" " * (-len(plaintext) % PAD_TO)


def seal(
    fields: Mapping[str, Any], *, aead: AESGCM, subject: str, key_id: str, event_id: str
) -> dict[str, Any]:
    """The sealed section for `fields`, as it goes into the event document."""
    names = sorted(fields)
    nonce = secrets.token_bytes(NONCE_BYTES)
    sealed = aead.encrypt(
        nonce,
        _padded(canonical_bytes(fields)),
        _associated_data(subject=subject, key_id=key_id, event_id=event_id, fields=names),
    )
    return {
        "alg": ALG,
        "key": key_id,
        "fields": names,
        "ct": base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii"),
    }


def parse_section(section: object) -> SealedSection | None:
    """The parts of a stored section, or None when it is not one this version wrote."""
    if not isinstance(section, Mapping) or section.get("alg") != ALG:
        return None
    key_id, fields, text = section.get("key"), section.get("fields"), section.get("ct")
    if not isinstance(key_id, str) or not isinstance(text, str) or not isinstance(fields, list):
        return None
    if not all(isinstance(name, str) for name in fields):
        return None
    try:
        blob = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(blob) < NONCE_BYTES + TAG_BYTES:
        return None
    return SealedSection(key_id, tuple(fields), blob)


def field_names(section: object) -> tuple[str, ...]:
    """The field names a stored section lists (empty when it lists none readable)."""
    if isinstance(section, Mapping):
        fields = section.get("fields")
        if isinstance(fields, list):
            return tuple(name for name in fields if isinstance(name, str))
    return ()


def open_section(
    section: SealedSection, *, aead: AESGCM, subject: str, event_id: str
) -> dict[str, Any]:
    """The fields of a sealed section; raise SealBroken when it does not authenticate."""
    nonce, sealed = section.blob[:NONCE_BYTES], section.blob[NONCE_BYTES:]
    aad = _associated_data(
        subject=subject, key_id=section.key_id, event_id=event_id, fields=section.fields
    )
    try:
        plaintext = aead.decrypt(nonce, sealed, aad)
    except InvalidTag:
        raise SealBroken("the sealed section does not authenticate") from None
    try:
        fields = json.loads(plaintext)
    except ValueError:
        raise SealBroken("the sealed section is not JSON") from None
    if not isinstance(fields, dict) or sorted(fields) != list(section.fields):
        raise SealBroken("the sealed section does not hold the fields it lists")
    return fields


def redacted(names: Sequence[str], marker: Redacted) -> dict[str, Any]:
    return dict.fromkeys(names, marker)
