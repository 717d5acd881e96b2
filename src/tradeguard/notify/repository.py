"""Every query of the notification outbox."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from tradeguard.db.base import Base
from tradeguard.notify.models import OutboxMessage

_OUTBOX = Base.metadata.tables[OutboxMessage.__tablename__]

CLAIMED_COLUMNS = (
    _OUTBOX.c.id,
    _OUTBOX.c.channel,
    _OUTBOX.c.recipient_enc,
    _OUTBOX.c.subject,
    _OUTBOX.c.body_enc,
    _OUTBOX.c.created_ns,
    _OUTBOX.c.attempts,
)


def _pending() -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    """Neither delivered nor given up on."""
    return (_OUTBOX.c.sent_ns.is_(None), _OUTBOX.c.dead_ns.is_(None))


async def insert_message(session: AsyncSession, row: dict[str, Any]) -> None:
    """Insert in the caller's transaction: the message exists only if that transaction commits."""
    await session.execute(insert(_OUTBOX).values(**row))


async def bury_exhausted(
    conn: AsyncConnection, *, now_ns: int, max_attempts: int, reason: str
) -> int:
    """Mark dead the due messages that used up their attempts without a recorded outcome.

    That happens when a dispatcher claimed a message and crashed (or stalled past its claim)
    on its last attempt. Such a message is not retried for ever: a message that crashes the
    dispatcher would otherwise crash it again on every pass.
    """
    result = await conn.execute(
        update(_OUTBOX)
        .where(
            *_pending(),
            _OUTBOX.c.next_attempt_ns <= now_ns,
            _OUTBOX.c.attempts >= max_attempts,
        )
        .values(dead_ns=now_ns, last_error=reason)
    )
    return int(result.rowcount or 0)


async def claim_due(
    conn: AsyncConnection, *, now_ns: int, claim_until_ns: int, max_attempts: int, limit: int
) -> Sequence[Any]:
    """Claim up to `limit` due messages: push their next attempt to `claim_until_ns`, count it.

    WITH due AS (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED) UPDATE ... RETURNING: on
    PostgreSQL a row another dispatcher is claiming right now is skipped rather than waited
    for, and a row it has just claimed no longer matches `next_attempt_ns <= now` when the
    UPDATE re-checks it; so no two dispatchers claim the same message. The selection is a
    CTE, not an IN (subquery): PostgreSQL evaluates a locking CTE exactly once, while a
    subquery may be re-run per row and then, skipping the rows this very UPDATE has just
    locked, return the next ones until it has claimed the whole table. SQLite renders no
    FOR UPDATE; its single write lock (BEGIN IMMEDIATE) serializes claims instead.
    """
    due = (
        select(_OUTBOX.c.id)
        .where(
            *_pending(),
            _OUTBOX.c.next_attempt_ns <= now_ns,
            _OUTBOX.c.attempts < max_attempts,
        )
        .order_by(_OUTBOX.c.next_attempt_ns, _OUTBOX.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("due")
    )
    result = await conn.execute(
        update(_OUTBOX)
        .where(
            _OUTBOX.c.id.in_(select(due.c.id)),
            *_pending(),
            _OUTBOX.c.next_attempt_ns <= now_ns,
        )
        .values(next_attempt_ns=claim_until_ns, attempts=_OUTBOX.c.attempts + 1)
        .returning(*CLAIMED_COLUMNS)
    )
    # RETURNING has no defined order: oldest first, UUIDv7 ids break ties by creation.
    return sorted(result.all(), key=lambda row: (row.created_ns, row.id))


async def mark_sent(conn: AsyncConnection, *, message_id: str, now_ns: int) -> None:
    await conn.execute(
        update(_OUTBOX).where(_OUTBOX.c.id == message_id, *_pending()).values(sent_ns=now_ns)
    )


async def schedule_retry(
    conn: AsyncConnection, *, message_id: str, next_attempt_ns: int, error: str
) -> None:
    # Only while still pending: if another dispatcher re-claimed the message after our claim
    # ran out and delivered it, its success stands.
    await conn.execute(
        update(_OUTBOX)
        .where(_OUTBOX.c.id == message_id, *_pending())
        .values(next_attempt_ns=next_attempt_ns, last_error=error)
    )


async def mark_dead(conn: AsyncConnection, *, message_id: str, now_ns: int, error: str) -> None:
    await conn.execute(
        update(_OUTBOX)
        .where(_OUTBOX.c.id == message_id, *_pending())
        .values(dead_ns=now_ns, last_error=error)
    )


async def get_message(conn: AsyncConnection | AsyncSession, message_id: str) -> Any | None:
    """One outbox row by id (its ciphertexts included), for operators and tests."""
    result = await conn.execute(select(_OUTBOX).where(_OUTBOX.c.id == message_id))
    return result.one_or_none()
