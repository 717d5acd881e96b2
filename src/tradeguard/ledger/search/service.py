"""Search the audit ledger (AUD-3 indexed for search, AUD-2 instant retrieval, AUD-4 on-demand
queries), export what matches, and audit every search.

Only chained events are returned: each result has its place in the hash chain (its
sequence number), so anything found can be proven in the log. An event whose transaction has
committed but which the sequencer has not reached yet (normally a fraction of a second)
appears once it is chained, always after everything already chained: results come in chain
order, so a newest-first reader sees it on a new first page and an oldest-first reader at
the end; paging never repeats or skips an event.

Queries run on their own read-only connection, one page at a time, and never inside the
transaction that writes the search's audit event: a long export holds no transaction open
(which on PostgreSQL would hold back the sequencer's horizon) and no more than one page in
memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from tradeguard.core.errors import InvalidInput
from tradeguard.db.engine import read_only
from tradeguard.ledger.chain import stored_body
from tradeguard.ledger.domain import LedgerEvent, Party
from tradeguard.ledger.search import repository
from tradeguard.ledger.search.query import (
    EventFilter,
    Position,
    SearchInputError,
    SortOrder,
    check_limit,
    decode_cursor,
    encode_cursor,
)
from tradeguard.ledger.search.results import EventPage, FoundEvent
from tradeguard.ledger.service import Ledger

EXPORT_BATCH = 1_000


class SearchEvent(StrEnum):
    SEARCHED = "audit:events:searched"
    EXPORTED = "audit:events:exported"


class ExportTooLarge(InvalidInput):
    slug = "audit-export-too-large"
    title = "Too many events for one export"


@dataclass(frozen=True, slots=True)
class ExportPlan:
    """What an export will write: the chained events matching `where` up to `through`."""

    where: EventFilter
    sort: SortOrder
    through: Position | None
    count: int


def _found(rows: Sequence[Any]) -> list[FoundEvent]:
    # An event without a chain row sits behind the sequencer's cursor only if it was
    # inserted behind the sequencer's back (audit verify names it): never a result.
    return [
        FoundEvent(
            seq=int(row.seq),
            event_id=row.event_id,
            type=row.event_type,
            occurred_ns=int(row.occurred_ns),
            body=stored_body(row.body, seq=int(row.seq)),
        )
        for row in rows
        if row.seq is not None
    ]


def _position(row: Any) -> Position:
    return Position(seq=int(row.seq or 0), txid=row.txid, pk=int(row.pk))


def _check_position(conn: AsyncConnection, position: Position) -> Position:
    # A cursor from the other engine (or hand-made) would compare against the wrong key.
    if (position.txid is None) != (conn.dialect.name != "postgresql"):
        raise SearchInputError("cursor", "give the next_cursor of a previous page of this search")
    return position


async def search_page(
    conn: AsyncConnection,
    where: EventFilter,
    *,
    sort: SortOrder = SortOrder.NEWEST,
    limit: int,
    cursor: str | None = None,
) -> EventPage:
    """One page of chained events matching `where`, in chain order; `cursor` continues."""
    check_limit(limit)
    digest = where.digest(sort)
    after = None
    if cursor is not None:
        after = _check_position(conn, decode_cursor(cursor, digest=digest))
    through = await repository.head(conn)
    if through is None:
        return EventPage(items=[], next_cursor=None)
    rows = await repository.search(
        conn, where, sort=sort, limit=limit + 1, through=through, after=after
    )
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(_position(rows[-1]), digest=digest) if more else None
    return EventPage(items=_found(rows), next_cursor=next_cursor)


async def plan_export(
    conn: AsyncConnection,
    where: EventFilter,
    *,
    sort: SortOrder = SortOrder.OLDEST,
    max_events: int | None,
) -> ExportPlan:
    """Fix the export's range at the chain's head now, and count it (refused past the cap)."""
    through = await repository.head(conn)
    if through is None:
        return ExportPlan(where=where, sort=sort, through=None, count=0)
    cap = (max_events + 1) if max_events is not None else None
    count = await repository.count_upto(conn, where, through=through, cap=cap)
    if max_events is not None and count > max_events:
        raise ExportTooLarge(
            f"more than {max_events} events match; narrow the search (a shorter time range, "
            "an account, a type) or export it in parts",
            max_events=max_events,
        )
    return ExportPlan(where=where, sort=sort, through=through, count=count)


async def export_events(
    engine: AsyncEngine, plan: ExportPlan, *, batch: int = EXPORT_BATCH
) -> AsyncIterator[list[FoundEvent]]:
    """The plan's events in its order, one page (and one short read) at a time."""
    if plan.through is None:
        return
    after: Position | None = None
    while True:
        async with engine.connect() as conn:
            await read_only(conn)
            async with conn.begin():
                rows = await repository.search(
                    conn, plan.where, sort=plan.sort, limit=batch, through=plan.through, after=after
                )
        found = _found(rows)
        if found:
            yield found
        if len(rows) < batch:
            return
        after = _position(rows[-1])


async def record_search(
    session: AsyncSession,
    ledger: Ledger,
    *,
    actor: Party,
    where: EventFilter,
    sort: SortOrder,
    limit: int,
    continued: bool,
    returned: int,
    via: str,
    request_id: str | None = None,
) -> None:
    """The search's own ledger event: who searched, for what, and how much they saw.

    The filters sit under `filters`, never at the top of the data, so a search for an
    account is not itself indexed as an event of that account.
    """
    await ledger.append(
        session,
        LedgerEvent(
            type=SearchEvent.SEARCHED,
            actor=actor,
            data={
                "filters": where.described(),
                "sort": sort.value,
                "limit": limit,
                "continued": continued,
                "returned": returned,
                "via": via,
            },
            request_id=request_id,
        ),
    )


async def record_export(
    session: AsyncSession,
    ledger: Ledger,
    *,
    actor: Party,
    plan: ExportPlan,
    export_format: str,
    via: str,
    request_id: str | None = None,
) -> None:
    """The export's ledger event, committed before the first byte is written."""
    await ledger.append(
        session,
        LedgerEvent(
            type=SearchEvent.EXPORTED,
            actor=actor,
            data={
                "filters": plan.where.described(),
                "sort": plan.sort.value,
                "format": export_format,
                "through_seq": plan.through.seq if plan.through else 0,
                "events": plan.count,
                "via": via,
            },
            request_id=request_id,
        ),
    )
