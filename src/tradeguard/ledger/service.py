"""Append events to the audit ledger inside the caller's transaction (AUD-1, AUD-3).

The append is one INSERT in the caller's transaction and takes no ledger-wide lock: if the
change commits, its audit record exists; if it rolls back, neither does. Chain positions
and hashes are assigned after commit by the sequencer (ledger/sequencer.py), so concurrent
writers on PostgreSQL never queue behind one another for the length of their transactions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from tradeguard.core.clock import Clock
from tradeguard.core.errors import TradeguardError
from tradeguard.core.ids import IdGenerator
from tradeguard.ledger import repository
from tradeguard.ledger.canonical import canonical_bytes
from tradeguard.ledger.chain import stored_document
from tradeguard.ledger.domain import AppendedEvent, LedgerEvent, StagedEvent
from tradeguard.ledger.personal.fields import refuse_plaintext_personal
from tradeguard.ledger.personal.keys import SubjectKeys
from tradeguard.ledger.search import repository as search_repository
from tradeguard.ledger.search.references import event_references


class PersonalDataUnsupported(TradeguardError):
    title = "This ledger has no keyring to seal personal data with"


class Ledger:
    """Stamps events with an id and a nanosecond timestamp, and appends them.

    With `subject_keys`, an event's personal section is sealed under its owner's key before
    the event is hashed (ledger/personal/); without, an event holding one is refused.
    Personal data in plain `data` is refused either way.
    """

    def __init__(
        self, *, clock: Clock, ids: IdGenerator, subject_keys: SubjectKeys | None = None
    ) -> None:
        self._clock = clock
        self._ids = ids
        self._subject_keys = subject_keys
        # Told the type of each event handed to the database (the security-signal metrics,
        # web/metrics.py): called at insert, so an event whose transaction later rolls back
        # is still counted; an observer that raises is the caller's failure, never swallowed.
        self.on_appended: Callable[[str], None] | None = None

    @property
    def subject_keys(self) -> SubjectKeys | None:
        return self._subject_keys

    async def append(self, session: AsyncSession, event: LedgerEvent) -> AppendedEvent:
        staged = await self.stage(session, event)
        row = staged.row
        # The accounts and orders the event names, indexed for search (AUD-3) with the event
        # itself: the index never holds an event that rolled back, nor misses one.
        if staged.references:
            pk = await search_repository.insert_event_with_references(
                session, row, staged.references
            )
        else:
            pk = await repository.insert_event(session, row)
        if self.on_appended is not None:
            self.on_appended(row["event_type"])
        return AppendedEvent(
            pk=pk, event_id=row["event_id"], occurred_ns=row["occurred_ns"], body=row["body"]
        )

    async def stage(self, session: AsyncSession, event: LedgerEvent) -> StagedEvent:
        """What `append` would insert (the event's row and its search references), for the
        caller to insert with others in the same transaction (`write`): a hot path's events,
        a statement or two for many."""
        refuse_plaintext_personal(event.data)
        occurred_ns = self._clock.now_ns()
        event_id = self._ids.new_str()
        sealed = None
        if event.personal is not None and event.personal.fields:
            if self._subject_keys is None:
                raise PersonalDataUnsupported
            sealed = await self._subject_keys.seal(session, event.personal, event_id=event_id)
        body = canonical_bytes(
            event.envelope(event_id=event_id, occurred_ns=occurred_ns, sealed=sealed)
        )
        row = {
            "event_id": event_id,
            "event_type": event.type,
            "occurred_ns": occurred_ns,
            "actor_id": event.actor.id,
            "subject_id": event.subject.id if event.subject else None,
            "body": body,
        }
        references = event_references(
            actor=(event.actor.kind, event.actor.id),
            subject=(event.subject.kind, event.subject.id) if event.subject else None,
            data=event.data,
        )
        return StagedEvent(row, tuple(references))

    async def write(self, session: AsyncSession, events: Sequence[StagedEvent]) -> None:
        """Insert staged events (`stage`) and their search references, in their order, in
        the caller's transaction."""
        if not events:
            return
        if any(event.references for event in events):
            await search_repository.insert_events_with_references(
                session, [event.row for event in events], [event.references for event in events]
            )
        else:
            await repository.insert_events(session, [event.row for event in events])
        if self.on_appended is not None:
            for event in events:
                self.on_appended(event.row["event_type"])


@dataclass(frozen=True, slots=True)
class SequencedEvent:
    """A chained event as its consumers read it: its chain position and its document.

    Read with subject keys, the document's `personal` holds the event's personal fields:
    each its value, or `ERASED` once its owner was forgotten, or `UNREADABLE` when its
    ciphertext does not open (ledger/personal/sealing.py). Without, it holds the ciphertext.
    """

    seq: int
    document: dict[str, Any]


async def _sequenced(
    conn: AsyncConnection, rows: Sequence[Any], keys: SubjectKeys | None
) -> list[SequencedEvent]:
    events = [
        SequencedEvent(seq=int(row.seq), document=stored_document(row.body, seq=int(row.seq)))
        for row in rows
    ]
    if keys is not None:
        await keys.open_documents(conn, [event.document for event in events])
    return events


async def events_after(
    session: AsyncSession, *, after_seq: int, limit: int, keys: SubjectKeys | None = None
) -> list[SequencedEvent]:
    """Chained events after `after_seq`, in sequence order: how consumers (detectors,
    reports) tail the ledger behind a checkpoint of their own. With `keys` (the ledger's
    `subject_keys`), personal sections are opened."""
    conn = await session.connection()
    return await _sequenced(conn, await repository.events_by_seq(conn, after_seq + 1, limit), keys)


async def chained_after(conn: AsyncConnection, seq: int) -> bool:
    """Whether anything was chained after `seq`: a consumer's cheap look before it opens a
    writing transaction for nothing (on a read-only connection, it takes no write lock)."""
    return await repository.chained_after(conn, seq)


async def latest_about(
    session: AsyncSession, *, subject_id: str, event_types: Sequence[str]
) -> int | None:
    """When (ns) the newest committed event of these types about this subject occurred: a
    consumer that must not miss what committed a moment ago (a security change just before
    a withdrawal) reads the events themselves, not the chain behind the sequencer. Reads
    the type index, so it suits rare event types."""
    if not event_types:
        return None
    return await repository.latest_of_types_about(session, subject_id, event_types)


async def latest_event_id_about(
    session: AsyncSession, *, subject_id: str, event_types: Sequence[str]
) -> str | None:
    """The id of the newest event of these types about this subject (None: none), those
    committed and those of this transaction: a marker that moves with every such event, so
    an unchanged marker means none happened in between (the type index, rare types)."""
    if not event_types:
        return None
    return await repository.latest_event_id_of_types_about(session, subject_id, event_types)


async def documents_about(
    session: AsyncSession, *, subject_id: str, event_types: Sequence[str]
) -> list[dict[str, Any]]:
    """The documents of every event of these types about this subject, oldest first, those
    committed and those of this transaction: what a use case checks its own rows against
    before an irreversible step (a row edited in the database has no matching event).
    Personal sections stay sealed."""
    if not event_types:
        return []
    bodies = await repository.bodies_of_types_about(session, subject_id, event_types)
    return [stored_document(body, seq=0) for body in bodies]


async def events_of_types(
    session: AsyncSession,
    event_types: Sequence[str],
    *,
    first_seq: int,
    through_seq: int,
    limit: int,
) -> list[SequencedEvent]:
    """Chained events of these types from `first_seq` to `through_seq`, in sequence order,
    at most `limit`: a consumer replaying its look-back window behind its checkpoint after a
    restart. Personal sections stay sealed."""
    if not event_types or first_seq > through_seq:
        return []
    conn = await session.connection()
    rows = await repository.events_by_types(
        conn, event_types, first_seq=first_seq, through_seq=through_seq, limit=limit
    )
    return await _sequenced(conn, rows, None)


async def actors_after(
    session: AsyncSession, *, after_seq: int, limit: int
) -> list[tuple[int, str]]:
    """(seq, actor id) of the chained events after `after_seq`, in order, without their
    documents: a consumer that watches some actors only reads (and parses) theirs
    (`events_of_actors_between`)."""
    conn = await session.connection()
    return [
        (int(row.seq), str(row.actor_id))
        for row in await repository.actors_by_seq(conn, after_seq + 1, limit)
    ]


async def events_of_actors_between(
    session: AsyncSession,
    actor_ids: Sequence[str],
    *,
    first_seq: int,
    last_seq: int,
    keys: SubjectKeys | None = None,
) -> list[SequencedEvent]:
    """Chained events of these actors with seq in [first_seq, last_seq], in order; with
    `keys`, personal sections opened."""
    if not actor_ids:
        return []
    conn = await session.connection()
    rows = await repository.events_of_actors_between(conn, actor_ids, first_seq, last_seq)
    return await _sequenced(conn, rows, keys)


async def events_of_actors(
    session: AsyncSession,
    actor_ids: Sequence[str],
    *,
    since_ns: int,
    through_seq: int,
    keys: SubjectKeys | None = None,
) -> list[SequencedEvent]:
    """Chained events of these actors since `since_ns`, up to `through_seq`, in order; with
    `keys`, personal sections opened."""
    if not actor_ids:
        return []
    conn = await session.connection()
    rows = await repository.events_by_actors(
        conn, actor_ids, since_ns=since_ns, through_seq=through_seq
    )
    return await _sequenced(conn, rows, keys)
