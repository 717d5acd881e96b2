"""Every query of the ledger search (parameterized SQLAlchemy Core; no text is spliced in)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    FromClause,
    Select,
    String,
    bindparam,
    exists,
    func,
    insert,
    select,
    text,
    true,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from tradeguard.db.base import Base
from tradeguard.ledger.models import AuditChainRow, SequencerStateRow
from tradeguard.ledger.search.models import audit_event, audit_event_ref
from tradeguard.ledger.search.query import EventFilter, Position, SortOrder
from tradeguard.ledger.search.references import Reference, ReferenceKind

_EVENTS = audit_event
_CHAIN = Base.metadata.tables[AuditChainRow.__tablename__]
_REFS = audit_event_ref
_STATE = Base.metadata.tables[SequencerStateRow.__tablename__]


def _event_with_references() -> Any:
    """INSERT an event and its references in one PostgreSQL statement (a data-modifying CTE).

    Built once: constructing and cache-keying a statement this size on every append costs
    more than running it. The references come as two array parameters, so the statement
    text is the same whatever their number, prepared once per connection.
    """
    event_columns = ("event_id", "event_type", "occurred_ns", "actor_id", "subject_id", "body")
    event = (
        insert(_EVENTS)
        .values({name: bindparam(name) for name in event_columns})
        .returning(_EVENTS.c.pk)
        .cte("new_event")
    )
    named = (
        func.unnest(
            bindparam("ref_kinds", type_=ARRAY(String)),
            bindparam("ref_values", type_=ARRAY(String)),
        )
        .table_valued("kind", "value")
        .render_derived(name="named")
    )
    return (
        insert(_REFS)
        .from_select(
            ["kind", "value", "event_pk"],
            select(named.c.kind, named.c.value, event.c.pk).select_from(event).join(named, true()),
        )
        .returning(_REFS.c.event_pk)
        .add_cte(event)
    )


_EVENT_WITH_REFERENCES = _event_with_references()
_EVENT = insert(_EVENTS).returning(_EVENTS.c.pk)
_REFERENCES = insert(_REFS)


async def insert_event_with_references(
    session: AsyncSession, row: dict[str, Any], references: Sequence[Reference]
) -> int:
    """Insert an event and one row per reference it names; return the event's pk.

    On PostgreSQL one statement, so an event with references costs the append no extra
    round trip (the references' txid is set by the same trigger as the event's: the same
    transaction's id). On SQLite (in process, txid NULL) two statements.
    """
    if session.get_bind().dialect.name == "postgresql":
        parameters = {
            **row,
            "ref_kinds": [kind for kind, _ in references],
            "ref_values": [value for _, value in references],
        }
        return int((await session.execute(_EVENT_WITH_REFERENCES, parameters)).scalars().all()[0])
    pk = int((await session.execute(_EVENT, row)).scalar_one())
    await session.execute(
        _REFERENCES, [{"kind": kind, "value": value, "event_pk": pk} for kind, value in references]
    )
    return pk


_PLAIN_EVENTS = insert(_EVENTS)
# A reference of an event inserted just before, found by its unique event id: many events'
# references in one executemany, without needing their pks back (SQLite returns the rows of
# a many-row INSERT ... RETURNING in no promised order, so SQLAlchemy would insert them one
# statement each).
_REFERENCE_BY_EVENT_ID = insert(_REFS).from_select(
    ["kind", "value", "event_pk"],
    select(bindparam("kind", type_=String), bindparam("value", type_=String), _EVENTS.c.pk).where(
        _EVENTS.c.event_id == bindparam("event_id", type_=String)
    ),
)


async def insert_events_with_references(
    session: AsyncSession,
    rows: Sequence[dict[str, Any]],
    references: Sequence[Sequence[Reference]],
) -> None:
    """Insert many events, in order, and one row per reference each names (`references[i]`
    are `rows[i]`'s): two statements whatever their number."""
    await session.execute(_PLAIN_EVENTS, list(rows))
    named = [
        {"kind": kind, "value": value, "event_id": row["event_id"]}
        for row, refs in zip(rows, references, strict=True)
        for kind, value in refs
    ]
    if named:
        await session.execute(_REFERENCE_BY_EVENT_ID, named)


def _after(key: Any, position: Position, *, postgres: bool, sort: SortOrder) -> ColumnElement[bool]:
    bound = tuple_(position.txid, position.pk) if postgres else position.pk
    condition: ColumnElement[bool] = key < bound if sort is SortOrder.NEWEST else key > bound
    return condition


def page_keys_query(
    dialect: str,
    where: EventFilter,
    *,
    sort: SortOrder,
    through: Position,
    after: Position | None = None,
    limit: int | None = None,
) -> Select[Any]:
    """The keys (txid, pk) of events matching `where`, at or below `through`, after
    `after`, in chain order, at most `limit`.

    The order is (txid, pk) on PostgreSQL and pk on SQLite: the order the sequencer chains
    in, so the same as the sequence number, and the trailing columns of every search index.
    On SQLite txid is always NULL; saying so (`txid IS NULL`) lets its planner treat the
    column as fixed and walk the (..., txid, pk) indexes in pk order.
    """
    postgres = dialect == "postgresql"
    conditions: list[ColumnElement[bool]] = []
    source: FromClause
    event_conditions = _event_conditions(where, postgres=postgres)
    if where.order_id is not None or where.account_id is not None:
        # An order id is the more selective reference: it drives; an account id is checked.
        kind, value = (
            (ReferenceKind.ORDER, where.order_id)
            if where.order_id is not None
            else (ReferenceKind.ACCOUNT, where.account_id)
        )
        driver = _REFS.alias("r")
        txid, pk = driver.c.txid, driver.c.event_pk
        source = driver
        if event_conditions:
            source = driver.join(_EVENTS, _EVENTS.c.pk == driver.c.event_pk)
        conditions += [driver.c.kind == kind.value, driver.c.value == value]
        if where.order_id is not None and where.account_id is not None:
            account = _REFS.alias("a")
            conditions.append(
                exists().where(
                    account.c.kind == ReferenceKind.ACCOUNT.value,
                    account.c.value == where.account_id,
                    account.c.txid == txid if postgres else account.c.txid.is_(None),
                    account.c.event_pk == pk,
                )
            )
    else:
        txid, pk = _EVENTS.c.txid, _EVENTS.c.pk
        source = _EVENTS
    if not postgres:
        conditions.append(txid.is_(None))
    conditions += event_conditions
    key: Any = tuple_(txid, pk) if postgres else pk
    conditions.append(key <= (tuple_(through.txid, through.pk) if postgres else through.pk))
    if after is not None:
        conditions.append(_after(key, after, postgres=postgres, sort=sort))
    order = (txid, pk) if postgres else (pk,)
    keys = (
        select(txid.label("txid"), pk.label("pk"))
        .select_from(source)
        .where(*conditions)
        .order_by(*(c.desc() if sort is SortOrder.NEWEST else c.asc() for c in order))
    )
    return keys.limit(limit) if limit is not None else keys


def search_query(
    dialect: str,
    where: EventFilter,
    *,
    sort: SortOrder,
    through: Position,
    after: Position | None = None,
    limit: int | None = None,
) -> Select[Any]:
    """The page's events with their bodies and sequence numbers (None: not in the chain).

    Every event at or below the sequencer's cursor (`through`) is chained, so the matching
    keys are chosen and limited first (page_keys_query), and only the page's own events are
    then joined to their bodies and chain rows: a plan that must sort (a time range, a rare
    type prefix) sorts keys, not joined rows. The chain row is an outer join: an event behind
    the cursor without one was inserted behind the sequencer's back (audit verify names it),
    and the caller leaves it out of the results.
    """
    page = page_keys_query(
        dialect, where, sort=sort, through=through, after=after, limit=limit
    ).subquery("k")
    order = (page.c.txid, page.c.pk) if dialect == "postgresql" else (page.c.pk,)
    return (
        select(
            _CHAIN.c.seq,
            _EVENTS.c.pk,
            _EVENTS.c.txid,
            _EVENTS.c.event_id,
            _EVENTS.c.event_type,
            _EVENTS.c.occurred_ns,
            _EVENTS.c.body,
        )
        .select_from(
            page.join(_EVENTS, _EVENTS.c.pk == page.c.pk).outerjoin(
                _CHAIN, _CHAIN.c.event_pk == page.c.pk
            )
        )
        .order_by(*(c.desc() if sort is SortOrder.NEWEST else c.asc() for c in order))
    )


def _event_conditions(where: EventFilter, *, postgres: bool) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if where.event_type is not None:
        conditions.append(_EVENTS.c.event_type == where.event_type)
    prefix = where.type_range()
    if prefix is not None:
        low, high = prefix
        if postgres:
            # Byte-order comparison operators of varchar_pattern_ops (the type index's class).
            conditions += [
                _EVENTS.c.event_type.op("~>=~", is_comparison=True)(low),
                _EVENTS.c.event_type.op("~<~", is_comparison=True)(high),
            ]
        else:
            conditions += [_EVENTS.c.event_type >= low, _EVENTS.c.event_type < high]
    if where.actor_id is not None:
        conditions.append(_EVENTS.c.actor_id == where.actor_id)
    if where.subject_id is not None:
        conditions.append(_EVENTS.c.subject_id == where.subject_id)
    if where.from_ns is not None:
        conditions.append(_EVENTS.c.occurred_ns >= where.from_ns)
    if where.to_ns is not None:
        conditions.append(_EVENTS.c.occurred_ns < where.to_ns)
    return conditions


async def search(
    conn: AsyncConnection,
    where: EventFilter,
    *,
    sort: SortOrder,
    limit: int,
    through: Position,
    after: Position | None = None,
) -> Sequence[Any]:
    query = search_query(
        conn.dialect.name, where, sort=sort, through=through, after=after, limit=limit
    )
    await _plan_with_values(conn)
    rows: Sequence[Any] = (await conn.execute(query)).all()
    return rows


async def _plan_with_values(conn: AsyncConnection) -> None:
    """PostgreSQL: plan this transaction's searches for their own values.

    Statements are prepared and cached per connection; after a few runs PostgreSQL may
    switch to one generic plan for every value. The same search is a 3-event lookup for
    one actor and a walk through millions for the system actor, so a generic plan can be
    off by three orders of magnitude (measured: 12 ms custom, 2.7 s generic).
    """
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))


async def count_upto(
    conn: AsyncConnection, where: EventFilter, *, through: Position, cap: int | None
) -> int:
    """How many chained events up to `through` match, counting no further than `cap`."""
    query = search_query(conn.dialect.name, where, sort=SortOrder.OLDEST, through=through)
    chained = query.where(_CHAIN.c.seq.is_not(None)).order_by(None)
    bounded = (chained.limit(cap) if cap is not None else chained).subquery()
    await _plan_with_values(conn)
    return int((await conn.execute(select(func.count()).select_from(bounded))).scalar_one())


async def head(conn: AsyncConnection) -> Position | None:
    """Where the chain ends: the sequencer's last position and cursor (None: empty).

    Every event at or below the cursor has been chained, in one transaction with the
    cursor, so any statement that reads the cursor sees all of their chain rows.
    """
    row = (
        await conn.execute(
            select(_STATE.c.last_seq, _STATE.c.cursor_txid, _STATE.c.cursor_pk).where(
                _STATE.c.id == 1
            )
        )
    ).one()
    if row.last_seq == 0:
        return None
    # The sequencer stores 0 for SQLite's NULL txid.
    txid = int(row.cursor_txid) if conn.dialect.name == "postgresql" else None
    return Position(seq=int(row.last_seq), txid=txid, pk=int(row.cursor_pk))
