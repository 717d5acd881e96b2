"""Append events to the audit ledger inside the caller's transaction (AUD-1, AUD-3).

The append is one INSERT in the caller's transaction and takes no ledger-wide lock: if the
change commits, its audit record exists; if it rolls back, neither does. Chain positions
and hashes are assigned after commit by the sequencer (ledger/sequencer.py), so concurrent
writers on PostgreSQL never queue behind one another for the length of their transactions.
"""

from __future__ import annotations

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
