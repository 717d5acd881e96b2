"""The keyring: envelope AES-256-GCM field encryption under versioned per-class keys (ENC-2).

Each data class (crypto/classes.py) has its own random 256-bit data keys, one per version,
stored in the database wrapped by a key-encrypting key from a provider (crypto/providers.py:
a local key file, or a KMS). The keyring holds an in-memory snapshot of the unwrapped keys:
`refresh` reads the table (at start, then every few seconds in a serving process), and
encryption and decryption are synchronous, on the request path, with no I/O.

Encryption uses the newest version whose activation time has passed. A version activates a
little after it is created (the activation delay, longer than the refresh interval), so
every process has read a key before any process writes under it. A retired version never
encrypts and never decrypts. Ciphertexts name their class and version (crypto/envelope.py),
so a reader picks the key from the header and a rewrap can tell what still needs moving.

Data sealed before versioned keys (crypto/legacy.py) reads as version 0 of its class, until
that version is retired. `encrypt`/`decrypt` with a `purpose` keep the interface the ledger
and the identity services were written against (ledger/personal/keys.py KeyWrapper).
"""

from __future__ import annotations

import os
import secrets
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tradeguard.core.clock import Clock
from tradeguard.core.errors import ServiceUnavailable, TradeguardError
from tradeguard.crypto import repository
from tradeguard.crypto.catalogue import (
    INDEX_LOCATIONS,
    LOCATIONS,
    IndexLocation,
    Location,
    location_of_purpose,
)
from tradeguard.crypto.classes import CLASS_OF_ID, CLASS_OF_PURPOSE, SPEC_OF, DataClass
from tradeguard.crypto.envelope import (
    HEADER_BYTES,
    MIN_SEALED_BYTES,
    NONCE_BYTES,
    EnvelopeBroken,
    FieldBinding,
    Header,
    is_legacy,
    key_slot,
    open_sealed,
    parse_header,
    seal,
    stem,
)
from tradeguard.crypto.index_format import UNTAGGED_VERSION, index_digest, tag_index
from tradeguard.crypto.legacy import LegacyFieldKeys
from tradeguard.crypto.peppers import PEPPER_PURPOSES
from tradeguard.crypto.providers import KekProvider, create_master_key_file, read_master_key

DATA: Final = "data"
INDEX: Final = "index"
LEGACY: Final = "legacy"
# An HMAC pepper (crypto/peppers.py), by purpose in `data_class`: stored once the master key
# is rotated or a KMS holds the KEK, so that it no longer derives from a local master key.
SECRET: Final = "secret"  # noqa: S105 - a kind of key row, not a secret
SECRET_VERSION: Final = 1
ACTIVE: Final = "active"
RETIRED: Final = "retired"
LEGACY_VERSION: Final = 0
NONCE_END: Final = HEADER_BYTES + NONCE_BYTES
_NO_VERSIONS: Final[Mapping[int, LoadedKey]] = {}
# The record id's length prefix in the associated data (envelope.record_part, inlined on
# the column type's paths).
_pack_length: Final = struct.Struct(">I").pack


class DecryptionFailed(TradeguardError):
    status = 500
    slug = "decryption-failed"
    title = "Stored data could not be decrypted"
    # Names keys, versions and classes: for the logs, never a client (problem bodies).
    operator_detail = True


class KeyringNotLoaded(ServiceUnavailable):
    slug = "keyring-not-loaded"
    title = "The keyring has not read its keys yet"
    # Names keys, versions and classes: for the logs, never a client (problem bodies).
    operator_detail = True


class NoActiveKey(TradeguardError):
    status = 503
    slug = "no-active-key"
    title = "No key version may encrypt this class of data"
    # Names keys, versions and classes: for the logs, never a client (problem bodies).
    operator_detail = True


class FieldKeyring(Protocol):
    """What services that seal values by purpose need (Keyring, or LocalKeyring in tests)."""

    def encrypt(self, plaintext: bytes, *, purpose: str, context: bytes = b"") -> bytes: ...

    def decrypt(self, blob: bytes, *, purpose: str, context: bytes = b"") -> bytes: ...

    def derive_secret(self, purpose: str) -> bytes: ...


@dataclass(frozen=True, slots=True)
class LoadedKey:
    data_class: DataClass
    version: int
    retired: bool
    activates_ns: int
    aead: AESGCM | None  # None: version 0, the legacy HKDF keys


@dataclass(frozen=True, slots=True)
class IndexKey:
    """One live (not retired) version of a class's blind-index key."""

    version: int
    activates_ns: int
    key: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Keyset:
    """An immutable snapshot of the key table, unwrapped; replaced whole on refresh."""

    versions: Mapping[DataClass, Mapping[int, LoadedKey]]
    # Live blind-index key versions per class: a retired version is never read into a
    # snapshot, so no process can compute an index under it again.
    index_keys: Mapping[DataClass, Mapping[int, IndexKey]]
    # The stored peppers by purpose (kind `secret`); empty while they still derive from the
    # local master key.
    secrets: Mapping[str, bytes] = field(default_factory=dict)
    # Per class, the keys that may encrypt, newest first (computed once per snapshot: the
    # choice on each write is then the first whose activation time has passed).
    _encrypting: dict[DataClass, tuple[LoadedKey, ...]] = field(
        init=False, repr=False, compare=False
    )
    # The packed v2 header of every readable version, by class: the column type's fast paths
    # (Keyring.seal_at, Keyring.open_at) take it from here instead of packing it per value.
    headers: dict[tuple[DataClass, int], bytes] = field(init=False, repr=False, compare=False)
    # The key that opens a v2 ciphertext, by its packed header (format, class id, version),
    # for every readable version that is not retired: Keyring.open_at's one lookup.
    openers: dict[bytes, tuple[DataClass, AESGCM]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ordered = {
            data_class: tuple(
                sorted(
                    (k for k in keys.values() if not k.retired and k.aead is not None),
                    key=lambda k: -k.version,
                )
            )
            for data_class, keys in self.versions.items()
        }
        object.__setattr__(self, "_encrypting", ordered)
        object.__setattr__(
            self,
            "headers",
            {
                (data_class, key.version): Header(SPEC_OF[data_class].class_id, key.version).pack()
                for data_class, keys in self.versions.items()
                for key in keys.values()
                if key.aead is not None
            },
        )
        object.__setattr__(
            self,
            "openers",
            {
                Header(SPEC_OF[data_class].class_id, key.version).pack(): (data_class, key.aead)
                for data_class, keys in self.versions.items()
                for key in keys.values()
                if key.aead is not None and not key.retired
            },
        )

    def encrypting(self, data_class: DataClass, now_ns: int) -> LoadedKey | None:
        for key in self._encrypting.get(data_class, ()):
            if key.activates_ns <= now_ns:
                return key
        return None

    def indexing(self, data_class: DataClass, now_ns: int) -> IndexKey | None:
        """The index key version new index values are computed under: the newest live one
        whose activation time has passed (as for data keys, so that every process knows a
        version, and looks up under it, before any process stores values under it)."""
        live = self.index_keys.get(data_class, {})
        ready = [key for key in live.values() if key.activates_ns <= now_ns]
        return max(ready, key=lambda k: k.version) if ready else None


class UnknownKek(DecryptionFailed):
    slug = "unknown-kek"
    title = "A key is wrapped under a key-encrypting key this process was not given"


class PepperUnavailable(KeyringNotLoaded):
    slug = "pepper-unavailable"
    title = "An HMAC pepper is neither stored nor derivable here"


class Keyring:
    def __init__(
        self,
        provider: KekProvider,
        *,
        clock: Clock,
        catalogue: tuple[Location, ...] = LOCATIONS,
        indexes: tuple[IndexLocation, ...] = INDEX_LOCATIONS,
        also: Iterable[KekProvider] = (),
    ) -> None:
        # `provider` wraps every new key; `also` only unwraps (the other side of a master-key
        # rotation under way, or the local master key after a move to a KMS).
        self.provider = provider
        self.providers: dict[str, KekProvider] = {provider.kek_id: provider}
        for other in also:
            self.providers.setdefault(other.kek_id, other)
        self.clock = clock
        self.catalogue = catalogue
        self.indexes = indexes
        self._keyset: Keyset | None = None
        # Told the class of every value that fails to decrypt (the security-signal metrics,
        # web/metrics.py): a stored value that no longer opens is tampering, a copied
        # ciphertext or a lost key, never normal operation.
        self.on_decryption_failed: Callable[[DataClass], None] | None = None
        # Unwrapped keys by (slot, wrapped bytes): a refresh asks the provider (a KMS call)
        # only for versions it has not seen.
        self._unwrapped: dict[tuple[bytes, bytes], bytes] = {}
        # The last key unwrapped per slot: a row re-wrapped under a KEK this process was not
        # given (a master-key rotation while it runs) still holds the same key.
        self._by_slot: dict[bytes, bytes] = {}

    def add_provider(self, provider: KekProvider) -> None:
        """Unwrap keys under `provider` too (it does not wrap new keys)."""
        self.providers.setdefault(provider.kek_id, provider)

    def use_provider(self, provider: KekProvider) -> None:
        """Wrap new keys under `provider` from now on (after a master-key rotation)."""
        self.providers[provider.kek_id] = provider
        self.provider = provider

    @property
    def legacy(self) -> LegacyFieldKeys | None:
        """The HKDF keys of a local master key: the wrapping provider's, else another's."""
        if self.provider.legacy is not None:
            return self.provider.legacy
        for provider in self.providers.values():
            if provider.legacy is not None:
                return provider.legacy
        return None

    # -- loading ------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._keyset is not None

    @property
    def keyset(self) -> Keyset:
        if self._keyset is None:
            raise KeyringNotLoaded
        return self._keyset

    def adopt(self, keyset: Keyset) -> None:
        """Install a snapshot built elsewhere (tests, benchmarks: no database)."""
        self._keyset = keyset

    async def refresh(self, db: repository.Db) -> Keyset:
        """Read the key table and swap in a new snapshot."""
        versions: dict[DataClass, dict[int, LoadedKey]] = {}
        index_keys: dict[DataClass, dict[int, IndexKey]] = {}
        secrets_: dict[str, bytes] = {}
        for row in await repository.key_versions(db):
            if row.kind == SECRET:
                if row.wrapped_key is None or row.state != ACTIVE:
                    continue
                if row.kek_id not in self.providers and self.legacy is not None:
                    # Stored under a new KEK by a master-key rotation while this process
                    # runs on the old master key, which still derives that same value.
                    continue
                secrets_[row.data_class] = await self._unwrap(
                    row.data_class, SECRET, row.version, bytes(row.wrapped_key), row.kek_id
                )
                continue
            try:
                data_class = DataClass(row.data_class)
            except ValueError:
                continue  # a class of a newer release: not ours to use
            if row.kind == LEGACY:
                versions.setdefault(data_class, {})[row.version] = LoadedKey(
                    data_class, row.version, row.state == RETIRED, row.activates_ns, None
                )
                continue
            if row.wrapped_key is None or (row.kind == INDEX and row.state == RETIRED):
                continue
            key = await self._unwrap(
                data_class.value, row.kind, row.version, bytes(row.wrapped_key), row.kek_id
            )
            if row.kind == INDEX:
                index_keys.setdefault(data_class, {})[row.version] = IndexKey(
                    row.version, row.activates_ns, key
                )
            elif row.kind == DATA:
                versions.setdefault(data_class, {})[row.version] = LoadedKey(
                    data_class, row.version, row.state == RETIRED, row.activates_ns, AESGCM(key)
                )
        self._keyset = Keyset(versions, index_keys, secrets_)
        return self._keyset

    async def _unwrap(
        self, name: str, kind: str, version: int, wrapped: bytes, kek_id: str | None
    ) -> bytes:
        slot = key_slot(name, kind, version)
        cached = self._unwrapped.get((slot, wrapped))
        if cached is not None:
            return cached
        provider = self.provider if kek_id is None else self.providers.get(kek_id)
        if provider is None:
            known = self._by_slot.get(slot)
            if known is not None:
                return known  # re-wrapped under a new KEK since this process read it
            raise UnknownKek(
                f"the {kind} key {name} v{version} is wrapped under {kek_id}, which this "
                "process was not given: start it with that key-encrypting key "
                "(TRADEGUARD_KEK_PROVIDER, TRADEGUARD_AWS_KMS_KEY_ID or keys/master.key)"
            )
        key = await self.unwrap_row(provider, name, kind, version, wrapped)
        self._unwrapped[(slot, wrapped)] = key
        self._by_slot[slot] = key
        return key

    @staticmethod
    async def unwrap_row(
        provider: KekProvider, name: str, kind: str, version: int, wrapped: bytes
    ) -> bytes:
        """One stored key unwrapped by `provider`; DecryptionFailed names the row only."""
        try:
            return await provider.unwrap(wrapped, associated_data=key_slot(name, kind, version))
        except EnvelopeBroken:
            raise DecryptionFailed(
                f"the {kind} key {name} v{version} does not open under {provider.kek_id} "
                "(wrong key-encrypting key, or the row was altered)"
            ) from None

    async def wrap_new_key(self, data_class: DataClass, kind: str, version: int) -> bytes:
        """A new random key for a slot, wrapped by the provider (for the key service)."""
        return await self.provider.wrap(
            secrets.token_bytes(32), associated_data=key_slot(data_class.value, kind, version)
        )

    # -- fields ---------------------------------------------------------------------------

    def seal(self, plaintext: bytes, binding: FieldBinding, data_class: DataClass) -> bytes:
        """Encrypt under the class's encrypting version, bound to `binding`."""
        key = self.keyset.encrypting(data_class, self.clock.now_ns())
        if key is None or key.aead is None:
            raise NoActiveKey(f"no active key version for {data_class.value}")
        return seal(key.aead, Header(SPEC_OF[data_class].class_id, key.version), plaintext, binding)

    def seal_at(
        self, plaintext: bytes, data_class: DataClass, column_stem: bytes, record_id: bytes
    ) -> bytes:
        """`seal` for the column type: the binding given as its column's precomputed part
        (envelope.stem) and the record id, the header from the snapshot: the same bytes as
        `seal` with the equivalent FieldBinding, with fewer objects made per value."""
        keyset = self.keyset
        key = keyset.encrypting(data_class, self.clock.now_ns())
        if key is None or key.aead is None:
            raise NoActiveKey(f"no active key version for {data_class.value}")
        packed = keyset.headers[data_class, key.version]
        nonce = os.urandom(NONCE_BYTES)
        associated = packed + column_stem + _pack_length(len(record_id)) + record_id
        return packed + nonce + key.aead.encrypt(nonce, plaintext, associated)

    def open_at(
        self,
        blob: bytes,
        data_class: DataClass,
        record_id: bytes,
        where: tuple[str, str],
        column_stem: bytes | None = None,
    ) -> bytes:
        """`open` for the column type: the value of `data_class` stored at `where` (table,
        column) in the record `record_id`; `column_stem` is that column's envelope.stem when
        the caller has it. Anything but a current v2 ciphertext that opens goes through
        `open`, which names what is wrong and counts the failure."""
        keyset = self._keyset
        if keyset is not None and len(blob) >= MIN_SEALED_BYTES:
            packed = blob[:HEADER_BYTES]
            opener = keyset.openers.get(packed)
            if opener is not None and opener[0] is data_class:
                if column_stem is None:
                    column_stem = stem(data_class.value, where[0], where[1])
                try:
                    return opener[1].decrypt(
                        blob[HEADER_BYTES:NONCE_END],
                        blob[NONCE_END:],
                        packed + column_stem + _pack_length(len(record_id)) + record_id,
                    )
                except InvalidTag:
                    pass  # `open` fails it the same way, counted and named
        binding = FieldBinding(data_class.value, where[0], where[1], record_id)
        return self.open(blob, binding, data_class)

    def open(self, blob: bytes, binding: FieldBinding, data_class: DataClass) -> bytes:
        """Decrypt a value stored at `binding`; DecryptionFailed when it is not exactly that."""
        try:
            return self._open(bytes(blob), binding, data_class)
        except DecryptionFailed:
            if self.on_decryption_failed is not None:
                self.on_decryption_failed(data_class)
            raise

    def _open(self, blob: bytes, binding: FieldBinding, data_class: DataClass) -> bytes:
        header = parse_header(blob)
        if header is None:
            if is_legacy(blob):
                return self._open_legacy(blob, binding, data_class)
            raise DecryptionFailed
        if CLASS_OF_ID.get(header.class_id) is not data_class:
            raise DecryptionFailed
        key = self.keyset.versions.get(data_class, {}).get(header.version)
        if key is None or key.aead is None:
            raise DecryptionFailed(
                f"sealed under {data_class.value} v{header.version}, unknown to this process"
            )
        if key.retired:
            raise DecryptionFailed(f"sealed under retired key {data_class.value} v{key.version}")
        try:
            return open_sealed(key.aead, blob, binding)
        except EnvelopeBroken:
            raise DecryptionFailed from None

    def _open_legacy(self, blob: bytes, binding: FieldBinding, data_class: DataClass) -> bytes:
        legacy = self.legacy
        spec = SPEC_OF[data_class]
        version0 = self.keyset.versions.get(data_class, {}).get(LEGACY_VERSION)
        if legacy is None or spec.legacy_purpose is None or version0 is None:
            raise DecryptionFailed
        if version0.retired:
            raise DecryptionFailed(f"sealed under retired key {data_class.value} v0")
        try:
            return legacy.decrypt(blob, purpose=spec.legacy_purpose, context=binding.record_id)
        except EnvelopeBroken:
            raise DecryptionFailed from None

    def version_of(self, blob: bytes, data_class: DataClass) -> int | None:
        """The key version a stored value is under (0: legacy); None if not of this class."""
        header = parse_header(bytes(blob))
        if header is not None:
            return header.version if CLASS_OF_ID.get(header.class_id) is data_class else None
        return LEGACY_VERSION if is_legacy(bytes(blob)) else None

    def encrypting_version(self, data_class: DataClass) -> int | None:
        key = self.keyset.encrypting(data_class, self.clock.now_ns())
        return None if key is None else key.version

    # -- the purpose interface (ledger KeyWrapper, identity, notify) -----------------------

    def _binding(self, purpose: str, context: bytes) -> tuple[DataClass, FieldBinding]:
        data_class = CLASS_OF_PURPOSE.get(purpose)
        location = None if data_class is None else location_of_purpose(data_class, self.catalogue)
        if data_class is None or location is None:
            raise ValueError(f"no data class seals the purpose {purpose!r}")
        return data_class, FieldBinding(data_class.value, location.table, location.column, context)

    def encrypt(self, plaintext: bytes, *, purpose: str, context: bytes = b"") -> bytes:
        data_class, binding = self._binding(purpose, context)
        return self.seal(plaintext, binding, data_class)

    def decrypt(self, blob: bytes, *, purpose: str, context: bytes = b"") -> bytes:
        data_class, binding = self._binding(purpose, context)
        return self.open(blob, binding, data_class)

    # -- secrets that are not encryption keys ---------------------------------------------

    def index_value(self, data_class: DataClass, normalized: str) -> bytes:
        """The blind index to store for a normalized value: HMAC-SHA256 under the class's
        indexing version, prefixed with that version (crypto/index_format.py). Equal values
        give equal indexes under one version, and the index reveals nothing to someone
        without the key, unlike a plain hash of a 9-digit tax id."""
        key = self.keyset.indexing(data_class, self.clock.now_ns())
        if key is None:
            raise NoActiveKey(f"no blind-index key for {data_class.value}")
        digest = index_digest(key.key, normalized)
        return tag_index(SPEC_OF[data_class].class_id, key.version, digest)

    def index_candidates(self, data_class: DataClass, normalized: str) -> tuple[bytes, ...]:
        """Every stored form the value's index may have: under each live version (pending
        ones too: another process may be a little ahead), and untagged while version 1 is
        live. A lookup or duplicate check matches any of them, so nothing is missed while a
        reindex is under way; a retired version is not in the snapshot and adds none."""
        live = self.keyset.index_keys.get(data_class, {})
        if not live:
            raise NoActiveKey(f"no blind-index key for {data_class.value}")
        class_id = SPEC_OF[data_class].class_id
        found: list[bytes] = []
        for version, key in sorted(live.items(), reverse=True):
            digest = index_digest(key.key, normalized)
            found.append(tag_index(class_id, version, digest))
            if version == UNTAGGED_VERSION:
                found.append(digest)
        return tuple(found)

    def index_version(self, data_class: DataClass) -> int | None:
        key = self.keyset.indexing(data_class, self.clock.now_ns())
        return None if key is None else key.version

    def blind_index(self, data_class: DataClass, normalized: str) -> bytes:
        """The bare HMAC under index key version 1, in the format before versions: for a
        store whose index key never rotates (the card vault's fingerprints, 32 bytes in
        customer_card). Refused once version 1 is retired. Columns use `index_value`."""
        key = self.keyset.index_keys.get(data_class, {}).get(UNTAGGED_VERSION)
        if key is None:
            raise NoActiveKey(f"no blind-index key {data_class.value} v{UNTAGGED_VERSION}")
        return index_digest(key.key, normalized)

    def derive_secret(self, purpose: str) -> bytes:
        """A 32-byte secret for one purpose (an HMAC pepper; crypto/peppers.py lists them).

        The stored one (kind `secret`, wrapped by the KEK) once a master-key rotation or a
        move to a KMS has stored it; until then derived from the local master key, as before
        versioned keys. Either way the value is the one peppered values already stored
        (throttle keys, pseudonyms) were made with.
        """
        if purpose not in PEPPER_PURPOSES:
            raise ValueError(f"{purpose!r} is not a pepper purpose listed in crypto/peppers.py")
        keyset = self._keyset
        if keyset is None:
            # Not guessed before the table is read: after a master-key rotation the stored
            # pepper differs from what the current local master key would derive.
            raise KeyringNotLoaded(f"the pepper {purpose} is read with the keys")
        stored = keyset.secrets.get(purpose)
        if stored is not None:
            return stored
        legacy = self.legacy
        if legacy is None:
            raise PepperUnavailable(
                f"the pepper {purpose} is not stored and there is no local master key to "
                "derive it from: run `tradeguard keys rotate-master` with the old master key "
                "in place to store it"
            )
        return legacy.derive_secret(purpose)


class LocalKeyring:
    """The keyring before versioned keys: per-purpose HKDF keys of one master key.

    Writes the legacy format; kept for tests and tools that need a keyring without a
    database. The platform uses `Keyring`.
    """

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != 32:
            raise ValueError("the key-encryption key must be 32 bytes")
        self._keys = LegacyFieldKeys(master_key)
        self.key_id = self._keys.key_id

    @classmethod
    def load_or_create(cls, path: Path) -> LocalKeyring:
        if not path.exists():
            create_master_key_file(path, secrets.token_bytes(32), None)
        return cls(read_master_key(path))

    def derive_secret(self, purpose: str) -> bytes:
        return self._keys.derive_secret(purpose)

    def encrypt(self, plaintext: bytes, *, purpose: str, context: bytes = b"") -> bytes:
        return self._keys.encrypt(plaintext, purpose=purpose, context=context)

    def decrypt(self, blob: bytes, *, purpose: str, context: bytes = b"") -> bytes:
        try:
            return self._keys.decrypt(blob, purpose=purpose, context=context)
        except EnvelopeBroken:
            raise DecryptionFailed from None
