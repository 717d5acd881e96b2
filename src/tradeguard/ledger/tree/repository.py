"""Every query of the Merkle tree and its checkpoints."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from tradeguard.db.base import Base
from tradeguard.ledger.models import AuditChainRow, AuditEventRow
from tradeguard.ledger.tree.layout import STRIDE, Span, StoredNode
from tradeguard.ledger.tree.models import CheckpointRow, TreeNodeRow, WitnessCursorRow

_NODES = Base.metadata.tables[TreeNodeRow.__tablename__]
_CHAIN = Base.metadata.tables[AuditChainRow.__tablename__]
_EVENTS = Base.metadata.tables[AuditEventRow.__tablename__]
_CHECKPOINTS = Base.metadata.tables[CheckpointRow.__tablename__]
_CURSORS = Base.metadata.tables[WitnessCursorRow.__tablename__]

# An arbitrary constant naming the checkpoint signer's PostgreSQL advisory lock.
CHECKPOINT_LOCK_KEY = 0x7467_636B_7074_0001


async def lock_checkpoints(conn: AsyncConnection) -> None:
    """One checkpoint signer at a time across processes (PostgreSQL); SQLite's write lock
    does it there."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHECKPOINT_LOCK_KEY})


# Proofs are on the API's read path, so the spans are read straight from the driver in one
# statement of fixed text (PostgreSQL: prepared once per connection, the spans as arrays):
# through the ORM, each distinct number of spans was a new statement to compile and prepare.
# Each span is a LATERAL index range scan with a LIMIT: PostgreSQL cannot estimate a range
# join against a parameter array and priced it at a ninth of the table, which at ten million
# entries put JIT compilation (13 ms) and parallel workers on a query that reads 30 rows. No
# span is longer than the limit (read_spans refuses one), so the LIMIT never cuts a span.
SPAN_LIMIT = 1024  # the LIMIT written twice below
_PG_SPANS_SQL = (
    "SELECT 0::smallint, c.seq - 1, c.leaf_hash "
    "FROM unnest($1::bigint[], $2::bigint[]) AS r(lo, hi) "
    "CROSS JOIN LATERAL (SELECT seq, leaf_hash FROM audit_chain "
    "WHERE seq > r.lo AND seq <= r.hi ORDER BY seq LIMIT 1024) AS c "
    "UNION ALL "
    "SELECT r.level, n.idx, n.hash "
    "FROM unnest($3::smallint[], $4::bigint[], $5::bigint[]) AS r(level, lo, hi) "
    "CROSS JOIN LATERAL (SELECT idx, hash FROM audit_tree_node "
    "WHERE level = r.level AND idx >= r.lo AND idx < r.hi "
    "ORDER BY idx LIMIT 1024) AS n"
)


async def read_spans(conn: AsyncConnection, spans: Sequence[Span]) -> dict[tuple[int, int], bytes]:
    """The stored nodes of the spans, keyed (level, index); level 0 comes from the chain
    (leaf i is seq i + 1). One statement: index range scans over both primary keys."""
    if not spans:
        return {}
    if any(s.end - s.first > SPAN_LIMIT for s in spans):
        raise ValueError(f"spans of more than {SPAN_LIMIT} nodes are read in pieces")
    leaves = [s for s in spans if s.level == 0]
    nodes = [s for s in spans if s.level > 0]
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    if conn.dialect.name == "postgresql":
        rows = await driver.fetch(
            _PG_SPANS_SQL,
            [s.first for s in leaves],
            [s.end for s in leaves],
            [s.level for s in nodes],
            [s.first for s in nodes],
            [s.end for s in nodes],
        )
    else:
        parts, params = [], []
        for s in leaves:
            parts.append("SELECT 0, seq - 1, leaf_hash FROM audit_chain WHERE seq > ? AND seq <= ?")
            params += [s.first, s.end]
        for s in nodes:
            parts.append(
                "SELECT level, idx, hash FROM audit_tree_node "
                "WHERE level = ? AND idx >= ? AND idx < ?"
            )
            params += [s.level, s.first, s.end]
        # One statement, its rows fetched at once (execute, fetch and close would be three
        # calls into the driver).
        rows = await driver.execute_fetchall(" UNION ALL ".join(parts), params)
    return {(int(level), int(index)): bytes(digest) for level, index, digest in rows}


async def insert_nodes(conn: AsyncConnection, nodes: Sequence[StoredNode]) -> None:
    await conn.execute(
        insert(_NODES), [{"level": n.level, "idx": n.index, "hash": n.hash} for n in nodes]
    )


async def stored_node_count(conn: AsyncConnection) -> int:
    return int((await conn.execute(select(func.count()).select_from(_NODES))).scalar_one())


async def chained_event(
    conn: AsyncConnection, *, event_id: str | None = None, seq: int | None = None
) -> Any | None:
    """A chained event's seq, id, leaf hash and body, by event id or by seq."""
    query = select(_CHAIN.c.seq, _EVENTS.c.event_id, _CHAIN.c.leaf_hash, _EVENTS.c.body).join(
        _EVENTS, _EVENTS.c.pk == _CHAIN.c.event_pk
    )
    if event_id is not None:
        query = query.where(_EVENTS.c.event_id == event_id)
    else:
        query = query.where(_CHAIN.c.seq == seq)
    return (await conn.execute(query)).first()


_CHECKPOINT_COLUMNS = (
    _CHECKPOINTS.c.tree_size,
    _CHECKPOINTS.c.root_hash,
    _CHECKPOINTS.c.origin,
    _CHECKPOINTS.c.key_name,
    _CHECKPOINTS.c.key_id,
    _CHECKPOINTS.c.note,
    _CHECKPOINTS.c.signed_ns,
)


async def latest_checkpoint(conn: AsyncConnection) -> Any | None:
    query = select(*_CHECKPOINT_COLUMNS).order_by(
        _CHECKPOINTS.c.tree_size.desc(), _CHECKPOINTS.c.id.desc()
    )
    return (await conn.execute(query.limit(1))).first()


async def checkpoint_at(conn: AsyncConnection, size: int) -> Any | None:
    """The latest checkpoint signed at exactly this size (re-signed after a key rotation,
    the newest signature)."""
    query = (
        select(*_CHECKPOINT_COLUMNS)
        .where(_CHECKPOINTS.c.tree_size == size)
        .order_by(_CHECKPOINTS.c.id.desc())
    )
    return (await conn.execute(query.limit(1))).first()


class CheckpointRecord(NamedTuple):
    tree_size: int
    root_hash: bytes
    origin: str
    key_name: str
    key_id: str
    note: str
    signed_ns: int


async def _driver_rows(
    conn: AsyncConnection, sql: str, params: Sequence[Any]
) -> Sequence[Sequence[Any]]:
    """Rows of a statement written with $1, $2 ... placeholders, straight from the driver
    (one round trip; on SQLite one driver call, with ? placeholders)."""
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    if conn.dialect.name == "postgresql":
        return list(await driver.fetch(sql, *params))
    return list(await driver.execute_fetchall(re.sub(r"\$\d+", "?", sql), list(params)))


async def tree_size(conn: AsyncConnection) -> int:
    """The tree's size: every chained event (the sequencer's last position)."""
    rows = await _driver_rows(conn, "SELECT last_seq FROM audit_sequencer_state WHERE id = $1", [1])
    return int(rows[0][0])


async def checkpoints_at(conn: AsyncConnection, first: int, second: int) -> dict[int, Any]:
    """The latest checkpoint signed at each of two sizes (a size with none is left out)."""
    rows = await _driver_rows(
        conn,
        "SELECT tree_size, root_hash, origin, key_name, key_id, note, signed_ns "
        "FROM audit_checkpoint WHERE tree_size = $1 OR tree_size = $2 ORDER BY id",
        [first, second],
    )
    return {int(row[0]): CheckpointRecord(*row) for row in rows}


async def checkpoints_after(conn: AsyncConnection, size: int, *, limit: int) -> Sequence[Any]:
    """Checkpoints of sizes above `size`, smallest first, the newest signature per size."""
    newest = (
        select(func.max(_CHECKPOINTS.c.id))
        .where(_CHECKPOINTS.c.tree_size > size)
        .group_by(_CHECKPOINTS.c.tree_size)
    )
    query = (
        select(*_CHECKPOINT_COLUMNS)
        .where(_CHECKPOINTS.c.id.in_(newest))
        .order_by(_CHECKPOINTS.c.tree_size)
        .limit(limit)
    )
    return (await conn.execute(query)).all()


async def insert_checkpoint(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(insert(_CHECKPOINTS).values(**row))


async def witness_cursor(conn: AsyncConnection, witness: str) -> int | None:
    query = select(_CURSORS.c.published_size).where(_CURSORS.c.witness == witness)
    value = (await conn.execute(query)).scalar_one_or_none()
    return None if value is None else int(value)


async def advance_witness_cursor(
    conn: AsyncConnection, witness: str, *, size: int, now_ns: int
) -> None:
    """Record `size` as published; the cursor only moves forward (two publishers may race)."""
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    await conn.execute(
        dialect_insert(_CURSORS)
        .values(witness=witness, published_size=size, published_ns=now_ns)
        .on_conflict_do_nothing()
    )
    await conn.execute(
        update(_CURSORS)
        .where(_CURSORS.c.witness == witness, _CURSORS.c.published_size < size)
        .values(published_size=size, published_ns=now_ns)
    )


async def leaf_hashes(conn: AsyncConnection, first_seq: int, last_seq: int) -> list[bytes]:
    """The leaf hashes of chain positions first_seq..last_seq, in order (for a full walk)."""
    query = (
        select(_CHAIN.c.seq, _CHAIN.c.leaf_hash)
        .where(_CHAIN.c.seq >= first_seq, _CHAIN.c.seq <= last_seq)
        .order_by(_CHAIN.c.seq)
    )
    rows = (await conn.execute(query)).all()
    for offset, row in enumerate(rows):
        if int(row.seq) != first_seq + offset:
            raise LookupError(first_seq + offset)
    if len(rows) != last_seq - first_seq + 1:
        raise LookupError(first_seq + len(rows))
    return [bytes(row.leaf_hash) for row in rows]


async def stored_nodes(conn: AsyncConnection, level: int, first: int, end: int) -> dict[int, bytes]:
    """The stored subtree hashes of one level with index in [first, end), keyed by index."""
    query = select(_NODES.c.idx, _NODES.c.hash).where(
        _NODES.c.level == level, _NODES.c.idx >= first, _NODES.c.idx < end
    )
    return {int(row.idx): bytes(row.hash) for row in (await conn.execute(query)).all()}


async def largest_checkpoint_size(conn: AsyncConnection) -> int | None:
    """The largest tree size any stored checkpoint names (None: no checkpoint)."""
    size = (await conn.execute(select(func.max(_CHECKPOINTS.c.tree_size)))).scalar_one()
    return None if size is None else int(size)


async def chain_length(conn: AsyncConnection) -> int:
    """The highest chain position now (0: none)."""
    top = (await conn.execute(select(func.max(_CHAIN.c.seq)))).scalar_one()
    return 0 if top is None else int(top)


async def level_tops(conn: AsyncConnection) -> dict[int, int]:
    """The highest stored subtree index of each stored level that has any: one index probe
    per level (the primary key is (level, idx)), every level asked (a level emptied by hand
    says nothing about the ones above it)."""
    tops: dict[int, int] = {}
    for level in range(STRIDE, 64, STRIDE):
        query = select(func.max(_NODES.c.idx)).where(_NODES.c.level == level)
        top = (await conn.execute(query)).scalar_one()
        if top is not None:
            tops[level] = int(top)
    return tops


async def all_checkpoints(conn: AsyncConnection, up_to: int) -> Sequence[Any]:
    """Every signature of every checkpoint of size <= up_to, smallest size first."""
    query = (
        select(_CHECKPOINTS.c.id, *_CHECKPOINT_COLUMNS)
        .where(_CHECKPOINTS.c.tree_size <= up_to)
        .order_by(_CHECKPOINTS.c.tree_size, _CHECKPOINTS.c.id)
    )
    return (await conn.execute(query)).all()
