"""Every query of the sealed archive."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tradeguard.db.base import Base
from tradeguard.ledger.archive.models import ArchivePurgeRow, ArchiveSegmentRow
from tradeguard.ledger.models import AuditChainRow, AuditEventRow
from tradeguard.ledger.search.models import audit_event_ref

_SEGMENTS = Base.metadata.tables[ArchiveSegmentRow.__tablename__]
_PURGES = Base.metadata.tables[ArchivePurgeRow.__tablename__]
_CHAIN = Base.metadata.tables[AuditChainRow.__tablename__]
_EVENTS = Base.metadata.tables[AuditEventRow.__tablename__]


@dataclass(frozen=True, slots=True)
class PurgeHorizon:
    """Events chained at or below `through_seq` were purged; the chain hash stored there is
    `boundary_chain_hash` (0 and None when nothing was ever purged)."""

    through_seq: int
    boundary_chain_hash: bytes | None


async def purge_horizon(conn: AsyncConnection) -> PurgeHorizon:
    query = (
        select(_PURGES.c.through_seq, _PURGES.c.boundary_chain_hash)
        .order_by(_PURGES.c.through_seq.desc())
        .limit(1)
    )
    row = (await conn.execute(query)).first()
    if row is None:
        return PurgeHorizon(0, None)
    return PurgeHorizon(int(row.through_seq), bytes(row.boundary_chain_hash))


async def purges(conn: AsyncConnection) -> Sequence[Any]:
    return (await conn.execute(select(_PURGES).order_by(_PURGES.c.through_seq))).all()


async def segments(conn: AsyncConnection) -> Sequence[Any]:
    """Every sealed segment, by range."""
    return (await conn.execute(select(_SEGMENTS).order_by(_SEGMENTS.c.first_seq))).all()


async def last_segment(conn: AsyncConnection) -> Any | None:
    query = select(_SEGMENTS).order_by(_SEGMENTS.c.first_seq.desc()).limit(1)
    return (await conn.execute(query)).first()


async def segment_holding(conn: AsyncConnection, seq: int) -> Any | None:
    query = (
        select(_SEGMENTS)
        .where(_SEGMENTS.c.first_seq <= seq, _SEGMENTS.c.last_seq >= seq)
        .order_by(_SEGMENTS.c.first_seq.desc())
        .limit(1)
    )
    return (await conn.execute(query)).first()


async def segments_after(conn: AsyncConnection, after_seq: int) -> Sequence[Any]:
    query = (
        select(_SEGMENTS).where(_SEGMENTS.c.first_seq > after_seq).order_by(_SEGMENTS.c.first_seq)
    )
    return (await conn.execute(query)).all()


async def insert_segment(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(insert(_SEGMENTS).values(**row))


async def chained_events(conn: AsyncConnection, first_seq: int, last_seq: int) -> Sequence[Any]:
    """Chain rows of seq first..last with their events (seq, event_id, occurred_ns, body,
    leaf_hash, chain_hash), in order; an event that is gone has no row."""
    query = (
        select(
            _CHAIN.c.seq,
            _EVENTS.c.event_id,
            _EVENTS.c.occurred_ns,
            _EVENTS.c.body,
            _CHAIN.c.leaf_hash,
            _CHAIN.c.chain_hash,
        )
        .join(_EVENTS, _EVENTS.c.pk == _CHAIN.c.event_pk)
        .where(_CHAIN.c.seq >= first_seq, _CHAIN.c.seq <= last_seq)
        .order_by(_CHAIN.c.seq)
    )
    return (await conn.execute(query)).all()


async def chain_rows(conn: AsyncConnection, first_seq: int, last_seq: int) -> Sequence[Any]:
    """Chain rows (seq, leaf_hash, chain_hash) of seq first..last, in order (kept after a
    purge)."""
    query = (
        select(_CHAIN.c.seq, _CHAIN.c.leaf_hash, _CHAIN.c.chain_hash)
        .where(_CHAIN.c.seq >= first_seq, _CHAIN.c.seq <= last_seq)
        .order_by(_CHAIN.c.seq)
    )
    return (await conn.execute(query)).all()


async def chain_hash_at(conn: AsyncConnection, seq: int) -> bytes | None:
    value = (
        await conn.execute(select(_CHAIN.c.chain_hash).where(_CHAIN.c.seq == seq))
    ).scalar_one_or_none()
    return None if value is None else bytes(value)


async def oldest_unsealed(conn: AsyncConnection, after_seq: int, before_ns: int) -> Any | None:
    """The first chained event after `after_seq` recorded before `before_ns`, if any."""
    query = (
        select(_CHAIN.c.seq, _EVENTS.c.occurred_ns)
        .join(_EVENTS, _EVENTS.c.pk == _CHAIN.c.event_pk)
        .where(_CHAIN.c.seq > after_seq, _EVENTS.c.occurred_ns < before_ns)
        .order_by(_CHAIN.c.seq)
        .limit(1)
    )
    return (await conn.execute(query)).first()


async def insert_purge(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(insert(_PURGES).values(**row))


async def delete_events(conn: AsyncConnection, first_seq: int, through_seq: int) -> int:
    """Delete the events chained at first..through (and their search references); their
    chain rows stay. The triggers allow it only below a recorded purge (insert it first)."""
    chained = select(_CHAIN.c.event_pk).where(
        _CHAIN.c.seq >= first_seq, _CHAIN.c.seq <= through_seq
    )
    refs = audit_event_ref
    await conn.execute(delete(refs).where(refs.c.event_pk.in_(chained)))
    result = await conn.execute(delete(_EVENTS).where(_EVENTS.c.pk.in_(chained)))
    return int(result.rowcount or 0)


async def count_events(conn: AsyncConnection, first_seq: int, through_seq: int) -> int:
    query = (
        select(func.count())
        .select_from(_CHAIN.join(_EVENTS, _EVENTS.c.pk == _CHAIN.c.event_pk))
        .where(_CHAIN.c.seq >= first_seq, _CHAIN.c.seq <= through_seq)
    )
    return int((await conn.execute(query)).scalar_one())


async def purge_events(conn: AsyncConnection, event_type: str) -> Sequence[Any]:
    """The chained events of `event_type` still stored (seq, body), in chain order."""
    query = (
        select(_CHAIN.c.seq, _EVENTS.c.body)
        .join(_EVENTS, _EVENTS.c.pk == _CHAIN.c.event_pk)
        .where(_EVENTS.c.event_type == event_type)
        .order_by(_CHAIN.c.seq)
    )
    return (await conn.execute(query)).all()


async def body_at(conn: AsyncConnection, seq: int) -> bytes | None:
    """The body of the event chained at `seq`, if it is still stored."""
    query = (
        select(_EVENTS.c.body)
        .join(_CHAIN, _EVENTS.c.pk == _CHAIN.c.event_pk)
        .where(_CHAIN.c.seq == seq)
    )
    value = (await conn.execute(query)).scalar_one_or_none()
    return None if value is None else bytes(value)


async def earliest_after(conn: AsyncConnection, seq: int) -> Any | None:
    """The chained event after `seq` recorded earliest (seq, occurred_ns), if any."""
    query = (
        select(_CHAIN.c.seq, _EVENTS.c.occurred_ns)
        .join(_EVENTS, _EVENTS.c.pk == _CHAIN.c.event_pk)
        .where(_CHAIN.c.seq > seq)
        .order_by(_EVENTS.c.occurred_ns, _CHAIN.c.seq)
        .limit(1)
    )
    return (await conn.execute(query)).first()


async def newest_sealed_ns(conn: AsyncConnection, first_seq: int, through_seq: int) -> int | None:
    """When the newest event of the sealed segments within first..through was recorded."""
    query = select(func.max(_SEGMENTS.c.max_occurred_ns)).where(
        _SEGMENTS.c.first_seq >= first_seq, _SEGMENTS.c.last_seq <= through_seq
    )
    value = (await conn.execute(query)).scalar_one_or_none()
    return None if value is None else int(value)
