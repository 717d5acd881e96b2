"""AML staff API under /api/v1/admin/aml: alerts (aml:alerts), cases (aml:cases), CTR and SAR
exports (aml:file). Thin: parse, authorize (the guard), call the service, shape."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from tradeguard.access.domain import Permission
from tradeguard.aml import repository
from tradeguard.aml import schemas as s
from tradeguard.aml.container import AmlServices
from tradeguard.aml.domain import mask_account
from tradeguard.aml.models import AmlAlert, AmlCase, AmlCtr, AmlFiling
from tradeguard.aml.service import Decision, Exported
from tradeguard.core.clock import ns_to_iso
from tradeguard.core.context import request_id_var
from tradeguard.core.errors import NotFound
from tradeguard.db.engine import unit_of_work
from tradeguard.identity.guard import CurrentPrincipal, guarded, problems

router = APIRouter(prefix="/api/v1/admin/aml", tags=["aml (staff)"])

IdPath = Annotated[str, Path(min_length=36, max_length=36, pattern=r"^[0-9a-f-]{36}$")]
Limit = Annotated[int, Query(ge=1, le=500)]
AlertStatus = Annotated[str | None, Query(pattern=r"^(open|in_case|closed)$")]
RuleName = Annotated[str | None, Query(pattern=r"^[a-z_]{1,40}$")]
UserQuery = Annotated[str | None, Query(min_length=36, max_length=36, pattern=r"^[0-9a-f-]{36}$")]
CaseStatusQuery = Annotated[
    str | None, Query(pattern=r"^(open|pending_second|sar_required|sar_filed|closed)$")
]
CtrStatus = Annotated[str | None, Query(pattern=r"^(owed|filed)$")]
XML = "application/xml"


def aml(request: Request) -> AmlServices:
    services: AmlServices = request.app.state.aml
    return services


def alert_out(row: AmlAlert) -> s.AlertOut:
    return s.AlertOut(
        id=row.id,
        rule=row.rule,
        user_id=row.user_id,
        window=row.window_key,
        score=row.score,
        status=row.status,
        summary=row.summary,
        facts=row.facts,
        movement_ids=row.movement_ids,
        occurrences=row.occurrences,
        window_start=ns_to_iso(row.window_start_ns),
        window_end=ns_to_iso(row.window_end_ns),
        case_id=row.case_id,
        created_at=ns_to_iso(row.created_ns),
        updated_at=ns_to_iso(row.updated_ns),
    )


def ctr_out(row: AmlCtr) -> s.CtrOut:
    return s.CtrOut(
        id=row.id,
        user_id=row.user_id,
        day=row.day,
        direction=row.direction,
        total=f"{row.total:.2f}",
        accounts=[mask_account(a) for a in row.accounts],
        movement_ids=row.movement_ids,
        status=row.status,
        due_day=row.due_day,
        amended=row.amended,
        created_at=ns_to_iso(row.created_ns),
    )


def filing_out(row: AmlFiling, problems_: tuple[str, ...] = ()) -> s.FilingOut:
    return s.FilingOut(
        id=row.id,
        kind=row.kind,
        ref_id=row.ref_id,
        status=row.status,
        missing=row.missing,
        problems=list(problems_),
        sha256=row.sha256,
        created_at=ns_to_iso(row.created_ns),
    )


def case_fields(row: AmlCase, overdue: bool) -> dict[str, object]:
    return {
        "id": row.id,
        "user_id": row.user_id,
        "status": row.status,
        "assignee": row.assignee,
        "opened_by": row.opened_by,
        "detected_at": ns_to_iso(row.detection_ns),
        "suspect_identified": row.suspect_identified,
        "sar_due": ns_to_iso(row.due_ns),
        "overdue": overdue,
        "reminders_sent": row.reminders_sent,
        "max_score": row.max_score,
        "decision": row.decision,
        "decision_reason": row.decision_reason,
        "first_decider": row.first_decider,
        "decided_by": row.decided_by,
        "created_at": ns_to_iso(row.created_ns),
    }


async def _detail(services: AmlServices, case_id: str) -> s.CaseDetailOut:
    async with unit_of_work(services.sessions) as session:
        view = await services.cases.view(session, case_id)
        return s.CaseDetailOut.model_validate(
            case_fields(view.case, view.overdue)
            | {
                "alerts": [alert_out(a) for a in view.alerts],
                "movements": [
                    s.MovementOut(
                        id=m.id,
                        kind=m.kind,
                        account=mask_account(m.account_id),
                        rail=m.rail,
                        amount=f"{m.amount:.2f}",
                        symbol=m.symbol,
                        day=m.day,
                        at=ns_to_iso(m.ts_ns),
                    )
                    for m in view.movements
                ],
                "notes": [
                    s.NoteOut(
                        id=n.id, author=n.author, text=n.text, created_at=ns_to_iso(n.created_ns)
                    )
                    for n in view.notes
                ],
                "filings": [filing_out(f) for f in view.filings],
            }
        )


# Alerts ---------------------------------------------------------------------------------------


@router.get("/alerts", **guarded(Permission.AML_ALERTS))
async def list_alerts(
    request: Request,
    status: AlertStatus = None,
    rule: RuleName = None,
    user_id: UserQuery = None,
    limit: Limit = 100,
) -> list[s.AlertOut]:
    """Alerts, newest first; each explains itself in its facts."""
    services = aml(request)
    where = repository.AlertFilter(status=status, rule=rule, user_id=user_id, limit=limit)
    async with unit_of_work(services.sessions) as session:
        return [alert_out(a) for a in await repository.alerts(session, where)]


@router.get("/alerts/{alert_id}", responses=problems(404), **guarded(Permission.AML_ALERTS))
async def get_alert(alert_id: IdPath, request: Request) -> s.AlertOut:
    """One alert with its facts: amounts, days, masked accounts, window and threshold."""
    services = aml(request)
    async with unit_of_work(services.sessions) as session:
        row = await repository.alert(session, alert_id)
        if row is None:
            raise NotFound("no such alert")
        return alert_out(row)


# CTRs -----------------------------------------------------------------------------------------


@router.get("/ctrs", **guarded(Permission.AML_FILE))
async def list_ctrs(
    request: Request, status: CtrStatus = None, user_id: UserQuery = None, limit: Limit = 100
) -> list[s.CtrOut]:
    """CTRs owed and filed, newest business day first."""
    services = aml(request)
    async with unit_of_work(services.sessions) as session:
        rows = await services.filings.ctrs(session, status=status, user_id=user_id, limit=limit)
        return [ctr_out(r) for r in rows]


@router.get("/ctrs/{ctr_id}", responses=problems(404), **guarded(Permission.AML_FILE))
async def get_ctr(ctr_id: IdPath, request: Request) -> s.CtrOut:
    """One CTR: the person's day, direction, total, accounts and filing deadline."""
    services = aml(request)
    async with unit_of_work(services.sessions) as session:
        return ctr_out(await services.filings.ctr(session, ctr_id))


@router.post(
    "/ctrs/{ctr_id}/export",
    status_code=201,
    responses=problems(404, 422),
    **guarded(Permission.AML_FILE),
)
async def export_ctr(
    ctr_id: IdPath, body: s.ExportIn, request: Request, principal: CurrentPrincipal
) -> s.FilingOut:
    """Export the CTR as a FinCEN CTR batch (CTRX): a draft names what is missing; a final
    export is refused unless complete and valid."""
    services = aml(request)
    async with unit_of_work(services.sessions) as session:
        done: Exported = await services.filings.export_ctr(
            session,
            staff_id=principal.user_id,
            ctr_id=ctr_id,
            final=body.final,
            request_id=request_id_var.get(),
        )
        return filing_out(done.filing, done.problems)


@router.get("/filings/{filing_id}", responses=problems(404), **guarded(Permission.AML_FILE))
async def get_filing(filing_id: IdPath, request: Request) -> s.FilingOut:
    """An export's record (kind, status, what was missing, digest), without its document:
    the document is read with a stated reason (POST .../download)."""
    services = aml(request)
    async with unit_of_work(services.sessions) as session:
        return filing_out(await services.filings.filing(session, filing_id))


@router.post(
    "/filings/{filing_id}/download",
    response_class=Response,
    responses={
        **problems(404, 422),
        200: {
            "description": "The FinCEN batch XML (EFilingBatchXML) as exported, as an attachment",
            "content": {XML: {"schema": {"type": "string"}}},
        },
    },
    **guarded(Permission.AML_FILE),
)
async def download_filing(
    filing_id: IdPath, body: s.ReadIn, request: Request, principal: CurrentPrincipal
) -> Response:
    """The stored batch XML of an export, as an attachment; the stated reason is recorded
    in the ledger first. A draft carries the subject's tax id masked (last four digits)."""
    services = aml(request)
    async with unit_of_work(services.sessions) as session:
        row, document = await services.filings.read(
            session,
            staff_id=principal.user_id,
            filing_id=filing_id,
            reason=body.reason,
            request_id=request_id_var.get(),
        )
    name = f"{row.kind}-{row.status}-{row.id}.xml"
    return Response(
        content=document,
        media_type=XML,
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox; default-src 'none'",
            "Cache-Control": "no-store",
        },
    )


@router.delete(
    "/filings/{filing_id}",
    status_code=204,
    responses=problems(404, 409),
    **guarded(Permission.AML_FILE),
)
async def delete_filing(
    filing_id: IdPath, request: Request, principal: CurrentPrincipal
) -> Response:
    """Refused while the record is younger than the retention period (five years)."""
    services = aml(request)
    async with unit_of_work(services.sessions) as session:
        await services.filings.delete_filing(
            session,
            staff_id=principal.user_id,
            filing_id=filing_id,
            request_id=request_id_var.get(),
        )
    return Response(status_code=204)


# Cases ----------------------------------------------------------------------------------------


@router.get("/cases", **guarded(Permission.AML_CASES))
async def list_cases(
    request: Request,
    status: CaseStatusQuery = None,
    assignee: UserQuery = None,
    limit: Limit = 100,
) -> list[s.CaseOut]:
    """Cases, nearest SAR deadline first."""
    services = aml(request)
    async with unit_of_work(services.sessions) as session:
        rows = await services.cases.list(session, status=status, assignee=assignee, limit=limit)
        now = services.deps.clock.now_ns()
        return [
            s.CaseOut.model_validate(case_fields(r, services.cases.overdue(r, now))) for r in rows
        ]


@router.post(
    "/cases", status_code=201, responses=problems(404, 409, 422), **guarded(Permission.AML_CASES)
)
async def open_case(
    body: s.OpenCaseIn, request: Request, principal: CurrentPrincipal
) -> s.CaseDetailOut:
    """Open a case over one person's alerts; the SAR clock runs from the earliest alert."""
    services = aml(request)
    async with unit_of_work(services.sessions) as session:
        row = await services.cases.open(
            session,
            staff_id=principal.user_id,
            alert_ids=body.alert_ids,
            suspect_identified=body.suspect_identified,
            assignee=body.assignee,
            request_id=request_id_var.get(),
        )
        case_id = row.id
    return await _detail(services, case_id)


@router.get("/cases/{case_id}", responses=problems(404), **guarded(Permission.AML_CASES))
async def get_case(case_id: IdPath, request: Request) -> s.CaseDetailOut:
    """The case with its evidence: alerts and their facts, movements, notes, filings."""
    return await _detail(aml(request), case_id)


@router.post(
    "/cases/{case_id}/assign", responses=problems(404, 409, 422), **guarded(Permission.AML_CASES)
)
async def assign_case(
    case_id: IdPath, body: s.AssignIn, request: Request, principal: CurrentPrincipal
) -> s.CaseDetailOut:
    """Assign the case to a compliance officer or administrator."""
    services = aml(request)
    async with unit_of_work(services.sessions) as session:
        await services.cases.assign(
            session,
            staff_id=principal.user_id,
            case_id=case_id,
            assignee=body.assignee,
            request_id=request_id_var.get(),
        )
    return await _detail(services, case_id)


@router.post(
    "/cases/{case_id}/notes",
    status_code=201,
    responses=problems(404, 422),
    **guarded(Permission.AML_CASES),
)
async def note_case(
    case_id: IdPath, body: s.NoteIn, request: Request, principal: CurrentPrincipal
) -> s.CaseDetailOut:
    """Add a note to the case (its text stays in the case; the ledger event names it)."""
    services = aml(request)
    async with unit_of_work(services.sessions) as session:
        await services.cases.note(
            session,
            staff_id=principal.user_id,
            case_id=case_id,
            text=body.text,
            request_id=request_id_var.get(),
        )
    return await _detail(services, case_id)


@router.post(
    "/cases/{case_id}/evidence", responses=problems(404, 409, 422), **guarded(Permission.AML_CASES)
)
async def attach_evidence(
    case_id: IdPath, body: s.AttachIn, request: Request, principal: CurrentPrincipal
) -> s.CaseDetailOut:
    """Attach more of the person's movements to the case."""
    services = aml(request)
    async with unit_of_work(services.sessions) as session:
        await services.cases.attach(
            session,
            staff_id=principal.user_id,
            case_id=case_id,
            movement_ids=body.movement_ids,
            request_id=request_id_var.get(),
        )
    return await _detail(services, case_id)


@router.post(
    "/cases/{case_id}/decide", responses=problems(404, 409, 422), **guarded(Permission.AML_CASES)
)
async def decide_case(
    case_id: IdPath, body: s.DecideIn, request: Request, principal: CurrentPrincipal
) -> s.CaseDetailOut:
    """SAR required, or no SAR with a reason; closing without a SAR a case whose alerts
    scored high takes a second, different staff member (four-eyes)."""
    services = aml(request)
    async with unit_of_work(services.sessions) as session:
        await services.cases.decide(
            session,
            staff_id=principal.user_id,
            case_id=case_id,
            decision=Decision(body.decision),
            reason=body.reason,
            request_id=request_id_var.get(),
        )
    return await _detail(services, case_id)


@router.post(
    "/cases/{case_id}/sar",
    status_code=201,
    responses=problems(404, 409, 422),
    **guarded(Permission.AML_FILE),
)
async def export_sar(
    case_id: IdPath, body: s.ExportIn, request: Request, principal: CurrentPrincipal
) -> s.FilingOut:
    """Export the case's SAR as a FinCEN SAR batch (SARX)."""
    services = aml(request)
    async with unit_of_work(services.sessions) as session:
        done = await services.filings.export_sar(
            session,
            staff_id=principal.user_id,
            case_id=case_id,
            final=body.final,
            narrative=body.narrative,
            request_id=request_id_var.get(),
        )
        return filing_out(done.filing, done.problems)
