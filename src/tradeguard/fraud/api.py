"""Account-takeover API (ATO-2): the owner's answer to "was this you?" (public: the emailed
token is the authority) and, under /api/v1/takeover, staff reviews and withdrawal freezes.

Staff read with `fraud:takeover`, work reviews with `fraud:review`, and lift a freeze with
`fraud:freeze`: one member asks, a different one approves (four-eyes).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from tradeguard.access.domain import Permission
from tradeguard.fraud.container import FraudServices
from tradeguard.fraud.domain import PromptAnswer
from tradeguard.fraud.schemas import (
    UUID_PATTERN,
    AnswerIn,
    AnswerOut,
    AssignIn,
    CloseIn,
    FreezeOut,
    FreezeQuery,
    LiftIn,
    ReviewOut,
    ReviewQuery,
    freeze_out,
    review_out,
)
from tradeguard.identity.guard import (
    CurrentPrincipal,
    guarded,
    problems,
    public_route,
    request_info,
)
from tradeguard.ledger.domain import Party

PREFIX = "/api/v1/takeover"
public_router = APIRouter(prefix=PREFIX, tags=["takeover"])
staff_router = APIRouter(prefix=PREFIX, tags=["takeover"])

ReviewId = Annotated[str, Path(min_length=36, max_length=36, pattern=UUID_PATTERN)]
FreezeId = Annotated[str, Path(min_length=36, max_length=36, pattern=UUID_PATTERN)]


def _fraud(request: Request) -> FraudServices:
    services: FraudServices = request.app.state.fraud
    return services


def _staff(principal: CurrentPrincipal) -> Party:
    return Party("staff", principal.user_id)


@public_router.post("/answers", responses=problems(404), **public_route())
async def answer_takeover_prompt(body: AnswerIn, request: Request) -> AnswerOut:
    """Answer a "was this you?" email with its token, without signing in. "no" signs out
    every session, freezes withdrawals and opens a review; "yes" dismisses. The token
    works once; an unknown, used or expired one is refused and changes nothing."""
    services = _fraud(request)
    async with services.unit_of_work() as session:
        outcome = await services.defence.answer(
            session, token=body.token, answer=body.answer, request=request_info(request)
        )
    return AnswerOut(
        answer=outcome.answer,
        signed_out_sessions=len(outcome.sessions_ended),
        withdrawals_frozen=outcome.answer is PromptAnswer.NO,
        review_opened=outcome.review_id is not None,
    )


@staff_router.get("/reviews", **guarded(Permission.FRAUD_TAKEOVER))
async def list_takeover_reviews(
    request: Request, filters: Annotated[ReviewQuery, Query()]
) -> list[ReviewOut]:
    """Takeover reviews, newest first, by status or user."""
    services = _fraud(request)
    async with services.unit_of_work() as session:
        rows = await services.defence.reviews(
            session, status=filters.status, user_id=filters.user_id, limit=filters.limit
        )
        return [review_out(row) for row in rows]


@staff_router.get("/reviews/{review_id}", **guarded(Permission.FRAUD_TAKEOVER))
async def get_takeover_review(review_id: ReviewId, request: Request) -> ReviewOut:
    """One review with the user's active freezes and recent assessed sign-ins."""
    services = _fraud(request)
    async with services.unit_of_work() as session:
        view = await services.defence.review(session, review_id)
        return review_out(view.review, view)


@staff_router.post(
    "/reviews/{review_id}/assign", responses=problems(409), **guarded(Permission.FRAUD_REVIEW)
)
async def assign_takeover_review(
    review_id: ReviewId, body: AssignIn, request: Request, principal: CurrentPrincipal
) -> ReviewOut:
    """Assign an open review to a staff member."""
    services = _fraud(request)
    async with services.unit_of_work() as session:
        row = await services.defence.assign_review(
            session, review_id=review_id, assignee=body.assignee, actor=_staff(principal)
        )
        return review_out(row)


@staff_router.post(
    "/reviews/{review_id}/close", responses=problems(409), **guarded(Permission.FRAUD_REVIEW)
)
async def close_takeover_review(
    review_id: ReviewId, body: CloseIn, request: Request, principal: CurrentPrincipal
) -> ReviewOut:
    """Close an open review with its outcome (a freeze stays until two staff lift it)."""
    services = _fraud(request)
    async with services.unit_of_work() as session:
        row = await services.defence.close_review(
            session,
            review_id=review_id,
            outcome=body.outcome,
            note=body.note,
            actor=_staff(principal),
        )
        return review_out(row)


@staff_router.get("/freezes", **guarded(Permission.FRAUD_TAKEOVER))
async def list_withdrawal_freezes(
    request: Request, filters: Annotated[FreezeQuery, Query()]
) -> list[FreezeOut]:
    """Withdrawal freezes, newest first (only the active ones unless active=false)."""
    services = _fraud(request)
    async with services.unit_of_work() as session:
        rows = await services.defence.freezes(
            session, active_only=filters.active, limit=filters.limit
        )
        return [freeze_out(row) for row in rows]


@staff_router.post(
    "/freezes/{freeze_id}/lift-request",
    responses=problems(409),
    **guarded(Permission.FRAUD_FREEZE),
)
async def request_freeze_lift(
    freeze_id: FreezeId, body: LiftIn, request: Request, principal: CurrentPrincipal
) -> FreezeOut:
    """Ask to lift a freeze (its review closed as a false alarm); another member approves."""
    services = _fraud(request)
    async with services.unit_of_work() as session:
        row = await services.defence.request_lift(
            session, freeze_id=freeze_id, reason=body.reason, actor=_staff(principal)
        )
        return freeze_out(row)


@staff_router.post(
    "/freezes/{freeze_id}/approve", responses=problems(409), **guarded(Permission.FRAUD_FREEZE)
)
async def approve_freeze_lift(
    freeze_id: FreezeId, request: Request, principal: CurrentPrincipal
) -> FreezeOut:
    """Approve another member's request: withdrawals are allowed again."""
    services = _fraud(request)
    async with services.unit_of_work() as session:
        row = await services.defence.approve_lift(
            session, freeze_id=freeze_id, actor=_staff(principal)
        )
        return freeze_out(row)
