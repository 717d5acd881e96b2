"""Key management use cases: create, rotate, count usage, rewrap, retire (PCI DSS 3.6/3.7).

Every operation that changes the key table appends a ledger event in the same transaction
(`crypto:<subject>:<action>`); key material never appears in an event, only class, kind,
version and the key-encrypting key's public id. Services never commit: the command or the
worker that calls them owns the unit of work, and a rewrap commits once per batch.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.core.errors import Conflict, TradeguardError
from tradeguard.crypto import repository
from tradeguard.crypto.catalogue import (
    IndexLocation,
    Location,
    index_locations_of,
    locations_of,
)
from tradeguard.crypto.classes import (
    CLASS_OF_ID,
    DEFAULT_ROTATION_DAYS,
    PLATFORM_CLASSES,
    SPEC_OF,
    DataClass,
)
from tradeguard.crypto.envelope import (
    FORMAT_LEGACY,
    KEY_BYTES,
    FieldBinding,
    key_slot,
    parse_header,
)
from tradeguard.crypto.index_format import parse_index, version_of_index_prefix
from tradeguard.crypto.keyring import (
    ACTIVE,
    DATA,
    INDEX,
    LEGACY,
    LEGACY_VERSION,
    RETIRED,
    SECRET,
    SECRET_VERSION,
    DecryptionFailed,
    Keyring,
    NoActiveKey,
    UnknownKek,
)
from tradeguard.crypto.peppers import PEPPER_PURPOSES
from tradeguard.crypto.providers import KekProvider
from tradeguard.ledger.domain import SYSTEM, LedgerEvent, Party

log = logging.getLogger(__name__)

NS_PER_DAY = 86_400 * NS_PER_SECOND


class KeysInTheVault(TradeguardError):
    status = 409
    slug = "keys-in-the-vault"
    title = "These keys live in the card vault, not in the platform's database"


class KeysElsewhere(TradeguardError):
    status = 409
    slug = "keys-elsewhere"
    title = "These keys are not kept in this key table"


class KeyAudit(Protocol):
    """Where key operations are recorded, in the caller's transaction: the platform's ledger
    (ledger/service.py Ledger), or the card vault's own access log (vault/keys.py)."""

    async def append(self, session: AsyncSession, event: LedgerEvent) -> object: ...


@dataclass(frozen=True, slots=True)
class KeyScope:
    """Which classes a key table holds, and whether it stores the platform's HMAC peppers:
    the platform's database (every class but the vault's), or the card vault's own."""

    classes: tuple[DataClass, ...]
    peppers: tuple[str, ...]


PLATFORM_KEYS = KeyScope(PLATFORM_CLASSES, PEPPER_PURPOSES)
VAULT_KEYS = KeyScope(tuple(c for c in DataClass if SPEC_OF[c].in_vault), peppers=())


class KeyEvent(StrEnum):
    KEY_CREATED = "crypto:key:created"
    KEY_ROTATED = "crypto:key:rotated"
    KEY_RETIRED = "crypto:key:retired"
    USAGE_COUNTED = "crypto:key:usage_counted"
    REWRAP_STARTED = "crypto:rewrap:started"
    REWRAP_RESUMED = "crypto:rewrap:resumed"
    REWRAP_FINISHED = "crypto:rewrap:finished"
    MASTER_SPLIT = "crypto:master:split"
    MASTER_COMBINED = "crypto:master:combined"
    KEY_REWRAPPED = "crypto:key:rewrapped"
    SECRET_STORED = "crypto:secret:stored"  # noqa: S105 - an event type
    MASTER_ROTATION_STARTED = "crypto:master:rotation_started"
    MASTER_ROTATED = "crypto:master:rotated"
    INDEX_ROTATED = "crypto:index:rotated"
    INDEX_RETIRED = "crypto:index:retired"
    INDEX_USAGE_COUNTED = "crypto:index:usage_counted"
    REINDEX_STARTED = "crypto:reindex:started"
    REINDEX_RESUMED = "crypto:reindex:resumed"
    REINDEX_FINISHED = "crypto:reindex:finished"


@dataclass(frozen=True, slots=True)
class _BatchEvents:
    started: KeyEvent
    resumed: KeyEvent
    finished: KeyEvent


_REWRAP_EVENTS = _BatchEvents(
    KeyEvent.REWRAP_STARTED, KeyEvent.REWRAP_RESUMED, KeyEvent.REWRAP_FINISHED
)
_REINDEX_EVENTS = _BatchEvents(
    KeyEvent.REINDEX_STARTED, KeyEvent.REINDEX_RESUMED, KeyEvent.REINDEX_FINISHED
)
# Reindex progress rows share the rewrap progress table, under names of their own.
REINDEX_PREFIX = "index:"


@dataclass(frozen=True, slots=True)
class KeyPolicy:
    """Cryptoperiods and the delays that keep running processes consistent."""

    rotation_days: Mapping[DataClass, int] = field(default_factory=dict)
    default_rotation_days: int = DEFAULT_ROTATION_DAYS
    # A new version encrypts only this long after it is created: longer than the interval
    # at which serving processes re-read the key table, so all of them know it first.
    activation_delay_ns: int = 15 * NS_PER_SECOND
    # An old version retires only this long after its successor activated: a transaction
    # that sealed a value under it just before then has committed (or failed) by now.
    retire_grace_ns: int = 60 * NS_PER_SECOND

    def period_ns(self, data_class: DataClass) -> int:
        return self.rotation_days.get(data_class, self.default_rotation_days) * NS_PER_DAY


@dataclass(frozen=True, slots=True)
class NewKeyVersion:
    data_class: DataClass
    kind: str
    version: int
    activates_ns: int


@dataclass(frozen=True, slots=True)
class VersionStatus:
    data_class: DataClass
    kind: str
    version: int
    state: str  # encrypting, pending, decrypt-only, retired; index: indexing, lookup-only
    created_ns: int
    activates_ns: int
    retired_ns: int | None
    usage_count: int | None
    kek_id: str | None


@dataclass(frozen=True, slots=True)
class RewrapBatch:
    data_class: DataClass
    location: str
    target_version: int
    scanned: int
    rewrapped: int
    unreadable: int
    finished: bool
    resumed: bool
    total_rewrapped: int


@dataclass(frozen=True, slots=True)
class _BatchStart:
    cursor: str | None
    total_before: int
    resumed: bool = False
    done: bool = False

    def finished(self, data_class: DataClass, name: str, target: int) -> RewrapBatch:
        return RewrapBatch(data_class, name, target, 0, 0, 0, True, False, self.total_before)


class KeyManagement:
    def __init__(
        self,
        keyring: Keyring,
        *,
        ledger: KeyAudit,
        policy: KeyPolicy | None = None,
        scope: KeyScope = PLATFORM_KEYS,
    ) -> None:
        self.keyring = keyring
        self.ledger = ledger
        self.policy = policy or KeyPolicy()
        self.scope = scope

    @property
    def _now(self) -> int:
        return self.keyring.clock.now_ns()

    async def _event(
        self, session: AsyncSession, event: KeyEvent, actor: Party, data: Mapping[str, Any]
    ) -> None:
        await self.ledger.append(session, LedgerEvent(type=event, actor=actor, data=dict(data)))

    # -- creation and rotation ------------------------------------------------------------

    async def ensure_keys(
        self, session: AsyncSession, *, actor: Party = SYSTEM
    ) -> list[NewKeyVersion]:
        """Give every class its first data key and blind-index key, and a version 0 where data
        may exist in the legacy format; a no-op once done (safe in every process start)."""
        existing = {(row.data_class, row.kind) for row in await repository.key_versions(session)}
        created: list[NewKeyVersion] = []
        now = self._now
        for data_class in self.scope.classes:
            wanted = [DATA, INDEX]
            if SPEC_OF[data_class].legacy_purpose and self.keyring.provider.legacy is not None:
                wanted.append(LEGACY)
            for kind in wanted:
                if (data_class.value, kind) in existing:
                    continue
                version = LEGACY_VERSION if kind == LEGACY else 1
                made = await self._insert(session, data_class, kind, version, activates_ns=now)
                if made is not None:
                    created.append(made)
                    await self._event(session, KeyEvent.KEY_CREATED, actor, self._describe(made))
        if not existing and self.keyring.legacy is None:
            # A new database under a KMS: no local master key to derive peppers from, and no
            # peppered value stored yet, so each pepper starts as a new random secret.
            for purpose in self.scope.peppers:
                await self._store_secret(
                    session, purpose, secrets.token_bytes(KEY_BYTES), self.keyring.provider, actor
                )
        return created

    async def _store_secret(
        self,
        session: AsyncSession,
        purpose: str,
        secret: bytes,
        provider: KekProvider,
        actor: Party,
    ) -> bool:
        wrapped = await provider.wrap(
            secret, associated_data=key_slot(purpose, SECRET, SECRET_VERSION)
        )
        now = self._now
        try:
            async with session.begin_nested():
                await repository.insert_key_version(
                    session,
                    {
                        "data_class": purpose,
                        "kind": SECRET,
                        "version": SECRET_VERSION,
                        "state": ACTIVE,
                        "wrapped_key": wrapped,
                        "kek_id": provider.kek_id,
                        "created_ns": now,
                        "activates_ns": now,
                        "retired_ns": None,
                        "usage_count": None,
                        "usage_counted_ns": None,
                    },
                )
        except IntegrityError:
            return False  # stored by another run first
        await self._event(
            session,
            KeyEvent.SECRET_STORED,
            actor,
            {"purpose": purpose, "version": SECRET_VERSION, "kek_id": provider.kek_id},
        )
        return True

    async def _insert(
        self,
        session: AsyncSession,
        data_class: DataClass,
        kind: str,
        version: int,
        *,
        activates_ns: int,
    ) -> NewKeyVersion | None:
        wrapped = (
            None if kind == LEGACY else await self.keyring.wrap_new_key(data_class, kind, version)
        )
        try:
            # A savepoint: another process creating the same version first (the primary key
            # refuses the second) must not abort the caller's transaction.
            async with session.begin_nested():
                await repository.insert_key_version(
                    session,
                    {
                        "data_class": data_class.value,
                        "kind": kind,
                        "version": version,
                        "state": ACTIVE,
                        "wrapped_key": wrapped,
                        "kek_id": None if wrapped is None else self.keyring.provider.kek_id,
                        "created_ns": self._now,
                        "activates_ns": activates_ns,
                        "retired_ns": None,
                        "usage_count": None,
                        "usage_counted_ns": None,
                    },
                )
        except IntegrityError:
            return None
        return NewKeyVersion(data_class, kind, version, activates_ns)

    def _describe(self, made: NewKeyVersion) -> dict[str, Any]:
        return {
            "data_class": made.data_class.value,
            "kind": made.kind,
            "version": made.version,
            "activates_ns": made.activates_ns,
            "kek_id": None if made.kind == LEGACY else self.keyring.provider.kek_id,
        }

    async def rotate(
        self,
        session: AsyncSession,
        data_class: DataClass,
        *,
        actor: Party,
        reason: str = "manual",
    ) -> NewKeyVersion:
        """Create the next version; it encrypts after the activation delay."""
        return await self._next_version(
            session,
            data_class,
            DATA,
            actor=actor,
            reason=reason,
            in_vault=f"the {data_class.value} keys live in the card vault's own database: "
            "rotate them with `tradeguard vault rotate-key`",
        )

    async def _next_version(
        self,
        session: AsyncSession,
        data_class: DataClass,
        kind: str,
        *,
        actor: Party,
        reason: str,
        in_vault: str,
    ) -> NewKeyVersion:
        """Insert the next version of a class's data or index key, active after the delay."""
        if kind == INDEX and SPEC_OF[data_class].in_vault:
            raise KeysInTheVault(in_vault)
        self.check_in_scope(data_class)
        latest = await repository.latest_version(session, data_class.value, kind)
        if latest is None:
            raise NoActiveKey(f"{data_class.value} has no {kind} key yet; start the platform first")
        made = await self._insert(
            session,
            data_class,
            kind,
            latest + 1,
            activates_ns=self._now + self.policy.activation_delay_ns,
        )
        if made is None:
            raise Conflict(f"the {data_class.value} {kind} key was rotated by another process")
        event = KeyEvent.INDEX_ROTATED if kind == INDEX else KeyEvent.KEY_ROTATED
        await self._event(session, event, actor, {**self._describe(made), "reason": reason})
        return made

    def check_in_scope(self, data_class: DataClass) -> None:
        """Refuse a class whose keys another key table holds."""
        if data_class in self.scope.classes:
            return
        if SPEC_OF[data_class].in_vault:
            raise KeysInTheVault(
                f"the {data_class.value} keys live in the card vault's own database: "
                "rotate them with `tradeguard vault rotate-key`"
            )
        raise KeysElsewhere(
            f"the {data_class.value} keys live in the platform's database, not the vault's"
        )

    async def due_for_rotation(self, session: AsyncSession) -> list[DataClass]:
        """Classes whose newest data key is older than their cryptoperiod."""
        newest: dict[str, int] = {}
        for row in await repository.key_versions(session):
            if row.kind == DATA:
                newest[row.data_class] = max(newest.get(row.data_class, 0), row.created_ns)
        now = self._now
        return [
            data_class
            for data_class in self.scope.classes
            if data_class.value in newest
            and now - newest[data_class.value] >= self.policy.period_ns(data_class)
        ]

    async def rotate_due(
        self, session: AsyncSession, *, actor: Party = SYSTEM
    ) -> list[NewKeyVersion]:
        """The scheduled check: rotate every class whose cryptoperiod has ended."""
        rotated = []
        for data_class in await self.due_for_rotation(session):
            try:
                rotated.append(
                    await self.rotate(session, data_class, actor=actor, reason="scheduled")
                )
            except Conflict:
                continue  # another process's check rotated it first
        return rotated

    # -- usage, retirement ------------------------------------------------------------------

    async def usage(self, session: AsyncSession, data_class: DataClass) -> dict[int, int]:
        """Stored values per key version across every location of the class (0: legacy)."""
        counts: dict[int, int] = {}
        for location in locations_of(data_class, self.keyring.catalogue):
            for prefix, count in (await repository.header_counts(session, location)).items():
                version = _version_of_prefix(prefix, data_class)
                if version is not None:
                    counts[version] = counts.get(version, 0) + count
        return counts

    async def count_usage(
        self, session: AsyncSession, data_class: DataClass, *, actor: Party
    ) -> dict[int, int]:
        counts = await self.usage(session, data_class)
        await self._record_counts(
            session, data_class, counts, kinds=repository.DATA_KINDS, actor=actor
        )
        return counts

    async def _record_counts(
        self,
        session: AsyncSession,
        data_class: DataClass,
        counts: Mapping[int, int],
        *,
        kinds: tuple[str, ...],
        actor: Party,
    ) -> None:
        await repository.record_usage(session, data_class.value, counts, self._now, kinds=kinds)
        index = kinds == repository.INDEX_KINDS
        await self._event(
            session,
            KeyEvent.INDEX_USAGE_COUNTED if index else KeyEvent.USAGE_COUNTED,
            actor,
            {
                "data_class": data_class.value,
                "counts": {str(v): n for v, n in sorted(counts.items())},
            },
        )

    async def retire_unused(
        self, session: AsyncSession, data_class: DataClass, *, actor: Party
    ) -> list[int]:
        """Retire every version that no longer encrypts and that no stored value uses.

        A version qualifies once a newer one has been encrypting for the retire grace; its
        stored values are counted in this transaction. Retired, it never encrypts or
        decrypts again. A class stored outside the database (backups) never retires here:
        its values are in files no count reaches, kept as long as the backups are.
        """
        if SPEC_OF[data_class].stored_outside:
            return []
        now = self._now
        keyset = await self.keyring.refresh(session)
        versions = keyset.versions.get(data_class, {})
        encrypting = keyset.encrypting(data_class, now - self.policy.retire_grace_ns)
        if encrypting is None:
            return []
        live = [version for version, key in versions.items() if not key.retired]
        return await self._retire_unused_versions(
            session,
            data_class,
            live,
            below=encrypting.version,
            counts=await self.usage(session, data_class),
            kinds=repository.DATA_KINDS,
            actor=actor,
        )

    async def _retire_unused_versions(
        self,
        session: AsyncSession,
        data_class: DataClass,
        live: list[int],
        *,
        below: int,
        counts: Mapping[int, int],
        kinds: tuple[str, ...],
        actor: Party,
    ) -> list[int]:
        """Retire each live version older than `below` that no stored value uses (`counts`,
        made in this transaction), each with its event; record the counts."""
        now = self._now
        index = kinds == repository.INDEX_KINDS
        retired = []
        for version in sorted(live):
            if version >= below or counts.get(version, 0):
                continue
            if await repository.retire_version(
                session, data_class.value, version, now, kinds=kinds
            ):
                retired.append(version)
                await self._event(
                    session,
                    KeyEvent.INDEX_RETIRED if index else KeyEvent.KEY_RETIRED,
                    actor,
                    {"data_class": data_class.value, "version": version, "usage_count": 0},
                )
        await repository.record_usage(session, data_class.value, counts, now, kinds=kinds)
        if retired:
            await self.keyring.refresh(session)
        return retired

    async def status(self, session: AsyncSession) -> list[VersionStatus]:
        now = self._now
        keyset = await self.keyring.refresh(session)
        out = []
        for row in await repository.key_versions(session):
            try:
                data_class = DataClass(row.data_class)
            except ValueError:
                continue
            encrypting = keyset.encrypting(data_class, now)
            indexing = keyset.indexing(data_class, now)
            if row.state == RETIRED:
                state = "retired"
            elif row.kind == INDEX and indexing is not None and row.version == indexing.version:
                state = "indexing"
            elif row.kind == INDEX:
                # Older: still matched by lookups until a reindex moves its values and it
                # retires; newer: known to every process, computes indexes once activated.
                state = "pending" if row.activates_ns > now else "lookup-only"
            elif encrypting is not None and row.kind == DATA and row.version == encrypting.version:
                state = "encrypting"
            elif row.activates_ns > now:
                state = "pending"
            else:
                state = "decrypt-only"
            out.append(
                VersionStatus(
                    data_class,
                    row.kind,
                    row.version,
                    state,
                    row.created_ns,
                    row.activates_ns,
                    row.retired_ns,
                    row.usage_count,
                    row.kek_id,
                )
            )
        return out

    # -- rewrap -----------------------------------------------------------------------------

    async def _open_batch(
        self,
        session: AsyncSession,
        data_class: DataClass,
        name: str,
        target: int,
        *,
        actor: Party,
        first_of_run: bool,
        events: _BatchEvents,
    ) -> _BatchStart:
        """Where a batched job over one location stands: resumed from its recorded cursor
        when it works towards the same version, started afresh (an event) otherwise."""
        now = self._now
        progress = await repository.progress(session, data_class.value, name)
        described = {"data_class": data_class.value, "location": name, "target_version": target}
        if progress is not None and progress.target_version == target:
            if progress.finished_ns is not None and first_of_run:
                return _BatchStart(progress.cursor, progress.rows_rewrapped, done=True)
            if first_of_run and progress.cursor is not None:
                await self._event(
                    session,
                    events.resumed,
                    actor,
                    {**described, "rows_rewrapped": progress.rows_rewrapped},
                )
                return _BatchStart(progress.cursor, progress.rows_rewrapped, resumed=True)
            return _BatchStart(progress.cursor, progress.rows_rewrapped)
        await repository.start_progress(
            session,
            {
                "data_class": data_class.value,
                "location": name,
                "target_version": target,
                "cursor": None,
                "rows_rewrapped": 0,
                "started_ns": now,
                "updated_ns": now,
                "finished_ns": None,
            },
        )
        await self._event(session, events.started, actor, described)
        return _BatchStart(None, 0)

    async def _close_batch(
        self,
        session: AsyncSession,
        data_class: DataClass,
        location: Location | IndexLocation,
        name: str,
        *,
        target: int,
        start: _BatchStart,
        rows: Sequence[Row[Any]],
        batch_size: int,
        swaps: list[tuple[Any, bytes, bytes]],
        unreadable: int,
        actor: Party,
        events: _BatchEvents,
    ) -> RewrapBatch:
        """Store the batch's new values and how far it got, in the same transaction."""
        rewrapped = await repository.swap_values(session, location, swaps)
        finished = len(rows) < batch_size
        new_cursor = (
            _encode_cursor(location, rows[-1]._mapping[location.key_column])
            if rows
            else start.cursor
        )
        await repository.advance_progress(
            session,
            data_class=data_class.value,
            location=name,
            cursor=new_cursor,
            rewrapped=rewrapped,
            now_ns=self._now,
            finished=finished,
        )
        if unreadable:
            log.warning(
                "a batch left values it could not decrypt",
                extra={"data_class": data_class.value, "location": name, "count": unreadable},
            )
        if finished:
            await self._event(
                session,
                events.finished,
                actor,
                {
                    "data_class": data_class.value,
                    "location": name,
                    "target_version": target,
                    "rows_rewrapped": start.total_before + rewrapped,
                },
            )
        return RewrapBatch(
            data_class,
            name,
            target,
            len(rows),
            rewrapped,
            unreadable,
            finished,
            start.resumed,
            start.total_before + rewrapped,
        )

    async def rewrap_batch(
        self,
        session: AsyncSession,
        data_class: DataClass,
        location: Location,
        *,
        batch_size: int,
        actor: Party,
        first_of_run: bool,
    ) -> RewrapBatch:
        """Re-encrypt the next batch of `location` under the encrypting version, and record
        how far it got in the same transaction: a crash loses at most the batch under way."""
        target = self.keyring.encrypting_version(data_class)
        if target is None:
            raise NoActiveKey(f"no active key version for {data_class.value}")
        start = await self._open_batch(
            session,
            data_class,
            location.name,
            target,
            actor=actor,
            first_of_run=first_of_run,
            events=_REWRAP_EVENTS,
        )
        if start.done:
            return start.finished(data_class, location.name, target)
        rows = await repository.rewrap_batch(
            session, location, _decode_cursor(location, start.cursor), batch_size
        )
        unreadable = 0
        swaps: list[tuple[Any, bytes, bytes]] = []
        for row in rows:
            values = row._mapping
            blob = bytes(values[location.column])
            if self.keyring.version_of(blob, data_class) == target:
                continue
            binding = FieldBinding(
                data_class.value, location.table, location.column, location.record_id(values)
            )
            try:
                plaintext = self.keyring.open(blob, binding, data_class)
            except DecryptionFailed:
                # Left as it is (and so its version cannot retire); named by count only.
                unreadable += 1
                continue
            swaps.append(
                (
                    values[location.key_column],
                    blob,
                    self.keyring.seal(plaintext, binding, data_class),
                )
            )
        return await self._close_batch(
            session,
            data_class,
            location,
            location.name,
            target=target,
            start=start,
            rows=rows,
            batch_size=batch_size,
            swaps=swaps,
            unreadable=unreadable,
            actor=actor,
            events=_REWRAP_EVENTS,
        )

    # -- blind-index keys: rotation, reindex, retirement ---------------------------------------

    async def rotate_index(
        self,
        session: AsyncSession,
        data_class: DataClass,
        *,
        actor: Party,
        reason: str = "manual",
    ) -> NewKeyVersion:
        """Create the next blind-index key version; new index values are computed under it
        after the activation delay, and lookups match under it (and every older live version)
        from the moment a process reads it."""
        return await self._next_version(
            session,
            data_class,
            INDEX,
            actor=actor,
            reason=reason,
            in_vault=f"the {data_class.value} index key lives in the card vault's own database "
            "and keeps its version (card fingerprints are compared across the two databases)",
        )

    async def index_usage(self, session: AsyncSession, data_class: DataClass) -> dict[int, int]:
        """Stored index values per index key version across the class's index columns."""
        class_id = SPEC_OF[data_class].class_id
        counts: dict[int, int] = {}
        for location in index_locations_of(data_class, self.keyring.indexes):
            found = await repository.index_prefix_counts(session, location)
            for (prefix, length), count in found.items():
                version = version_of_index_prefix(prefix, length, class_id)
                if version is not None:
                    counts[version] = counts.get(version, 0) + count
        return counts

    async def count_index_usage(
        self, session: AsyncSession, data_class: DataClass, *, actor: Party
    ) -> dict[int, int]:
        counts = await self.index_usage(session, data_class)
        await self._record_counts(
            session, data_class, counts, kinds=repository.INDEX_KINDS, actor=actor
        )
        return counts

    async def retire_unused_index(
        self, session: AsyncSession, data_class: DataClass, *, actor: Party
    ) -> list[int]:
        """Retire every index key version older than the one computing indexes (for the
        retire grace) that no stored index value uses. Retired, it is never read into a
        keyring again: it computes no index, for storing or for lookups."""
        if SPEC_OF[data_class].in_vault:
            return []
        now = self._now
        keyset = await self.keyring.refresh(session)
        indexing = keyset.indexing(data_class, now - self.policy.retire_grace_ns)
        if indexing is None:
            return []
        return await self._retire_unused_versions(
            session,
            data_class,
            list(keyset.index_keys.get(data_class, {})),
            below=indexing.version,
            counts=await self.index_usage(session, data_class),
            kinds=repository.INDEX_KINDS,
            actor=actor,
        )

    async def reindex_batch(
        self,
        session: AsyncSession,
        data_class: DataClass,
        location: IndexLocation,
        *,
        batch_size: int,
        actor: Party,
        first_of_run: bool,
    ) -> RewrapBatch:
        """Recompute the next batch of `location`'s blind indexes under the current index key
        version, from the encrypted column beside them, and record how far it got in the same
        transaction. A row whose value does not decrypt keeps its index (and so its version
        stays live): counted, never guessed."""
        target = self.keyring.index_version(data_class)
        if target is None:
            raise NoActiveKey(f"no blind-index key for {data_class.value}")
        name = REINDEX_PREFIX + location.name
        start = await self._open_batch(
            session,
            data_class,
            name,
            target,
            actor=actor,
            first_of_run=first_of_run,
            events=_REINDEX_EVENTS,
        )
        if start.done:
            return start.finished(data_class, name, target)
        rows = await repository.rewrap_batch(
            session, location, _decode_cursor(location, start.cursor), batch_size
        )
        class_id = SPEC_OF[data_class].class_id
        unreadable = 0
        swaps: list[tuple[Any, bytes, bytes]] = []
        for row in rows:
            values = row._mapping
            stored = bytes(values[location.column])
            header = parse_index(stored)
            if header is not None and header == (class_id, target):
                continue
            sealed = values[location.source_column]
            if sealed is None:
                unreadable += 1  # an index with no value beside it: left for a person to see
                continue
            binding = FieldBinding(
                data_class.value, location.table, location.source_column, location.record_id(values)
            )
            try:
                plaintext = self.keyring.open(bytes(sealed), binding, data_class)
            except DecryptionFailed:
                unreadable += 1
                continue
            normalized = location.index_input(plaintext.decode("utf-8"), values)
            swaps.append(
                (
                    values[location.key_column],
                    stored,
                    self.keyring.index_value(data_class, normalized),
                )
            )
        return await self._close_batch(
            session,
            data_class,
            location,
            name,
            target=target,
            start=start,
            rows=rows,
            batch_size=batch_size,
            swaps=swaps,
            unreadable=unreadable,
            actor=actor,
            events=_REINDEX_EVENTS,
        )

    async def wrapped_data_key(
        self, session: AsyncSession, data_class: DataClass, version: int
    ) -> tuple[bytes, str]:
        """A data key version as the key table holds it (wrapped by the KEK) and the KEK's id:
        what travels with data kept outside the database (backups), so that opening it needs
        the key-encrypting key and nothing else from this database."""
        row = await repository.key_version(session, data_class.value, DATA, version)
        if row is None or row.wrapped_key is None or row.kek_id is None:
            raise NoActiveKey(f"no stored key {data_class.value} v{version}")
        return bytes(row.wrapped_key), str(row.kek_id)

    # -- the key-encrypting key: rotation, or a move to a KMS --------------------------------

    async def legacy_in_use(self, session: AsyncSession) -> dict[DataClass, int]:
        """Classes whose version 0 (HKDF of the local master key) still decrypts and has
        stored values: a new key-encrypting key could not read those."""
        found: dict[DataClass, int] = {}
        for row in await repository.key_versions(session):
            if row.kind != LEGACY or row.state != ACTIVE:
                continue
            try:
                data_class = DataClass(row.data_class)
            except ValueError:
                continue
            count = (await self.usage(session, data_class)).get(LEGACY_VERSION, 0)
            if count:
                found[data_class] = count
        return found

    async def check_no_legacy_values(self, session: AsyncSession) -> None:
        """Refuse a new key-encrypting key while values of the legacy format (version 0) are
        stored: only the current local master key's HKDF keys read them."""
        legacy = await self.legacy_in_use(session)
        if legacy:
            names = ", ".join(f"{c.value} ({n} values)" for c, n in legacy.items())
            first = next(iter(legacy)).value
            raise Conflict(
                f"values in the legacy format (version 0) read only under the current local "
                f"master key: {names}; run `tradeguard keys rewrap --class {first}` (for each "
                "class named) first"
            )

    async def begin_master_rotation(
        self, session: AsyncSession, target: KekProvider, *, actor: Party
    ) -> list[Row[Any]]:
        """Check that nothing needs the current master key's HKDF keys, store every pepper
        under `target` (the value it has today), and list the keys still to re-wrap."""
        await self.check_no_legacy_values(session)
        self.keyring.add_provider(target)
        stored = await repository.key_versions(session)
        have = {row.data_class for row in stored if row.kind == SECRET}
        peppers = 0
        for purpose in self.scope.peppers:
            if purpose not in have:
                secret = self.keyring.derive_secret(purpose)
                peppers += await self._store_secret(session, purpose, secret, target, actor)
        pending = [
            row
            for row in await repository.key_versions(session)
            if row.wrapped_key is not None and row.kek_id != target.kek_id
        ]
        unknown = sorted({str(r.kek_id) for r in pending if r.kek_id not in self.keyring.providers})
        if unknown:
            # Refused before anything is recorded: a run that could not move these keys
            # must not leave a "rotation started" behind.
            raise UnknownKek(
                f"keys are wrapped under {', '.join(unknown)}, which was not given: put "
                "that key-encrypting key in place"
            )
        await self._event(
            session,
            KeyEvent.MASTER_ROTATION_STARTED,
            actor,
            {
                "to_kek_id": target.kek_id,
                "from_kek_ids": sorted({str(row.kek_id) for row in pending}),
                "keys_to_rewrap": len(pending),
                "peppers_stored": peppers,
            },
        )
        return pending

    async def rewrap_key(
        self, session: AsyncSession, row: Row[Any], target: KekProvider, *, actor: Party
    ) -> bool:
        """Re-wrap one stored key under `target` (checked to open again before it is
        stored); False when another run moved it first."""
        source = self.keyring.providers.get(str(row.kek_id))
        if source is None:
            raise UnknownKek(
                f"the {row.kind} key {row.data_class} v{row.version} is wrapped under "
                f"{row.kek_id}, which was not given: put that key-encrypting key in place"
            )
        key = await Keyring.unwrap_row(
            source, row.data_class, row.kind, row.version, bytes(row.wrapped_key)
        )
        slot = key_slot(row.data_class, row.kind, row.version)
        wrapped = await target.wrap(key, associated_data=slot)
        if await target.unwrap(wrapped, associated_data=slot) != key:
            raise DecryptionFailed(f"{target.kek_id} did not give back the key it wrapped")
        if not await repository.rewrap_key_row(
            session, row, wrapped_key=wrapped, kek_id=target.kek_id
        ):
            return False
        await self._event(
            session,
            KeyEvent.KEY_REWRAPPED,
            actor,
            {
                "data_class": row.data_class,
                "kind": row.kind,
                "version": row.version,
                "from_kek_id": row.kek_id,
                "to_kek_id": target.kek_id,
            },
        )
        return True

    async def finish_master_rotation(
        self, session: AsyncSession, target: KekProvider, *, actor: Party
    ) -> dict[str, int]:
        """Keys still under another KEK (none: the rotation is recorded as done, and
        `target` wraps every new key from now on)."""
        counts = await repository.kek_counts(session)
        others = {kek: n for kek, n in counts.items() if kek != target.kek_id}
        if not others:
            await self._event(
                session,
                KeyEvent.MASTER_ROTATED,
                actor,
                {"to_kek_id": target.kek_id, "keys": counts.get(target.kek_id, 0)},
            )
            self.keyring.use_provider(target)
        return others

    async def kek_counts(self, session: AsyncSession) -> dict[str, int]:
        return await repository.kek_counts(session)

    async def record_master_event(
        self, session: AsyncSession, event: KeyEvent, *, actor: Party, data: Mapping[str, Any]
    ) -> None:
        """A master-key operation done outside the database (split, combine)."""
        await self._event(session, event, actor, data)


def _version_of_prefix(prefix: bytes, data_class: DataClass) -> int | None:
    if prefix[:1] == bytes([FORMAT_LEGACY]):
        return LEGACY_VERSION
    header = parse_header(prefix + bytes(64))  # the prefix is the header alone
    if header is None or CLASS_OF_ID.get(header.class_id) is not data_class:
        return None
    return header.version


def _encode_cursor(location: Location | IndexLocation, key: Any) -> str:
    return bytes(key).hex() if location.key_is_binary else str(key)


def _decode_cursor(location: Location | IndexLocation, cursor: str | None) -> Any:
    if cursor is None:
        return None
    return bytes.fromhex(cursor) if location.key_is_binary else cursor
