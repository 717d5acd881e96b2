"""Every query of the keyring: key versions, usage counts, rewrap batches and progress."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Row, bindparam, column, func, insert, select, table, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql import ColumnElement

from tradeguard.crypto.catalogue import IndexLocation, Location
from tradeguard.crypto.envelope import HEADER_BYTES
from tradeguard.crypto.index_format import INDEX_HEADER_BYTES
from tradeguard.crypto.models import CryptoKeyVersionRow, CryptoRewrapProgressRow

Db = AsyncSession | AsyncConnection


async def key_versions(db: Db) -> Sequence[Row[Any]]:
    rows = await db.execute(
        select(CryptoKeyVersionRow.__table__).order_by(
            CryptoKeyVersionRow.data_class, CryptoKeyVersionRow.kind, CryptoKeyVersionRow.version
        )
    )
    return rows.all()


async def key_version(db: Db, data_class: str, kind: str, version: int) -> Row[Any] | None:
    rows = await db.execute(
        select(CryptoKeyVersionRow.__table__).where(
            CryptoKeyVersionRow.data_class == data_class,
            CryptoKeyVersionRow.kind == kind,
            CryptoKeyVersionRow.version == version,
        )
    )
    return rows.first()


async def insert_key_version(session: AsyncSession, values: Mapping[str, Any]) -> None:
    await session.execute(insert(CryptoKeyVersionRow).values(**values))


async def latest_version(session: AsyncSession, data_class: str, kind: str) -> int | None:
    value = await session.scalar(
        select(func.max(CryptoKeyVersionRow.version)).where(
            CryptoKeyVersionRow.data_class == data_class, CryptoKeyVersionRow.kind == kind
        )
    )
    return None if value is None else int(value)


DATA_KINDS = ("data", "legacy")
INDEX_KINDS = ("index",)


async def retire_version(
    session: AsyncSession,
    data_class: str,
    version: int,
    now_ns: int,
    *,
    kinds: tuple[str, ...] = DATA_KINDS,
) -> bool:
    result = await session.execute(
        update(CryptoKeyVersionRow)
        .where(
            CryptoKeyVersionRow.data_class == data_class,
            CryptoKeyVersionRow.kind.in_(kinds),
            CryptoKeyVersionRow.version == version,
            CryptoKeyVersionRow.state == "active",
        )
        .values(state="retired", retired_ns=now_ns)
    )
    return bool(getattr(result, "rowcount", 0))


async def record_usage(
    session: AsyncSession,
    data_class: str,
    counts: Mapping[int, int],
    now_ns: int,
    *,
    kinds: tuple[str, ...] = DATA_KINDS,
) -> None:
    rows = await session.execute(
        select(CryptoKeyVersionRow.kind, CryptoKeyVersionRow.version).where(
            CryptoKeyVersionRow.data_class == data_class,
            CryptoKeyVersionRow.kind.in_(kinds),
        )
    )
    for kind, version in rows.all():
        await session.execute(
            update(CryptoKeyVersionRow)
            .where(
                CryptoKeyVersionRow.data_class == data_class,
                CryptoKeyVersionRow.kind == kind,
                CryptoKeyVersionRow.version == version,
            )
            .values(usage_count=counts.get(version, 0), usage_counted_ns=now_ns)
        )


def _location_table(location: Location | IndexLocation) -> Any:
    columns = set(location.columns_read)
    return table(location.table, *(column(name) for name in sorted(columns)))


async def header_counts(db: Db, location: Location) -> dict[bytes, int]:
    """How many stored values begin with each header (the first 7 bytes): grouped by the
    database, so counting a million rows moves a handful of rows, not a million."""
    t = _location_table(location)
    value = t.c[location.column]
    prefix = func.substr(value, 1, HEADER_BYTES).label("prefix")
    rows = await db.execute(select(prefix, func.count()).where(value.is_not(None)).group_by(prefix))
    return {bytes(p): int(n) for p, n in rows.all()}


async def index_prefix_counts(db: Db, location: IndexLocation) -> dict[tuple[bytes, int], int]:
    """How many stored index values there are per (first 7 bytes, length): the version is
    in the first and an untagged value is told by the second (crypto/index_format.py)."""
    t = _location_table(location)
    value = t.c[location.column]
    prefix = func.substr(value, 1, INDEX_HEADER_BYTES).label("prefix")
    size = func.length(value).label("size")
    rows = await db.execute(
        select(prefix, size, func.count()).where(value.is_not(None)).group_by(prefix, size)
    )
    return {(bytes(p), int(n)): int(c) for p, n, c in rows.all()}


async def rewrap_batch(
    session: AsyncSession, location: Location | IndexLocation, after: Any, limit: int
) -> Sequence[Row[Any]]:
    """The next `limit` rows with a value, in primary-key order after `after`."""
    t = _location_table(location)
    key = t.c[location.key_column]
    condition: ColumnElement[bool] = t.c[location.column].is_not(None)
    if after is not None:
        condition = condition & (key > after)
    rows = await session.execute(select(*t.c).where(condition).order_by(key).limit(limit))
    return rows.all()


async def swap_values(
    session: AsyncSession,
    location: Location | IndexLocation,
    swaps: Sequence[tuple[Any, bytes, bytes]],
) -> int:
    """Replace stored values (key, old, new), each only if it is still `old` (a concurrent
    write wins); one statement executed for the whole batch. Returns how many changed
    where the driver counts them, else how many were asked."""
    if not swaps:
        return 0
    t = _location_table(location)
    statement = (
        update(t)
        .where(
            t.c[location.key_column] == bindparam("k_key"),
            t.c[location.column] == bindparam("k_old"),
        )
        .values({location.column: bindparam("k_new")})
    )
    conn = await session.connection()
    result = await conn.execute(
        statement, [{"k_key": key, "k_old": old, "k_new": new} for key, old, new in swaps]
    )
    count = getattr(result, "rowcount", -1)
    return count if isinstance(count, int) and count >= 0 else len(swaps)


async def progress(
    session: AsyncSession, data_class: str, location: str
) -> CryptoRewrapProgressRow | None:
    return await session.get(CryptoRewrapProgressRow, (data_class, location))


async def all_progress(db: Db) -> Sequence[Row[Any]]:
    rows = await db.execute(select(CryptoRewrapProgressRow.__table__))
    return rows.all()


async def start_progress(session: AsyncSession, values: Mapping[str, Any]) -> None:
    existing = await progress(session, values["data_class"], values["location"])
    if existing is None:
        await session.execute(insert(CryptoRewrapProgressRow).values(**values))
        return
    await session.execute(
        update(CryptoRewrapProgressRow)
        .where(
            CryptoRewrapProgressRow.data_class == values["data_class"],
            CryptoRewrapProgressRow.location == values["location"],
        )
        .values(**values)
    )
    await session.refresh(existing)


async def advance_progress(
    session: AsyncSession,
    *,
    data_class: str,
    location: str,
    cursor: str | None,
    rewrapped: int,
    now_ns: int,
    finished: bool,
) -> None:
    await session.execute(
        update(CryptoRewrapProgressRow)
        .where(
            CryptoRewrapProgressRow.data_class == data_class,
            CryptoRewrapProgressRow.location == location,
        )
        .values(
            cursor=cursor,
            rows_rewrapped=CryptoRewrapProgressRow.rows_rewrapped + rewrapped,
            updated_ns=now_ns,
            finished_ns=now_ns if finished else None,
        )
    )


async def rewrap_key_row(
    session: AsyncSession,
    row: Row[Any],
    *,
    wrapped_key: bytes,
    kek_id: str,
) -> bool:
    """Store a key re-wrapped under another KEK, only if the row still holds what was read
    (another run of the rotation that got there first wins)."""
    result = await session.execute(
        update(CryptoKeyVersionRow)
        .where(
            CryptoKeyVersionRow.data_class == row.data_class,
            CryptoKeyVersionRow.kind == row.kind,
            CryptoKeyVersionRow.version == row.version,
            CryptoKeyVersionRow.kek_id == row.kek_id,
            CryptoKeyVersionRow.wrapped_key == row.wrapped_key,
        )
        .values(wrapped_key=wrapped_key, kek_id=kek_id)
    )
    return bool(getattr(result, "rowcount", 0))


async def kek_counts(db: Db) -> dict[str, int]:
    """Wrapped keys per key-encrypting key id."""
    rows = await db.execute(
        select(CryptoKeyVersionRow.kek_id, func.count())
        .where(CryptoKeyVersionRow.wrapped_key.is_not(None))
        .group_by(CryptoKeyVersionRow.kek_id)
    )
    return {str(kek): int(n) for kek, n in rows.all()}
