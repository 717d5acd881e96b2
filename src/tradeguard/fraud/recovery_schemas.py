"""API bodies of account recovery (ATO-3): pydantic v2, extra fields refused. What a caller
stated to re-verify their identity comes in and is never sent back."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, Field, model_validator

from tradeguard.core.clock import NS_PER_SECOND, ns_to_iso
from tradeguard.fraud.models import RecoveryCase, RecoveryMark, RecoveryProposal
from tradeguard.fraud.recovery import Approval, CaseView, Timeline, Verification
from tradeguard.fraud.schemas import Reason, Strict, Uuid
from tradeguard.fraud.timeline import CaseOutcome, ProposalAction, TimelineEntry

Note = Annotated[str, Field(min_length=3, max_length=500)]


class OpenIn(Strict):
    user_id: Uuid | None = None
    review_id: Uuid | None = None
    note: Note | None = None

    @model_validator(mode="after")
    def _one_of(self) -> OpenIn:
        if self.user_id is None and self.review_id is None:
            raise ValueError("give user_id or review_id")
        return self


class CaseQuery(Strict):
    status: Annotated[str, Field(pattern=r"^(open|closed)$")] | None = None
    user_id: Uuid | None = None
    limit: int = Field(default=100, ge=1, le=500)


class RecordVerifyIn(Strict):
    method: Literal["kyc_record"]
    birth_date: date
    postal_code: Annotated[str, Field(min_length=2, max_length=12, pattern=r"^[A-Za-z0-9 -]+$")]
    tax_id_last4: Annotated[str, Field(min_length=4, max_length=4, pattern=r"^[0-9]{4}$")]


class DocumentVerifyIn(Strict):
    method: Literal["document"]


VerifyIn = Annotated[RecordVerifyIn | DocumentVerifyIn, Field(discriminator="method")]


class VerifyOut(BaseModel):
    verified: bool
    method: str
    attempts_left: int


class TimelineQuery(Strict):
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None


class MarkIn(Strict):
    seq: int = Field(ge=1, le=2**62)
    note: Note


class ProposeIn(Strict):
    action: ProposalAction
    reason: Reason
    execution_id: Uuid | None = None
    outcome: CaseOutcome | None = None

    @model_validator(mode="after")
    def _targets(self) -> ProposeIn:
        if self.action is ProposalAction.REVERSE_EXECUTION and self.execution_id is None:
            raise ValueError("reverse_execution needs execution_id")
        if self.action is ProposalAction.CLOSE and self.outcome is None:
            raise ValueError("close needs outcome")
        if self.action is not ProposalAction.REVERSE_EXECUTION and self.execution_id:
            raise ValueError("execution_id goes with reverse_execution only")
        if self.action is not ProposalAction.CLOSE and self.outcome:
            raise ValueError("outcome goes with close only")
        return self


class ProposalOut(BaseModel):
    id: str
    case_id: str
    action: str
    target: str | None
    reason: str
    status: str
    proposed_by: str
    proposed_at: str
    decided_by: str | None
    decided_at: str | None


class MarkOut(BaseModel):
    id: str
    seq: int
    event_type: str
    kind: str
    ref_id: str | None
    note: str
    marked_by: str
    marked_at: str


class CaseOut(BaseModel):
    id: str
    user_id: str
    review_id: str | None
    status: str
    opened_at: str
    opened_by: str
    identity_verified: bool
    verified_method: str | None
    verified_by: str | None
    record_attempts: int
    credentials_reset_at: str | None
    outcome: str | None
    closed_at: str | None
    closed_by: str | None
    proposals: list[ProposalOut] | None = None
    marks: list[MarkOut] | None = None
    active_freezes: int | None = None
    reversed_executions: list[str] | None = None


class ApprovalOut(BaseModel):
    proposal: ProposalOut
    case: CaseOut
    sessions_ended: int | None = None
    factors_removed: int | None = None
    devices_untrusted: int | None = None
    reversal: dict[str, str | int] | None = None
    freezes_lifted: int | None = None


class EntryOut(BaseModel):
    seq: int
    at: str
    type: str
    category: str
    line: str
    actor: str | None
    references: dict[str, str]
    country: str | None
    network: str | None
    ip: str | None
    marked: bool


class TimelineOut(BaseModel):
    user_id: str
    since: str
    until: str
    truncated: bool
    entries: list[EntryOut]


def _iso(ns: int | None) -> str | None:
    return ns_to_iso(ns) if ns is not None else None


def to_ns(moment: datetime | None) -> int | None:
    if moment is None:
        return None
    seconds = int(moment.timestamp())
    return seconds * NS_PER_SECOND + moment.microsecond * 1000


def proposal_out(row: RecoveryProposal) -> ProposalOut:
    return ProposalOut(
        id=row.id,
        case_id=row.case_id,
        action=row.action,
        target=row.target,
        reason=row.reason,
        status=row.status,
        proposed_by=row.proposed_by,
        proposed_at=ns_to_iso(row.proposed_ns),
        decided_by=row.decided_by,
        decided_at=_iso(row.decided_ns),
    )


def mark_out(row: RecoveryMark) -> MarkOut:
    return MarkOut(
        id=row.id,
        seq=row.seq,
        event_type=row.event_type,
        kind=row.kind,
        ref_id=row.ref_id,
        note=row.note,
        marked_by=row.marked_by,
        marked_at=ns_to_iso(row.marked_ns),
    )


def case_out(row: RecoveryCase, view: CaseView | None = None) -> CaseOut:
    return CaseOut(
        id=row.id,
        user_id=row.user_id,
        review_id=row.review_id,
        status=row.status,
        opened_at=ns_to_iso(row.opened_ns),
        opened_by=row.opened_by,
        identity_verified=row.verified_ns is not None,
        verified_method=row.verified_method,
        verified_by=row.verified_by,
        record_attempts=row.record_attempts,
        credentials_reset_at=_iso(row.credentials_reset_ns),
        outcome=row.outcome,
        closed_at=_iso(row.closed_ns),
        closed_by=row.closed_by,
        proposals=[proposal_out(p) for p in view.proposals] if view else None,
        marks=[mark_out(m) for m in view.marks] if view else None,
        active_freezes=view.freezes_active if view else None,
        reversed_executions=list(view.reversed_executions) if view else None,
    )


def verify_out(result: Verification) -> VerifyOut:
    return VerifyOut(
        verified=result.verified, method=result.method.value, attempts_left=result.attempts_left
    )


def entry_out(entry: TimelineEntry, marked: frozenset[int]) -> EntryOut:
    return EntryOut(
        seq=entry.seq,
        at=ns_to_iso(entry.occurred_ns),
        type=entry.type,
        category=entry.category.value,
        line=entry.line,
        actor=entry.actor,
        references=dict(entry.references),
        country=entry.country,
        network=entry.network,
        ip=entry.ip,
        marked=entry.seq in marked,
    )


def timeline_out(timeline: Timeline) -> TimelineOut:
    return TimelineOut(
        user_id=timeline.user_id,
        since=ns_to_iso(timeline.since_ns),
        until=ns_to_iso(timeline.until_ns),
        truncated=timeline.truncated,
        entries=[entry_out(e, timeline.marked) for e in timeline.entries],
    )


def approval_out(approval: Approval) -> ApprovalOut:
    reset, reversal = approval.reset, approval.reversal
    return ApprovalOut(
        proposal=proposal_out(approval.proposal),
        case=case_out(approval.case),
        sessions_ended=len(reset.sessions_ended) if reset else None,
        factors_removed=reset.factors_removed if reset else None,
        devices_untrusted=reset.devices_untrusted if reset else None,
        reversal=(
            {
                "execution_id": reversal.execution_id,
                "account_id": reversal.account_id,
                "symbol": reversal.symbol,
                "side": reversal.side,
                "quantity": reversal.quantity,
                "cash": str(reversal.cash),
                "position_after": reversal.position_after,
            }
            if reversal
            else None
        ),
        freezes_lifted=approval.freezes_lifted if approval.proposal.action == "close" else None,
    )
