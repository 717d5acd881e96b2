"""Every query of the subject key table."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from tradeguard.db.base import Base
from tradeguard.ledger.personal.models import AuditSubjectKeyRow

_KEYS = Base.metadata.tables[AuditSubjectKeyRow.__tablename__]

Executor = AsyncSession | AsyncConnection


async def live_key(db: Executor, subject: str) -> Any | None:
    query = select(_KEYS.c.key_id, _KEYS.c.wrapped_key).where(
        _KEYS.c.subject == subject, _KEYS.c.destroyed_ns.is_(None)
    )
    return (await db.execute(query)).first()


async def insert_key(db: Executor, row: dict[str, Any]) -> None:
    await db.execute(insert(_KEYS).values(**row))


async def keys_by_id(db: Executor, key_ids: Collection[str]) -> Sequence[Any]:
    query = select(_KEYS.c.key_id, _KEYS.c.subject, _KEYS.c.wrapped_key).where(
        _KEYS.c.key_id.in_(sorted(key_ids))
    )
    return (await db.execute(query)).all()


async def destroy_live_keys(session: AsyncSession, subject: str, now_ns: int) -> list[str]:
    """Clear the subject's live wrapped keys; the ids of the keys destroyed."""
    sqlite = (await session.connection()).dialect.name == "sqlite"
    if sqlite:
        # Overwrite the freed bytes of the old row with zeros instead of leaving them in the
        # page (a per-connection flag, applied as the row is rewritten, then switched back).
        await session.execute(text("PRAGMA secure_delete = ON"))
    result = await session.execute(
        update(_KEYS)
        .where(_KEYS.c.subject == subject, _KEYS.c.destroyed_ns.is_(None))
        .values(wrapped_key=None, destroyed_ns=now_ns)
        .returning(_KEYS.c.key_id)
    )
    destroyed = sorted(str(key_id) for key_id in result.scalars())
    if sqlite:
        await session.execute(text("PRAGMA secure_delete = OFF"))
    return destroyed


async def purge_old_versions(engine: AsyncEngine) -> None:
    """After a forget commits: drop the old row versions that still hold the wrapped key
    (SQLite: checkpoint and truncate the WAL; PostgreSQL: VACUUM the table). Best effort: a
    reader holding an old snapshot keeps them until it ends, and backups keep theirs."""
    if engine.dialect.name == "sqlite":
        async with engine.connect() as conn:
            # Straight to the driver: a checkpoint cannot run inside the transaction that
            # SQLAlchemy (and our BEGIN IMMEDIATE hook) would open around the statement.
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection
            cursor = await driver.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            await cursor.close()
        return
    async with engine.connect() as conn:
        autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await autocommit.exec_driver_sql(f"VACUUM {AuditSubjectKeyRow.__tablename__}")
