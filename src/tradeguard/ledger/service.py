"""Append events to the audit ledger inside the caller's transaction (AUD-1, AUD-3).

The append is one INSERT in the caller's transaction and takes no ledger-wide lock: if the
change commits, its audit record exists; if it rolls back, neither does. Chain positions
and hashes are assigned after commit by the sequencer (ledger/sequencer.py), so concurrent
writers on PostgreSQL never queue behind one another for the length of their transactions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.core.clock import Clock
from tradeguard.core.ids import IdGenerator
from tradeguard.ledger import repository
from tradeguard.ledger.canonical import canonical_bytes
from tradeguard.ledger.domain import AppendedEvent, LedgerEvent


class Ledger:
    """Stamps events with an id and a nanosecond timestamp, and appends them."""

    def __init__(self, *, clock: Clock, ids: IdGenerator) -> None:
        self._clock = clock
        self._ids = ids

    async def append(self, session: AsyncSession, event: LedgerEvent) -> AppendedEvent:
        occurred_ns = self._clock.now_ns()
        event_id = self._ids.new_str()
        body = canonical_bytes(event.envelope(event_id=event_id, occurred_ns=occurred_ns))
        pk = await repository.insert_event(
            session,
            {
                "event_id": event_id,
                "event_type": event.type,
                "occurred_ns": occurred_ns,
                "actor_id": event.actor.id,
                "subject_id": event.subject.id if event.subject else None,
                "body": body,
            },
        )
        return AppendedEvent(pk=pk, event_id=event_id, occurred_ns=occurred_ns, body=body)


@dataclass(frozen=True, slots=True)
class SequencedEvent:
    """A chained event as its consumers read it: its chain position and its document."""

    seq: int
    document: dict[str, Any]


def _sequenced(rows: Sequence[Any]) -> list[SequencedEvent]:
    return [SequencedEvent(seq=int(row.seq), document=json.loads(bytes(row.body))) for row in rows]


async def events_after(
    session: AsyncSession, *, after_seq: int, limit: int
) -> list[SequencedEvent]:
    """Chained events after `after_seq`, in sequence order: how consumers (detectors,
    reports) tail the ledger behind a checkpoint of their own."""
    conn = await session.connection()
    return _sequenced(await repository.events_by_seq(conn, after_seq + 1, limit))


async def events_of_actors(
    session: AsyncSession, actor_ids: Sequence[str], *, since_ns: int, through_seq: int
) -> list[SequencedEvent]:
    """Chained events of these actors since `since_ns`, up to `through_seq`, in order."""
    if not actor_ids:
        return []
    conn = await session.connection()
    rows = await repository.events_by_actors(
        conn, actor_ids, since_ns=since_ns, through_seq=through_seq
    )
    return _sequenced(rows)
