"""Account recovery API (ATO-3), for staff with `fraud:recover`, under
/api/v1/admin/fraud/recoveries: open a case, re-verify identity, read the activity
timeline and mark entries, propose and approve (a different member) the consequential
steps: credential reset, trade reversal, close."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, Request

from tradeguard.access.domain import Permission
from tradeguard.fraud.container import FraudServices
from tradeguard.fraud.recovery import Verification
from tradeguard.fraud.recovery_schemas import (
    ApprovalOut,
    CaseOut,
    CaseQuery,
    MarkIn,
    MarkOut,
    OpenIn,
    ProposalOut,
    ProposeIn,
    RecordVerifyIn,
    TimelineOut,
    TimelineQuery,
    VerifyIn,
    VerifyOut,
    approval_out,
    case_out,
    mark_out,
    proposal_out,
    timeline_out,
    to_ns,
    verify_out,
)
from tradeguard.fraud.schemas import UUID_PATTERN
from tradeguard.fraud.timeline import StatedIdentity
from tradeguard.identity.guard import CurrentPrincipal, guarded, problems, request_info
from tradeguard.ledger.domain import Party

PREFIX = "/api/v1/admin/fraud/recoveries"
router = APIRouter(prefix=PREFIX, tags=["account recovery"])

CaseId = Annotated[str, Path(min_length=36, max_length=36, pattern=UUID_PATTERN)]
ProposalId = Annotated[str, Path(min_length=36, max_length=36, pattern=UUID_PATTERN)]
RECOVER = Permission.FRAUD_RECOVER


def _fraud(request: Request) -> FraudServices:
    services: FraudServices = request.app.state.fraud
    return services


def _staff(principal: CurrentPrincipal) -> Party:
    return Party("staff", principal.user_id)


@router.post("", status_code=201, responses=problems(404, 409, 503), **guarded(RECOVER))
async def open_recovery(body: OpenIn, request: Request, principal: CurrentPrincipal) -> CaseOut:
    """Open a recovery for a customer, directly or from their takeover review."""
    services = _fraud(request)
    async with services.unit_of_work() as session:
        case = await services.recovery.open_case(
            session,
            actor=_staff(principal),
            user_id=body.user_id,
            review_id=body.review_id,
            note=body.note,
        )
        return case_out(case)


@router.get("", **guarded(RECOVER))
async def list_recoveries(
    request: Request, filters: Annotated[CaseQuery, Query()]
) -> list[CaseOut]:
    """Recovery cases, newest first, by status or user."""
    services = _fraud(request)
    async with services.unit_of_work() as session:
        rows = await services.recovery.cases(
            session, status=filters.status, user_id=filters.user_id, limit=filters.limit
        )
        return [case_out(row) for row in rows]


@router.get("/{case_id}", responses=problems(404), **guarded(RECOVER))
async def show_recovery(case_id: CaseId, request: Request, principal: CurrentPrincipal) -> CaseOut:
    """One case with its proposals, marked entries, active freezes and reversals."""
    services = _fraud(request)
    async with services.unit_of_work() as session:
        view = await services.recovery.view(session, case_id=case_id, actor=_staff(principal))
        return case_out(view.case, view)


@router.post("/{case_id}/verify", responses=problems(404, 409, 503), **guarded(RECOVER))
async def verify_identity(
    case_id: CaseId,
    body: Annotated[VerifyIn, Body()],
    request: Request,
    principal: CurrentPrincipal,
) -> VerifyOut:
    """Re-verify the caller's identity: `kyc_record` compares what they state with the KYC
    record (all must match; a few attempts; nothing of the record is returned), `document`
    accepts a new identity document verified by the documents checks."""
    services = _fraud(request)
    actor = _staff(principal)
    async with services.unit_of_work() as session:
        result: Verification
        if isinstance(body, RecordVerifyIn):
            stated = StatedIdentity(body.birth_date, body.postal_code, body.tax_id_last4)
            result = await services.recovery.verify_with_record(
                session, case_id=case_id, stated=stated, actor=actor
            )
        else:
            result = await services.recovery.verify_with_document(
                session, case_id=case_id, actor=actor
            )
        return verify_out(result)


@router.get("/{case_id}/timeline", responses=problems(404), **guarded(RECOVER))
async def recovery_timeline(
    case_id: CaseId,
    request: Request,
    principal: CurrentPrincipal,
    window: Annotated[TimelineQuery, Query()],
) -> TimelineOut:
    """The user's activity from the ledger in chain order (default: 30 days before the case
    opened, up to now), each entry with its sequence number; addresses masked."""
    services = _fraud(request)
    async with services.unit_of_work() as session:
        timeline = await services.recovery.timeline(
            session,
            case_id=case_id,
            actor=_staff(principal),
            since_ns=to_ns(window.since),
            until_ns=to_ns(window.until),
        )
        return timeline_out(timeline)


@router.post("/{case_id}/marks", status_code=201, responses=problems(404, 409), **guarded(RECOVER))
async def mark_entry(
    case_id: CaseId, body: MarkIn, request: Request, principal: CurrentPrincipal
) -> MarkOut:
    """Mark a timeline entry fraudulent (an execution to reverse, a withdrawal to chase)."""
    services = _fraud(request)
    async with services.unit_of_work() as session:
        row = await services.recovery.mark(
            session, case_id=case_id, seq=body.seq, note=body.note, actor=_staff(principal)
        )
        return mark_out(row)


@router.post(
    "/{case_id}/proposals", status_code=201, responses=problems(404, 409), **guarded(RECOVER)
)
async def propose_step(
    case_id: CaseId, body: ProposeIn, request: Request, principal: CurrentPrincipal
) -> ProposalOut:
    """Propose a consequential step (reset_credentials, reverse_execution, close); a
    different staff member approves it."""
    services = _fraud(request)
    async with services.unit_of_work() as session:
        row = await services.recovery.propose(
            session,
            case_id=case_id,
            action=body.action,
            reason=body.reason,
            actor=_staff(principal),
            execution_id=body.execution_id,
            outcome=body.outcome,
        )
        return proposal_out(row)


@router.post(
    "/proposals/{proposal_id}/approve", responses=problems(403, 404, 409), **guarded(RECOVER)
)
async def approve_step(
    proposal_id: ProposalId, request: Request, principal: CurrentPrincipal
) -> ApprovalOut:
    """Approve another member's proposal: the step is carried out now (never by its
    proposer)."""
    services = _fraud(request)
    async with services.unit_of_work() as session:
        approval = await services.recovery.approve(
            session,
            proposal_id=proposal_id,
            actor=_staff(principal),
            request=request_info(request),
        )
        return approval_out(approval)


@router.post("/proposals/{proposal_id}/withdraw", responses=problems(404, 409), **guarded(RECOVER))
async def withdraw_step(
    proposal_id: ProposalId, request: Request, principal: CurrentPrincipal
) -> ProposalOut:
    """Withdraw a pending proposal: nothing happens."""
    services = _fraud(request)
    async with services.unit_of_work() as session:
        row = await services.recovery.withdraw(
            session, proposal_id=proposal_id, actor=_staff(principal)
        )
        return proposal_out(row)
