"""Access alert API under /api/v1/access/alerts (IAC-4): list, read, acknowledge, close.

Compliance reviews alerts (`compliance:audit`). Whoever an alert is about may read it but
not acknowledge or close it; the refusal is audited.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from tradeguard.access.alerts import Reviewer, SelfReviewRefused
from tradeguard.access.alerts_container import AccessAlertServices
from tradeguard.access.alerts_repository import AlertFilter
from tradeguard.access.alerts_schemas import UUID_PATTERN, AlertOut, AlertQuery, CloseIn, alert_out
from tradeguard.access.domain import Permission
from tradeguard.core.context import request_id_var
from tradeguard.identity.guard import CurrentPrincipal, guarded, problems
from tradeguard.ledger.domain import Party

router = APIRouter(prefix="/api/v1/access/alerts", tags=["access"])

AlertId = Annotated[str, Path(min_length=36, max_length=36, pattern=UUID_PATTERN)]


def _alerts(request: Request) -> AccessAlertServices:
    services: AccessAlertServices = request.app.state.access_alerts
    return services


def _reviewer(principal: CurrentPrincipal) -> Reviewer:
    return Reviewer(party=Party("staff", principal.user_id), user_id=principal.user_id)


@router.get("", **guarded(Permission.COMPLIANCE_AUDIT))
async def list_access_alerts(
    request: Request, filters: Annotated[AlertQuery, Query()]
) -> list[AlertOut]:
    """Access alerts, newest first, filtered by status, rule, severity or staff member."""
    services = _alerts(request)
    where = AlertFilter(
        status=filters.status.value if filters.status else None,
        rule=filters.rule.value if filters.rule else None,
        severity=filters.severity.value if filters.severity else None,
        staff_user_id=filters.staff_user_id,
        before_id=filters.before,
        limit=filters.limit,
    )
    async with services.unit_of_work() as session:
        rows = await services.desk.search(session, where)
        return [alert_out(row) for row in rows]


@router.get("/{alert_id}", **guarded(Permission.COMPLIANCE_AUDIT))
async def get_access_alert(alert_id: AlertId, request: Request) -> AlertOut:
    """One alert with its evidence (ledger sequence numbers)."""
    services = _alerts(request)
    async with services.unit_of_work() as session:
        return alert_out(await services.desk.get(session, alert_id))


async def _refuse_self_review(
    services: AccessAlertServices, alert_id: str, reviewer: Reviewer
) -> None:
    # The review's transaction rolled back; the refusal is recorded on its own.
    async with services.unit_of_work() as session:
        await services.desk.refused_self_review(
            session, alert_id, reviewer=reviewer, request_id=request_id_var.get()
        )


@router.post(
    "/{alert_id}/acknowledge",
    responses=problems(409),
    **guarded(Permission.COMPLIANCE_AUDIT),
)
async def acknowledge_access_alert(
    alert_id: AlertId, request: Request, principal: CurrentPrincipal
) -> AlertOut:
    """Take an open alert into review (it stays live until closed)."""
    services = _alerts(request)
    reviewer = _reviewer(principal)
    try:
        async with services.unit_of_work() as session:
            row = await services.desk.acknowledge(
                session, alert_id, reviewer=reviewer, request_id=request_id_var.get()
            )
            return alert_out(row)
    except SelfReviewRefused:
        await _refuse_self_review(services, alert_id, reviewer)
        raise


@router.post(
    "/{alert_id}/close",
    responses=problems(409),
    **guarded(Permission.COMPLIANCE_AUDIT),
)
async def close_access_alert(
    alert_id: AlertId, body: CloseIn, request: Request, principal: CurrentPrincipal
) -> AlertOut:
    """Close an alert with a note saying what was found."""
    services = _alerts(request)
    reviewer = _reviewer(principal)
    try:
        async with services.unit_of_work() as session:
            row = await services.desk.close(
                session,
                alert_id,
                reviewer=reviewer,
                note=body.note,
                request_id=request_id_var.get(),
            )
            return alert_out(row)
    except SelfReviewRefused:
        await _refuse_self_review(services, alert_id, reviewer)
        raise
