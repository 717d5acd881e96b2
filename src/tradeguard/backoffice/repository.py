"""Every query of the back office."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.backoffice.models import AccessLogEntry, FactorResetRequest

PENDING = "pending"


def add(session: AsyncSession, row: object) -> None:
    session.add(row)


async def access_log_page(
    session: AsyncSession,
    customer_id: str,
    *,
    before: tuple[int, str] | None,
    limit: int,
) -> Sequence[AccessLogEntry]:
    """A customer's access log, newest first, strictly before the (created_ns, id) cursor."""
    query = select(AccessLogEntry).where(AccessLogEntry.customer_id == customer_id)
    if before is not None:
        created_ns, entry_id = before
        query = query.where(
            or_(
                AccessLogEntry.created_ns < created_ns,
                and_(AccessLogEntry.created_ns == created_ns, AccessLogEntry.id < entry_id),
            )
        )
    query = query.order_by(AccessLogEntry.created_ns.desc(), AccessLogEntry.id.desc())
    return (await session.execute(query.limit(limit))).scalars().all()


async def factor_reset(session: AsyncSession, request_id: str) -> FactorResetRequest | None:
    return await session.get(FactorResetRequest, request_id)


async def live_factor_reset_for(
    session: AsyncSession, user_id: str, now_ns: int
) -> FactorResetRequest | None:
    query = select(FactorResetRequest).where(
        FactorResetRequest.user_id == user_id,
        FactorResetRequest.status == PENDING,
        FactorResetRequest.expires_ns > now_ns,
    )
    return (await session.execute(query.limit(1))).scalar_one_or_none()


async def factor_resets(
    session: AsyncSession, *, pending_only: bool, now_ns: int, limit: int
) -> Sequence[FactorResetRequest]:
    query = select(FactorResetRequest)
    if pending_only:
        query = query.where(
            FactorResetRequest.status == PENDING, FactorResetRequest.expires_ns > now_ns
        )
    query = query.order_by(FactorResetRequest.created_ns.desc(), FactorResetRequest.id.desc())
    return (await session.execute(query.limit(limit))).scalars().all()


async def decide_factor_reset(
    session: AsyncSession,
    request_id: str,
    *,
    status: str,
    decided_by: str,
    note: str | None,
    now_ns: int,
) -> bool:
    """Close a pending, unexpired request; False if another decision (or time) came first.

    One conditional UPDATE, so two admins approving at once cannot both succeed.
    """
    result = await session.execute(
        update(FactorResetRequest)
        .where(
            FactorResetRequest.id == request_id,
            FactorResetRequest.status == PENDING,
            FactorResetRequest.expires_ns > now_ns,
        )
        .values(status=status, decided_by=decided_by, decided_ns=now_ns, decision_note=note)
        .execution_options(synchronize_session="fetch")
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]
