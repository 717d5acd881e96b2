"""Every query of the ledger."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, insert, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from tradeguard.db.base import Base
from tradeguard.ledger.domain import SequencerState
from tradeguard.ledger.models import AuditChainRow, AuditEventRow, SequencerStateRow
from tradeguard.ledger.verification import reads

_EVENTS = Base.metadata.tables[AuditEventRow.__tablename__]
_CHAIN = Base.metadata.tables[AuditChainRow.__tablename__]
_STATE = Base.metadata.tables[SequencerStateRow.__tablename__]

# An arbitrary constant naming the sequencer's PostgreSQL advisory lock.
SEQUENCER_LOCK_KEY = 0x7467_6C65_6467_6572 & 0x7FFF_FFFF_FFFF_FFFF


# Built once, the values bound at execution: `insert().values(**row)` built a new statement
# for every event (each value coerced into a bound parameter, the cache key worked out again).
_INSERT_EVENT = insert(_EVENTS).returning(_EVENTS.c.pk)


_INSERT_EVENTS = insert(_EVENTS)


async def insert_event(session: AsyncSession, row: dict[str, Any]) -> int:
    result = await session.execute(_INSERT_EVENT, row)
    return int(result.scalar_one())


async def insert_events(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Many events in one statement (executemany), in their order."""
    await session.execute(_INSERT_EVENTS, list(rows))


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
    A running id at or above xmax (a writer newer than the last one to finish, or one that
    took its id after the snapshot) does not lower it.
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
        horizon = min(horizon, widen_xid(int(xid32), xmax))
    return horizon


def widen_xid(xid32: int, near: int) -> int:
    """The 64-bit transaction id of `xid32` (a 32-bit id, as pg_stat_activity shows it),
    given a 64-bit id `near` it. PostgreSQL keeps every running transaction within 2^31 of
    the next id, so the nearest id with those low 32 bits is the one: below `near` (an older
    writer, possibly in the previous epoch) or above it (a newer one, possibly in the next).
    """
    delta = (xid32 - near) & 0xFFFF_FFFF
    if delta >= 1 << 31:
        delta -= 1 << 32
    return near + delta


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


async def chain_range(
    conn: AsyncConnection, first_seq: int, last_seq: int
) -> tuple[Sequence[Any], dict[int, bytes] | None]:
    """Chain rows for seq in [first_seq, last_seq], in order, with their event bodies.

    PostgreSQL: rows (seq, leaf_hash, chain_hash, event_pk) and the bodies by event pk;
    SQLite: rows (seq, leaf_hash, chain_hash, body) and None (see ledger/verification/reads.py).
    Verification reads every row of the ledger, so this goes to the driver directly.
    """
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    if conn.dialect.name == "postgresql":
        return await reads.postgres_run(driver, first_seq, last_seq)
    cursor = await driver.execute(reads.JOINED_SQL_SQLITE, (first_seq, last_seq))
    try:
        return list(await cursor.fetchall()), None
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


async def newest_txid(conn: AsyncConnection) -> int | None:
    """PostgreSQL: the newest transaction id among the events this connection sees (one
    index probe), or None when there are none."""
    value = (await conn.execute(select(func.max(_EVENTS.c.txid)))).scalar()
    return None if value is None else int(value)


async def unchained_through(conn: AsyncConnection, state: SequencerState, txid: int) -> bool:
    """PostgreSQL: whether an event of a transaction up to `txid` (and visible here) is still
    past the sequencer's cursor, awaiting its chain position."""
    query = (
        select(_EVENTS.c.pk)
        .where(
            tuple_(_EVENTS.c.txid, _EVENTS.c.pk) > tuple_(state.cursor_txid, state.cursor_pk),
            _EVENTS.c.txid <= txid,
        )
        .limit(1)
    )
    return (await conn.execute(query)).first() is not None


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


async def chained_after(conn: AsyncConnection, seq: int) -> bool:
    """Whether any event is chained after `seq` (one index probe)."""
    query = select(_CHAIN.c.seq).where(_CHAIN.c.seq > seq).limit(1)
    return (await conn.execute(query)).first() is not None


async def events_by_types(
    conn: AsyncConnection,
    event_types: Sequence[str],
    *,
    first_seq: int,
    through_seq: int,
    limit: int,
) -> Sequence[Any]:
    """Chained events of the given types with seq in [first_seq, through_seq], in order."""
    query = (
        select(_CHAIN.c.seq, _EVENTS.c.body)
        .join(_EVENTS, _EVENTS.c.pk == _CHAIN.c.event_pk)
        .where(
            _CHAIN.c.seq >= first_seq,
            _CHAIN.c.seq <= through_seq,
            _EVENTS.c.event_type.in_(list(event_types)),
        )
        .order_by(_CHAIN.c.seq)
        .limit(limit)
    )
    return (await conn.execute(query)).all()


async def actors_by_seq(conn: AsyncConnection, first_seq: int, limit: int) -> Sequence[Any]:
    """(seq, actor id) of chained events from `first_seq` on, in order: what a detector that
    watches some actors reads before it reads (and parses) theirs."""
    query = (
        select(_CHAIN.c.seq, _EVENTS.c.actor_id)
        .join(_EVENTS, _EVENTS.c.pk == _CHAIN.c.event_pk)
        .where(_CHAIN.c.seq >= first_seq)
        .order_by(_CHAIN.c.seq)
        .limit(limit)
    )
    return (await conn.execute(query)).all()


async def events_of_actors_between(
    conn: AsyncConnection, actor_ids: Sequence[str], first_seq: int, last_seq: int
) -> Sequence[Any]:
    """Chained events of the given actors with seq in [first_seq, last_seq], in order."""
    query = (
        select(_CHAIN.c.seq, _EVENTS.c.body)
        .join(_EVENTS, _EVENTS.c.pk == _CHAIN.c.event_pk)
        .where(
            _CHAIN.c.seq >= first_seq,
            _CHAIN.c.seq <= last_seq,
            _EVENTS.c.actor_id.in_(list(actor_ids)),
        )
        .order_by(_CHAIN.c.seq)
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


async def latest_of_types_about(
    session: AsyncSession, subject_id: str, event_types: Sequence[str]
) -> int | None:
    """When the newest event of these types about this subject occurred (committed events,
    chained or not yet)."""
    return await session.scalar(
        select(func.max(AuditEventRow.occurred_ns)).where(
            AuditEventRow.event_type.in_(list(event_types)),
            AuditEventRow.subject_id == subject_id,
        )
    )


async def latest_event_id_of_types_about(
    session: AsyncSession, subject_id: str, event_types: Sequence[str]
) -> str | None:
    """The id of the newest event (by insertion) of these types about this subject: committed
    events, chained or not yet, and those of the caller's own transaction."""
    query = (
        select(AuditEventRow.event_id)
        .where(
            AuditEventRow.event_type.in_(list(event_types)),
            AuditEventRow.subject_id == subject_id,
        )
        .order_by(AuditEventRow.pk.desc())
        .limit(1)
    )
    return await session.scalar(query)


async def bodies_of_types_about(
    session: AsyncSession, subject_id: str, event_types: Sequence[str]
) -> Sequence[bytes]:
    """The bodies of every event of these types about this subject, in insertion order:
    committed events, chained or not yet, and those of the caller's own transaction (the
    subject index, then the type)."""
    query = (
        select(AuditEventRow.body)
        .where(
            AuditEventRow.subject_id == subject_id,
            AuditEventRow.event_type.in_(list(event_types)),
        )
        .order_by(AuditEventRow.pk)
    )
    return list((await session.scalars(query)).all())
