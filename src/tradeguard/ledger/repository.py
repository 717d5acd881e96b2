"""Every query of the ledger."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, insert, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from tradeguard.db.base import Base
from tradeguard.ledger.domain import SequencerState
from tradeguard.ledger.models import AuditChainRow, AuditEventRow, SequencerStateRow

_EVENTS = Base.metadata.tables[AuditEventRow.__tablename__]
_CHAIN = Base.metadata.tables[AuditChainRow.__tablename__]
_STATE = Base.metadata.tables[SequencerStateRow.__tablename__]

# An arbitrary constant naming the sequencer's PostgreSQL advisory lock.
SEQUENCER_LOCK_KEY = 0x7467_6C65_6467_6572 & 0x7FFF_FFFF_FFFF_FFFF


async def insert_event(session: AsyncSession, row: dict[str, Any]) -> int:
    result = await session.execute(insert(_EVENTS).values(**row).returning(_EVENTS.c.pk))
    return int(result.scalar_one())


async def lock_sequencer(conn: AsyncConnection) -> None:
    """Serialize sequencers across processes (PostgreSQL); SQLite's write lock does it there."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SEQUENCER_LOCK_KEY})


async def load_state(conn: AsyncConnection) -> SequencerState:
    row = (await conn.execute(select(_STATE).where(_STATE.c.id == 1))).one()
    return SequencerState(
        last_seq=row.last_seq,
        last_chain_hash=bytes(row.last_chain_hash),
        cursor_txid=row.cursor_txid,
        cursor_pk=row.cursor_pk,
    )


async def transaction_horizon(conn: AsyncConnection) -> int:
    """PostgreSQL: a transaction id below which every writer of THIS database has finished.

    pg_snapshot_xmin would do, but it spans the whole cluster: one long write in another
    database would stall audit sequencing here. So: take the snapshot's xmax (every lower
    id is finished or still running), then lower it to the oldest id still running in this
    database (backends and prepared transactions). Read in that order, a transaction missing
    from the running list has finished before the events are read, so its rows are visible.
    """
    xmax = int(
        (
            await conn.execute(text("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint"))
        ).scalar_one()
    )
    running = (
        await conn.execute(
            text(
                "SELECT backend_xid::text::bigint FROM pg_stat_activity "
                "WHERE datname = current_database() AND backend_xid IS NOT NULL "
                "UNION ALL SELECT transaction::text::bigint FROM pg_prepared_xacts "
                "WHERE database = current_database()"
            )
        )
    ).scalars()
    horizon = xmax
    for xid32 in running:
        # pg_stat_activity shows 32-bit ids; widen them with the epoch of xmax.
        full = (xmax & ~0xFFFF_FFFF) | int(xid32)
        if full > xmax:
            full -= 1 << 32
        horizon = min(horizon, full)
    return horizon


async def unsequenced_events(
    conn: AsyncConnection, state: SequencerState, *, horizon: int | None, limit: int
) -> Sequence[Any]:
    """Committed events after the cursor, in the order they are to be chained."""
    if horizon is None:
        # SQLite: the sequencer holds the only write lock, so every lower pk has committed.
        query = (
            select(_EVENTS.c.pk, _EVENTS.c.body, _EVENTS.c.txid)
            .where(_EVENTS.c.pk > state.cursor_pk)
            .order_by(_EVENTS.c.pk)
        )
    else:
        query = (
            select(_EVENTS.c.pk, _EVENTS.c.body, _EVENTS.c.txid)
            .where(
                tuple_(_EVENTS.c.txid, _EVENTS.c.pk) > tuple_(state.cursor_txid, state.cursor_pk),
                _EVENTS.c.txid < horizon,
            )
            .order_by(_EVENTS.c.txid, _EVENTS.c.pk)
        )
    return (await conn.execute(query.limit(limit))).all()


async def insert_chain_rows(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    await conn.execute(insert(_CHAIN), rows)


async def save_state(conn: AsyncConnection, state: SequencerState) -> None:
    await conn.execute(
        update(_STATE)
        .where(_STATE.c.id == 1)
        .values(
            last_seq=state.last_seq,
            last_chain_hash=state.last_chain_hash,
            cursor_txid=state.cursor_txid,
            cursor_pk=state.cursor_pk,
        )
    )


# LATERAL makes PostgreSQL fetch each body by primary key: a plain join lets the planner pick
# a hash join over a full scan of audit_event for every chunk, which is quadratic overall.
_CHAIN_RANGE_SQL = (
    "SELECT c.seq, c.leaf_hash, c.chain_hash, e.body FROM audit_chain c "
    "{join} (SELECT body FROM audit_event WHERE pk = c.event_pk) e "
    "WHERE c.seq >= {first} AND c.seq <= {last} ORDER BY c.seq"
)


async def chain_range(conn: AsyncConnection, first_seq: int, last_seq: int) -> Sequence[Any]:
    """Chain rows with their event bodies for seq in [first_seq, last_seq], in order.

    Verification reads every row of the ledger, so this one query goes to the driver
    directly (still parameterized): the ORM's per-row processing would triple its cost.
    """
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    if conn.dialect.name == "postgresql":
        sql = _CHAIN_RANGE_SQL.format(join="CROSS JOIN LATERAL", first="$1", last="$2")
        return list(await driver.fetch(sql, first_seq, last_seq))
    # SQLite has no LATERAL; its planner already joins by primary-key lookup.
    sql = _CHAIN_RANGE_SQL.format(join="JOIN", first="?", last="?").replace(
        "(SELECT body FROM audit_event WHERE pk = c.event_pk) e",
        "audit_event e ON e.pk = c.event_pk",
    )
    cursor = await driver.execute(sql, (first_seq, last_seq))
    try:
        return list(await cursor.fetchall())
    finally:
        await cursor.close()


def _at_or_below_cursor(conn: AsyncConnection, state: SequencerState) -> Any:
    """Events the sequencer has passed: (txid, pk) <= cursor on PostgreSQL, pk on SQLite."""
    if conn.dialect.name == "postgresql":
        return tuple_(_EVENTS.c.txid, _EVENTS.c.pk) <= tuple_(state.cursor_txid, state.cursor_pk)
    return _EVENTS.c.pk <= state.cursor_pk


async def first_unchained_behind_cursor(conn: AsyncConnection, state: SequencerState) -> Any | None:
    """The first event at or below the sequencer's cursor with no chain row, if any.

    The sequencer chains every event in cursor order and commits the chain rows with the
    cursor, so such an event was inserted behind its back (or the chain row was removed).
    """
    chained = select(_CHAIN.c.event_pk).where(_CHAIN.c.event_pk == _EVENTS.c.pk).exists()
    order = (_EVENTS.c.txid, _EVENTS.c.pk) if conn.dialect.name == "postgresql" else (_EVENTS.c.pk,)
    query = (
        select(_EVENTS.c.pk, _EVENTS.c.event_id)
        .where(_at_or_below_cursor(conn, state), ~chained)
        .order_by(*order)
        .limit(1)
    )
    return (await conn.execute(query)).first()


async def count_through_cursor(conn: AsyncConnection, state: SequencerState) -> int:
    """Events at or below the sequencer's cursor (an index range count)."""
    query = select(func.count()).select_from(_EVENTS).where(_at_or_below_cursor(conn, state))
    return int((await conn.execute(query)).scalar_one())


async def count_after_cursor(conn: AsyncConnection, state: SequencerState) -> int:
    """Events past the sequencer's cursor: committed or not yet, awaiting their chain position."""
    query = select(func.count()).select_from(_EVENTS).where(~_at_or_below_cursor(conn, state))
    return int((await conn.execute(query)).scalar_one())


async def event_count(conn: AsyncConnection) -> int:
    return int((await conn.execute(select(func.count()).select_from(_EVENTS))).scalar_one())


async def events_by_seq(conn: AsyncConnection, first_seq: int, limit: int) -> Sequence[Any]:
    query = (
        select(_CHAIN.c.seq, _EVENTS.c.event_id, _EVENTS.c.event_type, _EVENTS.c.body)
        .join(_EVENTS, _EVENTS.c.pk == _CHAIN.c.event_pk)
        .where(_CHAIN.c.seq >= first_seq)
        .order_by(_CHAIN.c.seq)
        .limit(limit)
    )
    return (await conn.execute(query)).all()


async def events_by_actors(
    conn: AsyncConnection, actor_ids: Sequence[str], *, since_ns: int, through_seq: int
) -> Sequence[Any]:
    """Chained events of the given actors at or after `since_ns`, up to `through_seq`, in
    sequence order (a detector's look-back window behind its checkpoint)."""
    query = (
        select(_CHAIN.c.seq, _EVENTS.c.body)
        .join(_EVENTS, _EVENTS.c.pk == _CHAIN.c.event_pk)
        .where(
            _EVENTS.c.actor_id.in_(list(actor_ids)),
            _EVENTS.c.occurred_ns >= since_ns,
            _CHAIN.c.seq <= through_seq,
        )
        .order_by(_CHAIN.c.seq)
    )
    return (await conn.execute(query)).all()
