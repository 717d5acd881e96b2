"""Every query of the takeover defence."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.fraud.models import (
    FraudSignIn,
    RecoveryCase,
    RecoveryMark,
    RecoveryProposal,
    TakeoverPrompt,
    TakeoverReview,
    WithdrawalFreeze,
)

OPEN = "open"
CLOSED = "closed"
KYC_RECORD = "kyc_record"  # VerifyMethod.KYC_RECORD


async def recent_sign_ins(
    session: AsyncSession, user_id: str, *, limit: int, before_ns: int | None = None
) -> Sequence[FraudSignIn]:
    """The user's assessed sign-ins, newest first."""
    query = select(FraudSignIn).where(FraudSignIn.user_id == user_id)
    if before_ns is not None:
        query = query.where(FraudSignIn.at_ns < before_ns)
    query = query.order_by(FraudSignIn.at_ns.desc(), FraudSignIn.id.desc()).limit(limit)
    return (await session.execute(query)).scalars().all()


async def risky_sign_ins_since(
    session: AsyncSession, user_id: str, *, since_ns: int, min_score: int
) -> Sequence[FraudSignIn]:
    query = (
        select(FraudSignIn)
        .where(
            FraudSignIn.user_id == user_id,
            FraudSignIn.at_ns >= since_ns,
            FraudSignIn.score >= min_score,
            FraudSignIn.confirmed_ns.is_(None),
        )
        .order_by(FraudSignIn.at_ns.desc())
    )
    return (await session.execute(query)).scalars().all()


async def flag_trading(session: AsyncSession, sign_in_id: str, now_ns: int) -> bool:
    """Mark a sign-in's trading as flagged, once (conditional: parallel checks flag it once)."""
    result = await session.execute(
        update(FraudSignIn)
        .where(FraudSignIn.id == sign_in_id, FraudSignIn.trading_flagged_ns.is_(None))
        .values(trading_flagged_ns=now_ns)
    )
    return bool(getattr(result, "rowcount", 0))


async def confirm_sign_in(session: AsyncSession, sign_in_id: str, now_ns: int) -> None:
    await session.execute(
        update(FraudSignIn)
        .where(FraudSignIn.id == sign_in_id, FraudSignIn.confirmed_ns.is_(None))
        .values(confirmed_ns=now_ns)
    )


async def prompt_by_hash(session: AsyncSession, token_hash: bytes) -> TakeoverPrompt | None:
    return (
        await session.execute(select(TakeoverPrompt).where(TakeoverPrompt.token_hash == token_hash))
    ).scalar_one_or_none()


async def answer_prompt(session: AsyncSession, prompt_id: str, answer: str, now_ns: int) -> bool:
    """Spend the prompt with its answer; False if another request answered it first."""
    result = await session.execute(
        update(TakeoverPrompt)
        .where(TakeoverPrompt.id == prompt_id, TakeoverPrompt.answered_ns.is_(None))
        .values(answered_ns=now_ns, answer=answer)
    )
    return bool(getattr(result, "rowcount", 0))


async def active_freezes(session: AsyncSession, user_id: str) -> Sequence[WithdrawalFreeze]:
    query = (
        select(WithdrawalFreeze)
        .where(WithdrawalFreeze.user_id == user_id, WithdrawalFreeze.lifted_ns.is_(None))
        .order_by(WithdrawalFreeze.frozen_ns)
    )
    return (await session.execute(query)).scalars().all()


async def freeze(session: AsyncSession, freeze_id: str) -> WithdrawalFreeze | None:
    return await session.get(WithdrawalFreeze, freeze_id)


async def freezes(
    session: AsyncSession, *, active_only: bool, limit: int
) -> Sequence[WithdrawalFreeze]:
    query = select(WithdrawalFreeze)
    if active_only:
        query = query.where(WithdrawalFreeze.lifted_ns.is_(None))
    query = query.order_by(WithdrawalFreeze.frozen_ns.desc(), WithdrawalFreeze.id).limit(limit)
    return (await session.execute(query)).scalars().all()


async def open_review_of(session: AsyncSession, user_id: str) -> TakeoverReview | None:
    query = (
        select(TakeoverReview)
        .where(TakeoverReview.user_id == user_id, TakeoverReview.status == OPEN)
        .order_by(TakeoverReview.opened_ns)
        .limit(1)
    )
    return (await session.execute(query)).scalar_one_or_none()


async def review(session: AsyncSession, review_id: str) -> TakeoverReview | None:
    return await session.get(TakeoverReview, review_id)


async def reviews(
    session: AsyncSession, *, status: str | None, user_id: str | None, limit: int
) -> Sequence[TakeoverReview]:
    query = select(TakeoverReview)
    if status is not None:
        query = query.where(TakeoverReview.status == status)
    if user_id is not None:
        query = query.where(TakeoverReview.user_id == user_id)
    query = query.order_by(TakeoverReview.opened_ns.desc(), TakeoverReview.id).limit(limit)
    return (await session.execute(query)).scalars().all()


async def close_review(
    session: AsyncSession, review_id: str, *, now_ns: int, by: str, outcome: str, note: str
) -> bool:
    result = await session.execute(
        update(TakeoverReview)
        .where(TakeoverReview.id == review_id, TakeoverReview.status == OPEN)
        .values(status=CLOSED, closed_ns=now_ns, closed_by=by, outcome=outcome, note=note)
    )
    return bool(getattr(result, "rowcount", 0))


async def lift_freeze(session: AsyncSession, freeze_id: str, *, now_ns: int, by: str) -> bool:
    """Lift a freeze whose lift another staff member asked for (conditional update)."""
    result = await session.execute(
        update(WithdrawalFreeze)
        .where(
            WithdrawalFreeze.id == freeze_id,
            WithdrawalFreeze.lifted_ns.is_(None),
            WithdrawalFreeze.lift_requested_by.is_not(None),
            WithdrawalFreeze.lift_requested_by != by,
        )
        .values(lifted_ns=now_ns, lifted_by=by)
    )
    return bool(getattr(result, "rowcount", 0))


async def users_with_risky_sign_ins(
    session: AsyncSession, *, since_ns: int, min_score: int
) -> list[str]:
    """Users with a risky sign-in since `since_ns` whose trading is not flagged yet."""
    query = (
        select(FraudSignIn.user_id)
        .where(
            FraudSignIn.at_ns >= since_ns,
            FraudSignIn.score >= min_score,
            FraudSignIn.trading_flagged_ns.is_(None),
            FraudSignIn.confirmed_ns.is_(None),
        )
        .distinct()
    )
    return sorted((await session.execute(query)).scalars().all())


# Account recovery (ATO-3) -------------------------------------------------------------------


async def recovery_case(
    session: AsyncSession, case_id: str, *, lock: bool = False
) -> RecoveryCase | None:
    query = select(RecoveryCase).where(RecoveryCase.id == case_id)
    if lock:
        # Serialises the steps of one case (attempt counting, approvals) on PostgreSQL.
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def open_recovery_of(session: AsyncSession, user_id: str) -> RecoveryCase | None:
    query = (
        select(RecoveryCase)
        .where(RecoveryCase.user_id == user_id, RecoveryCase.status == OPEN)
        .limit(1)
    )
    return (await session.execute(query)).scalar_one_or_none()


async def record_attempts_of_user(
    session: AsyncSession, user_id: str, *, since_ns: int, other_than: str
) -> int:
    """Failed attempts against the KYC record spent in the user's other recovery cases
    opened or closed since `since_ns` (a successful one is not a failure)."""
    success = case((RecoveryCase.verified_method == KYC_RECORD, 1), else_=0)
    query = select(func.coalesce(func.sum(RecoveryCase.record_attempts - success), 0)).where(
        RecoveryCase.user_id == user_id,
        RecoveryCase.id != other_than,
        or_(
            RecoveryCase.opened_ns >= since_ns,
            RecoveryCase.closed_ns.is_(None),
            RecoveryCase.closed_ns >= since_ns,
        ),
    )
    return int((await session.execute(query)).scalar_one())


async def recovery_cases(
    session: AsyncSession, *, status: str | None, user_id: str | None, limit: int
) -> Sequence[RecoveryCase]:
    query = select(RecoveryCase)
    if status is not None:
        query = query.where(RecoveryCase.status == status)
    if user_id is not None:
        query = query.where(RecoveryCase.user_id == user_id)
    query = query.order_by(RecoveryCase.opened_ns.desc(), RecoveryCase.id).limit(limit)
    return (await session.execute(query)).scalars().all()


async def proposals_of(session: AsyncSession, case_id: str) -> Sequence[RecoveryProposal]:
    query = (
        select(RecoveryProposal)
        .where(RecoveryProposal.case_id == case_id)
        .order_by(RecoveryProposal.proposed_ns, RecoveryProposal.id)
    )
    return (await session.execute(query)).scalars().all()


async def proposal(session: AsyncSession, proposal_id: str) -> RecoveryProposal | None:
    return await session.get(RecoveryProposal, proposal_id)


async def decide_proposal(
    session: AsyncSession, proposal_id: str, *, status: str, by: str, now_ns: int
) -> bool:
    """Decide a pending proposal once (conditional: two approvals at once decide it once);
    an approval never by its proposer."""
    query = update(RecoveryProposal).where(
        RecoveryProposal.id == proposal_id, RecoveryProposal.status == "pending"
    )
    if status == "approved":
        query = query.where(RecoveryProposal.proposed_by != by)
    result = await session.execute(query.values(status=status, decided_by=by, decided_ns=now_ns))
    return bool(getattr(result, "rowcount", 0))


async def marks_of(session: AsyncSession, case_id: str) -> Sequence[RecoveryMark]:
    query = select(RecoveryMark).where(RecoveryMark.case_id == case_id).order_by(RecoveryMark.seq)
    return (await session.execute(query)).scalars().all()


async def lift_for_recovery(
    session: AsyncSession, freeze_id: str, *, now_ns: int, asked_by: str, by: str, reason: str
) -> bool:
    """Lift a freeze as a recovery's close: asked by the proposer, lifted by the approver."""
    result = await session.execute(
        update(WithdrawalFreeze)
        .where(WithdrawalFreeze.id == freeze_id, WithdrawalFreeze.lifted_ns.is_(None))
        .values(
            lift_requested_by=asked_by,
            lift_requested_ns=now_ns,
            lift_reason=reason,
            lifted_ns=now_ns,
            lifted_by=by,
        )
    )
    return bool(getattr(result, "rowcount", 0))
