"""A keyring with an in-memory keyset (no database): random keys per class and version."""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tradeguard.core.clock import FrozenClock
from tradeguard.crypto.classes import SPEC_OF, DataClass
from tradeguard.crypto.keyring import IndexKey, Keyring, Keyset, LoadedKey
from tradeguard.crypto.providers import LocalFileKek

MASTER = bytes(range(32))


def keyring_with(
    versions: Iterable[tuple[DataClass, int, bool, int]] | None = None,
    *,
    clock: FrozenClock | None = None,
    master: bytes = MASTER,
    legacy: bool = True,
) -> Keyring:
    """`versions`: (class, version, retired, activates_ns); by default v1 of every class,
    active, and a version 0 (legacy) wherever the class had a legacy purpose."""
    clock = clock or FrozenClock()
    if versions is None:
        versions = [(c, 1, False, 0) for c in DataClass]
        if legacy:
            versions += [(c, 0, False, 0) for c in DataClass if SPEC_OF[c].legacy_purpose]
    table: dict[DataClass, dict[int, LoadedKey]] = {}
    for data_class, version, retired, activates_ns in versions:
        aead = None if version == 0 else AESGCM(secrets.token_bytes(32))
        table.setdefault(data_class, {})[version] = LoadedKey(
            data_class, version, retired, activates_ns, aead
        )
    keyring = Keyring(LocalFileKek(master), clock=clock)
    keyring.adopt(
        Keyset(table, {c: {1: IndexKey(1, 0, secrets.token_bytes(32))} for c in DataClass})
    )
    return keyring
