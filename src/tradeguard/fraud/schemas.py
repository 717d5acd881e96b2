"""API bodies of the account-takeover defence (pydantic v2, extra fields refused)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from tradeguard.core.clock import ns_to_iso
from tradeguard.fraud.domain import PromptAnswer, ReviewOutcome
from tradeguard.fraud.models import FraudSignIn, TakeoverReview, WithdrawalFreeze
from tradeguard.fraud.service import ReviewView

UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
Uuid = Annotated[str, Field(min_length=36, max_length=36, pattern=UUID_PATTERN)]
Reason = Annotated[str, Field(min_length=3, max_length=500)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AnswerIn(Strict):
    token: Annotated[str, Field(min_length=16, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")]
    answer: PromptAnswer


class AnswerOut(BaseModel):
    answer: PromptAnswer
    signed_out_sessions: int
    withdrawals_frozen: bool
    review_opened: bool


class ReviewQuery(Strict):
    status: Annotated[str, Field(pattern=r"^(open|closed)$")] | None = None
    user_id: Uuid | None = None
    limit: int = Field(default=100, ge=1, le=500)


class AssignIn(Strict):
    assignee: Uuid


class CloseIn(Strict):
    outcome: ReviewOutcome
    note: Reason


class LiftIn(Strict):
    reason: Reason


class FreezeQuery(Strict):
    active: bool = True
    limit: int = Field(default=100, ge=1, le=500)


class SignInOut(BaseModel):
    at: str
    device_id: str | None
    country: str | None
    network: str | None
    score: int
    response: str


class FreezeOut(BaseModel):
    id: str
    user_id: str
    frozen_at: str
    reason: str
    review_id: str | None
    lift_requested_by: str | None
    lift_reason: str | None
    lifted_by: str | None
    lifted_at: str | None


class ReviewOut(BaseModel):
    id: str
    user_id: str
    status: str
    trigger: str
    score: int
    signals: list[str]
    opened_at: str
    assignee: str | None
    closed_at: str | None
    closed_by: str | None
    outcome: str | None
    note: str | None
    freezes: list[FreezeOut] | None = None
    sign_ins: list[SignInOut] | None = None


def _iso(ns: int | None) -> str | None:
    return ns_to_iso(ns) if ns is not None else None


def freeze_out(row: WithdrawalFreeze) -> FreezeOut:
    return FreezeOut(
        id=row.id,
        user_id=row.user_id,
        frozen_at=ns_to_iso(row.frozen_ns),
        reason=row.reason,
        review_id=row.review_id,
        lift_requested_by=row.lift_requested_by,
        lift_reason=row.lift_reason,
        lifted_by=row.lifted_by,
        lifted_at=_iso(row.lifted_ns),
    )


def sign_in_out(row: FraudSignIn) -> SignInOut:
    return SignInOut(
        at=ns_to_iso(row.at_ns),
        device_id=row.device_id,
        country=row.country,
        network=row.network,
        score=row.score,
        response=row.response,
    )


def review_out(row: TakeoverReview, view: ReviewView | None = None) -> ReviewOut:
    return ReviewOut(
        id=row.id,
        user_id=row.user_id,
        status=row.status,
        trigger=row.trigger,
        score=row.score,
        signals=[s for s in row.signals.split(",") if s],
        opened_at=ns_to_iso(row.opened_ns),
        assignee=row.assignee,
        closed_at=_iso(row.closed_ns),
        closed_by=row.closed_by,
        outcome=row.outcome,
        note=row.note,
        freezes=[freeze_out(f) for f in view.freezes] if view else None,
        sign_ins=[sign_in_out(s) for s in view.sign_ins] if view else None,
    )
