"""Surveillance API under /api/v1/surveillance (MAN-1, MAN-2, MAN-5): alerts with evidence,
cases, automatic actions and their policy, suspicious-activity report drafts, and the
beneficial-owner links with their kind and evidence (a derived one can be dismissed).

Compliance reads them (`compliance:surveillance`, reports `compliance:report`), works cases
(`compliance:cases`) and reverses actions or sets the policy (`compliance:actions`); nobody
else, the customers they are about included, learns that an alert, a case or a report
exists. (Nothing here goes to the customer's access log: telling a customer about a
suspicious-activity report is what the SAR rule forbids.)
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import PlainTextResponse

from tradeguard.access.domain import Permission
from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.core.context import request_id_var
from tradeguard.core.errors import InvalidInput
from tradeguard.identity.guard import CurrentPrincipal, guarded, problems
from tradeguard.ledger.domain import Party
from tradeguard.surveillance import sar
from tradeguard.surveillance.container import SurveillanceServices
from tradeguard.surveillance.domain import ActionRule, AlertCommand
from tradeguard.surveillance.repository import ActionFilter, AlertFilter, CaseFilter
from tradeguard.surveillance.schemas import (
    UUID_PATTERN,
    ActionOut,
    ActionQuery,
    AlertOut,
    AlertQuery,
    AlertStatusIn,
    AssignIn,
    CaseAlertRemoveIn,
    CaseAlertsIn,
    CaseIn,
    CaseOut,
    CaseQuery,
    CloseIn,
    DismissIn,
    EscalateIn,
    FiledIn,
    LinkOut,
    LinkQuery,
    NoteIn,
    PolicyIn,
    PolicyOut,
    ReportQuery,
    ReportSummaryOut,
    ReverseIn,
    action_out,
    alert_out,
    case_out,
    link_out,
    policy_out,
    report_summary,
)

router = APIRouter(prefix="/api/v1/surveillance", tags=["surveillance"])

AlertId = Annotated[str, Path(min_length=36, max_length=36, pattern=UUID_PATTERN)]
CaseId = Annotated[str, Path(min_length=36, max_length=36, pattern=UUID_PATTERN)]
ActionId = Annotated[str, Path(min_length=36, max_length=36, pattern=UUID_PATTERN)]
LinkId = Annotated[str, Path(min_length=36, max_length=36, pattern=UUID_PATTERN)]


def _surveillance(request: Request) -> SurveillanceServices:
    services: SurveillanceServices = request.app.state.surveillance
    return services


@router.get("/alerts", **guarded(Permission.COMPLIANCE_SURVEILLANCE))
async def list_surveillance_alerts(
    request: Request, filters: Annotated[AlertQuery, Query()]
) -> list[AlertOut]:
    """Surveillance alerts, newest first, filtered by type, model, symbol, owner or account."""
    services = _surveillance(request)
    where = AlertFilter(
        alert_type=filters.alert_type.value if filters.alert_type else None,
        detector=filters.detector.value if filters.detector else None,
        symbol=filters.symbol,
        owner=filters.owner,
        account_id=filters.account_id,
        before_id=filters.before,
        limit=filters.limit,
        status=filters.status.value if filters.status else None,
    )
    async with services.unit_of_work() as session:
        rows = await services.alerts.search(session, where)
        return [alert_out(row) for row in rows]


async def _alert_step(
    request: Request, alert_id: str, command: AlertCommand, reason: str, principal: object
) -> AlertOut:
    services = _surveillance(request)
    async with services.unit_of_work() as session:
        row = await services.alerts.change_status(
            session,
            alert_id=alert_id,
            command=command,
            reason=reason,
            actor=_staff(principal),
            request_id=request_id_var.get(),
        )
        return alert_out(row)


@router.post(
    "/alerts/{alert_id}/dismiss",
    responses=problems(404, 409),
    **guarded(Permission.COMPLIANCE_CASES),
)
async def dismiss_surveillance_alert(
    alert_id: AlertId, body: AlertStatusIn, request: Request, principal: CurrentPrincipal
) -> AlertOut:
    """Dismiss an alert outside a case (new or escalated), with the reason (audited)."""
    return await _alert_step(request, alert_id, AlertCommand.DISMISS, body.reason, principal)


@router.post(
    "/alerts/{alert_id}/escalate",
    responses=problems(404, 409),
    **guarded(Permission.COMPLIANCE_CASES),
)
async def escalate_surveillance_alert(
    alert_id: AlertId, body: AlertStatusIn, request: Request, principal: CurrentPrincipal
) -> AlertOut:
    """Escalate a new alert for a senior review, with the reason (audited)."""
    return await _alert_step(request, alert_id, AlertCommand.ESCALATE, body.reason, principal)


@router.post(
    "/alerts/{alert_id}/reopen",
    responses=problems(404, 409),
    **guarded(Permission.COMPLIANCE_CASES),
)
async def reopen_surveillance_alert(
    alert_id: AlertId, body: AlertStatusIn, request: Request, principal: CurrentPrincipal
) -> AlertOut:
    """Reopen a dismissed alert (it is new again), with the reason (audited)."""
    return await _alert_step(request, alert_id, AlertCommand.REOPEN, body.reason, principal)


@router.get("/alerts/{alert_id}", **guarded(Permission.COMPLIANCE_SURVEILLANCE))
async def get_surveillance_alert(alert_id: AlertId, request: Request) -> AlertOut:
    """One alert with its evidence: orders, executions and the book around them."""
    services = _surveillance(request)
    async with services.unit_of_work() as session:
        return alert_out(await services.alerts.get(session, alert_id))


def _staff(principal: object) -> Party:
    return Party("staff", principal.user_id)  # type: ignore[attr-defined]


def _ns(moment: datetime | None) -> int | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise InvalidInput("detected_at needs a time zone (e.g. 2026-01-05T15:00:00Z)")
    return int(moment.timestamp()) * NS_PER_SECOND + moment.microsecond * 1000


# Cases -----------------------------------------------------------------------------------


@router.post(
    "/cases", status_code=201, responses=problems(409), **guarded(Permission.COMPLIANCE_CASES)
)
async def open_surveillance_case(
    body: CaseIn, request: Request, principal: CurrentPrincipal
) -> CaseOut:
    """Open a case from alerts (each alert is in at most one case)."""
    services = _surveillance(request)
    async with services.unit_of_work() as session:
        row = await services.cases.open(
            session,
            alert_ids=body.alert_ids,
            title=body.title,
            actor=_staff(principal),
            request_id=request_id_var.get(),
        )
        return case_out(row, await services.cases.get(session, row.id))


@router.get("/cases", **guarded(Permission.COMPLIANCE_SURVEILLANCE))
async def list_surveillance_cases(
    request: Request, filters: Annotated[CaseQuery, Query()]
) -> list[CaseOut]:
    """Cases, newest first, by status or assignee."""
    services = _surveillance(request)
    where = CaseFilter(
        status=filters.status.value if filters.status else None,
        assignee=filters.assignee,
        before_id=filters.before,
        limit=filters.limit,
    )
    async with services.unit_of_work() as session:
        return [case_out(row) for row in await services.cases.search(session, where)]


@router.get("/cases/{case_id}", **guarded(Permission.COMPLIANCE_SURVEILLANCE))
async def get_surveillance_case(case_id: CaseId, request: Request) -> CaseOut:
    """One case with its alerts and its timeline (each line names its ledger event)."""
    services = _surveillance(request)
    async with services.unit_of_work() as session:
        view = await services.cases.get(session, case_id)
        return case_out(view.case, view)


async def _case_step(request: Request, case_id: str, step: object) -> CaseOut:
    services = _surveillance(request)
    async with services.unit_of_work() as session:
        await step(services, session)  # type: ignore[operator]
        view = await services.cases.get(session, case_id)
        return case_out(view.case, view)


@router.post(
    "/cases/{case_id}/alerts", responses=problems(409), **guarded(Permission.COMPLIANCE_CASES)
)
async def add_surveillance_case_alerts(
    case_id: CaseId, body: CaseAlertsIn, request: Request, principal: CurrentPrincipal
) -> CaseOut:
    """Add alerts to a live case."""
    return await _case_step(
        request,
        case_id,
        lambda services, session: services.cases.add_alerts(
            session,
            case_id=case_id,
            alert_ids=body.alert_ids,
            actor=_staff(principal),
            request_id=request_id_var.get(),
        ),
    )


@router.post(
    "/cases/{case_id}/alerts/remove",
    responses=problems(409),
    **guarded(Permission.COMPLIANCE_CASES),
)
async def remove_surveillance_case_alert(
    case_id: CaseId, body: CaseAlertRemoveIn, request: Request, principal: CurrentPrincipal
) -> CaseOut:
    """Take an alert out of a live case, with a reason (a case keeps at least one)."""
    return await _case_step(
        request,
        case_id,
        lambda services, session: services.cases.remove_alert(
            session,
            case_id=case_id,
            alert_id=body.alert_id,
            reason=body.reason,
            actor=_staff(principal),
            request_id=request_id_var.get(),
        ),
    )


@router.post(
    "/cases/{case_id}/assign", responses=problems(409), **guarded(Permission.COMPLIANCE_CASES)
)
async def assign_surveillance_case(
    case_id: CaseId, body: AssignIn, request: Request, principal: CurrentPrincipal
) -> CaseOut:
    """Assign (or reassign) a live case to a compliance user."""
    return await _case_step(
        request,
        case_id,
        lambda services, session: services.cases.assign(
            session,
            case_id=case_id,
            assignee=body.assignee,
            actor=_staff(principal),
            request_id=request_id_var.get(),
        ),
    )


@router.post(
    "/cases/{case_id}/notes",
    status_code=201,
    responses=problems(409),
    **guarded(Permission.COMPLIANCE_CASES),
)
async def annotate_surveillance_case(
    case_id: CaseId, body: NoteIn, request: Request, principal: CurrentPrincipal
) -> CaseOut:
    """Add a note to a live case's timeline."""
    return await _case_step(
        request,
        case_id,
        lambda services, session: services.cases.note(
            session,
            case_id=case_id,
            text=body.text,
            actor=_staff(principal),
            request_id=request_id_var.get(),
        ),
    )


@router.post(
    "/cases/{case_id}/escalate", responses=problems(409), **guarded(Permission.COMPLIANCE_CASES)
)
async def escalate_surveillance_case(
    case_id: CaseId, body: EscalateIn, request: Request, principal: CurrentPrincipal
) -> CaseOut:
    """Escalate an assigned case for a senior review."""
    return await _case_step(
        request,
        case_id,
        lambda services, session: services.cases.escalate(
            session,
            case_id=case_id,
            reason=body.reason,
            actor=_staff(principal),
            request_id=request_id_var.get(),
        ),
    )


@router.post(
    "/cases/{case_id}/close", responses=problems(409), **guarded(Permission.COMPLIANCE_CASES)
)
async def close_surveillance_case(
    case_id: CaseId, body: CloseIn, request: Request, principal: CurrentPrincipal
) -> CaseOut:
    """Close a case with a disposition; restricted and reported need an escalated case,
    closed by another compliance officer than the one who escalated it (409
    second-reviewer-required); reported drafts the suspicious-activity report."""
    detected = _ns(body.detected_at)
    return await _case_step(
        request,
        case_id,
        lambda services, session: services.cases.close(
            session,
            case_id=case_id,
            disposition=body.disposition,
            reason=body.reason,
            detected_ns=detected,
            suspect_identified=body.suspect_identified,
            actor=_staff(principal),
            request_id=request_id_var.get(),
        ),
    )


# Reports ---------------------------------------------------------------------------------


@router.get("/reports", **guarded(Permission.COMPLIANCE_REPORT))
async def list_surveillance_reports(
    request: Request, filters: Annotated[ReportQuery, Query()]
) -> list[ReportSummaryOut]:
    """Suspicious-activity report drafts by due date; `overdue=true`: past due, not filed."""
    services = _surveillance(request)
    async with services.unit_of_work() as session:
        rows = await services.cases.reports(session, overdue=filters.overdue, limit=filters.limit)
        now = services.cases.now_ns()
        return [report_summary(row, now) for row in rows]


@router.get("/cases/{case_id}/report", **guarded(Permission.COMPLIANCE_REPORT))
async def get_surveillance_report(case_id: CaseId, request: Request) -> dict[str, object]:
    """The case's suspicious-activity report draft, machine-readable (JSON)."""
    services = _surveillance(request)
    async with services.unit_of_work() as session:
        row = await services.cases.report(session, case_id)
        return dict(row.draft)


@router.get(
    "/cases/{case_id}/report.md",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/markdown": {"schema": {"type": "string"}}}}},
    **guarded(Permission.COMPLIANCE_REPORT),
)
async def get_surveillance_report_document(case_id: CaseId, request: Request) -> PlainTextResponse:
    """The same draft as a document a person reads (Markdown)."""
    services = _surveillance(request)
    async with services.unit_of_work() as session:
        row = await services.cases.report(session, case_id)
        text = sar.render_markdown(row.draft)
    return PlainTextResponse(text, media_type="text/markdown; charset=utf-8")


@router.post(
    "/cases/{case_id}/report/filed",
    responses=problems(409),
    **guarded(Permission.COMPLIANCE_CASES),
)
async def record_surveillance_report_filed(
    case_id: CaseId, body: FiledIn, request: Request, principal: CurrentPrincipal
) -> ReportSummaryOut:
    """Record that the report was filed, with the filing's reference."""
    services = _surveillance(request)
    async with services.unit_of_work() as session:
        row = await services.cases.file_report(
            session,
            case_id=case_id,
            reference=body.reference,
            actor=_staff(principal),
            request_id=request_id_var.get(),
        )
        return report_summary(row, services.cases.now_ns())


# Actions and their policy ----------------------------------------------------------------


@router.get("/actions", **guarded(Permission.COMPLIANCE_SURVEILLANCE))
async def list_surveillance_actions(
    request: Request, filters: Annotated[ActionQuery, Query()]
) -> list[ActionOut]:
    """Automatic actions, newest first, by account, alert or status."""
    services = _surveillance(request)
    where = ActionFilter(
        account_id=filters.account_id,
        alert_id=filters.alert_id,
        status=filters.status.value if filters.status else None,
        before_id=filters.before,
        limit=filters.limit,
    )
    async with services.unit_of_work() as session:
        return [action_out(row) for row in await services.actions.search(session, where)]


@router.post(
    "/actions/{action_id}/reverse",
    responses=problems(409),
    **guarded(Permission.COMPLIANCE_ACTIONS),
)
async def reverse_surveillance_action(
    action_id: ActionId, body: ReverseIn, request: Request, principal: CurrentPrincipal
) -> ActionOut:
    """Reverse an automatic action with a reason: the account's status goes back."""
    services = _surveillance(request)
    async with services.unit_of_work() as session:
        row = await services.actions.reverse(
            session,
            action_id=action_id,
            reason=body.reason,
            actor=_staff(principal),
            request_id=request_id_var.get(),
        )
        return action_out(row)


@router.get("/policy", **guarded(Permission.COMPLIANCE_SURVEILLANCE))
async def get_surveillance_policy(request: Request) -> PolicyOut:
    """The automatic action policy: alert type and score threshold to action."""
    services = _surveillance(request)
    async with services.unit_of_work() as session:
        return policy_out(await services.actions.policy(session))


@router.put("/policy", **guarded(Permission.COMPLIANCE_ACTIONS))
async def set_surveillance_policy(
    body: PolicyIn, request: Request, principal: CurrentPrincipal
) -> PolicyOut:
    """Replace the automatic action policy (audited with the old and new rules)."""
    services = _surveillance(request)
    async with services.unit_of_work() as session:
        rules = await services.actions.set_policy(
            session,
            rules=[ActionRule(r.alert_type, r.min_score, r.action) for r in body.rules],
            reason=body.reason,
            actor=_staff(principal),
            request_id=request_id_var.get(),
        )
        return policy_out(rules)


# Beneficial-owner links ------------------------------------------------------------------


@router.get("/links", **guarded(Permission.COMPLIANCE_SURVEILLANCE))
async def list_surveillance_links(
    request: Request, filters: Annotated[LinkQuery, Query()]
) -> list[LinkOut]:
    """Beneficial-owner links, newest first, with their kind, status and evidence."""
    services = _surveillance(request)
    async with services.unit_of_work() as session:
        rows = await services.links.all(
            session,
            kind=filters.kind.value if filters.kind else None,
            status=filters.status.value if filters.status else None,
            before_id=filters.before,
            limit=filters.limit,
        )
        return [link_out(row) for row in rows]


@router.post(
    "/links/{link_id}/dismiss",
    responses=problems(409),
    **guarded(Permission.COMPLIANCE_CASES),
)
async def dismiss_surveillance_link(
    link_id: LinkId, body: DismissIn, request: Request, principal: CurrentPrincipal
) -> LinkOut:
    """Dismiss a derived link as a false positive, with a reason (audited): its owners are
    judged apart again from the stream's next pass, and it is never derived again."""
    services = _surveillance(request)
    async with services.unit_of_work() as session:
        row = await services.links.dismiss(
            session,
            link_id=link_id,
            reason=body.reason,
            actor=_staff(principal),
            request_id=request_id_var.get(),
        )
        return link_out(row)
