"""Per-subject data keys: created on first use, cached for the append path, destroyed to
forget a subject (crypto-shredding; ENC-3).

Each subject (ledger/personal/subjects.py) has one live 256-bit data key, stored only as
wrapped by the keyring (purpose `ledger-subject-key`, the subject and key id as its
authenticated context). An event's personal fields are sealed under it before the event is
hashed; destroying the wrapped key leaves the ciphertext, the chain and every hash as they
were, and the fields unreadable for good.

The append path is the order path, so it pays nothing when an event holds no personal data
and, per process, one lookup per subject otherwise: a key is cached once it is seen
committed. A key created in the caller's transaction is not cached until another
transaction reads it back, since that transaction (or a savepoint in it) may still roll
back and take the key with it; until then each append of that subject looks it up again.

Reading never trusts the cache: every batch asks the table which of its keys still exist,
so a subject forgotten by another process reads as erased at once.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from tradeguard.core.clock import Clock
from tradeguard.core.errors import TradeguardError
from tradeguard.core.ids import IdGenerator
from tradeguard.ledger.domain import Party, PersonalData
from tradeguard.ledger.personal import repository
from tradeguard.ledger.personal.sealing import (
    DATA_KEY_BYTES,
    ERASED,
    UNREADABLE,
    WRAP_PURPOSE,
    SealBroken,
    field_names,
    open_section,
    parse_section,
    redacted,
    seal,
    wrap_context,
)

log = logging.getLogger(__name__)

# Subjects whose key the append path keeps in memory (a few hundred bytes each); beyond
# this the oldest are dropped and looked up again when next used.
MAX_CACHED_SUBJECTS = 100_000
# Keys this session created and has not seen committed (session.info).
_CREATED = "tradeguard.ledger.personal.created"
# A lost race for a subject's first key is retried this many times (PostgreSQL).
_CREATE_ATTEMPTS = 3


class KeyWrapper(Protocol):
    """What the ledger needs of the keyring (crypto/keyring.py LocalKeyring, or a KMS).

    `decrypt` raises a TradeguardError when the blob does not authenticate.
    """

    def encrypt(self, plaintext: bytes, *, purpose: str, context: bytes = b"") -> bytes: ...

    def decrypt(self, blob: bytes, *, purpose: str, context: bytes = b"") -> bytes: ...


@dataclass(frozen=True, slots=True)
class DataKey:
    key_id: str
    subject: str
    aead: AESGCM


class SubjectKeyMissing(TradeguardError):
    slug = "subject-key-missing"
    title = "A subject's data key could not be created"


class SubjectKeys:
    """Seals personal sections on append and opens them on read."""

    def __init__(self, keyring: KeyWrapper, *, clock: Clock, ids: IdGenerator) -> None:
        self._keyring = keyring
        self._clock = clock
        self._ids = ids
        self._live: dict[str, DataKey] = {}

    async def seal(
        self, session: AsyncSession, personal: PersonalData, *, event_id: str
    ) -> dict[str, Any]:
        """The sealed section of `personal` for event `event_id`."""
        key = await self._key_for(session, personal.subject)
        return seal(
            personal.fields,
            aead=key.aead,
            subject=key.subject,
            key_id=key.key_id,
            event_id=event_id,
        )

    async def ensure(self, session: AsyncSession, owner: Party) -> None:
        """Make sure `owner` has a live key, created (if need be) in the caller's transaction
        itself rather than in a savepoint it may roll back. A path that must cost the same
        whether or not an account exists calls this before its savepoint: a key created
        only inside a rolled-back savepoint would be created again (and its creation timed)
        on every such request."""
        await self._key_for(session, f"{owner.kind}:{owner.id}")

    def forget_cached(self, subject: str) -> None:
        """Drop a subject's key from memory (its row was just destroyed)."""
        self._live.pop(subject, None)

    async def _key_for(self, session: AsyncSession, subject: str) -> DataKey:
        cached = self._live.get(subject)
        if cached is not None:
            return cached
        created: set[str] = session.info.setdefault(_CREATED, set())
        for _ in range(_CREATE_ATTEMPTS):
            row = await repository.live_key(session, subject)
            if row is not None:
                key = self._unwrap(row.key_id, subject, row.wrapped_key)
                if row.key_id not in created:
                    # Read back by a transaction that did not create it: committed.
                    self._remember(key)
                return key
            key_id = self._ids.new_str()
            data_key = secrets.token_bytes(DATA_KEY_BYTES)
            wrapped = self._keyring.encrypt(
                data_key, purpose=WRAP_PURPOSE, context=wrap_context(subject, key_id)
            )
            try:
                # A savepoint: losing the race (PostgreSQL waits for the winner to commit,
                # then refuses the second live key) must not abort the caller's transaction.
                async with session.begin_nested():
                    await repository.insert_key(
                        session,
                        {
                            "key_id": key_id,
                            "subject": subject,
                            "wrapped_key": wrapped,
                            "created_ns": self._clock.now_ns(),
                            "destroyed_ns": None,
                        },
                    )
            except IntegrityError:
                continue  # another transaction's key won: read it back
            created.add(key_id)
            return DataKey(key_id, subject, AESGCM(data_key))
        raise SubjectKeyMissing

    def _remember(self, key: DataKey) -> None:
        if len(self._live) >= MAX_CACHED_SUBJECTS:
            del self._live[next(iter(self._live))]
        self._live[key.subject] = key

    def _unwrap(self, key_id: str, subject: str, wrapped: bytes) -> DataKey:
        data_key = self._keyring.decrypt(
            bytes(wrapped), purpose=WRAP_PURPOSE, context=wrap_context(subject, key_id)
        )
        return DataKey(key_id, subject, AESGCM(data_key))

    async def open_documents(
        self, db: AsyncSession | AsyncConnection, documents: Iterable[MutableMapping[str, Any]]
    ) -> None:
        """Replace each document's sealed personal section by its fields, in place: the
        values where the owner's key exists, ERASED where it was destroyed, UNREADABLE where
        the ciphertext does not open. Never raises for a section it cannot read."""
        sealed = [d for d in documents if "personal" in d]
        if not sealed:
            return
        wanted = {s.key_id for d in sealed if (s := parse_section(d["personal"])) is not None}
        rows = await repository.keys_by_id(db, wanted) if wanted else []
        keys: dict[str, DataKey | None] = {}
        for row in rows:
            keys[row.key_id] = self._key_of_row(row)
        for document in sealed:
            document["personal"] = self._opened(document, keys)

    def _key_of_row(self, row: Any) -> DataKey | None:
        if row.wrapped_key is None:
            return None  # destroyed
        cached = self._live.get(row.subject)
        if cached is not None and cached.key_id == row.key_id:
            return cached
        try:
            return self._unwrap(row.key_id, row.subject, row.wrapped_key)
        except TradeguardError:
            log.warning("subject key %s does not unwrap under its subject", row.key_id)
            return _BROKEN

    @staticmethod
    def _opened(document: Mapping[str, Any], keys: Mapping[str, DataKey | None]) -> dict[str, Any]:
        stored = document["personal"]
        section = parse_section(stored)
        event_id = document.get("id")
        if section is None or not isinstance(event_id, str) or section.key_id not in keys:
            log.warning("personal section of event %s is not readable", event_id)
            return redacted(field_names(stored), UNREADABLE)
        key = keys[section.key_id]
        if key is None:
            return redacted(section.fields, ERASED)
        if key is _BROKEN:
            return redacted(section.fields, UNREADABLE)
        try:
            return open_section(section, aead=key.aead, subject=key.subject, event_id=event_id)
        except SealBroken:
            log.warning("personal section of event %s does not open under its key", event_id)
            return redacted(section.fields, UNREADABLE)


# A key row whose wrapped key does not open under its own subject (moved or altered).
_BROKEN = DataKey("", "", AESGCM(bytes(DATA_KEY_BYTES)))
