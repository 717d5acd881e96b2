"""API bodies of market surveillance (pydantic v2, extra fields refused)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from tradeguard.core.clock import ns_to_iso
from tradeguard.surveillance.cases import CaseView
from tradeguard.surveillance.domain import (
    ActionKind,
    ActionRule,
    ActionStatus,
    AlertStatus,
    AlertType,
    CaseStatus,
    Detector,
    Disposition,
)
from tradeguard.surveillance.linkage import LinkKind, LinkStatus
from tradeguard.surveillance.models import (
    SurveillanceAction,
    SurveillanceAlert,
    SurveillanceCase,
    SurveillanceLink,
    SurveillanceReport,
)

UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
Uuid = Annotated[str, Field(min_length=36, max_length=36, pattern=UUID_PATTERN)]
Symbol = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9.]{0,11}$", examples=["AAPL"])]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AlertQuery(Strict):
    """Filters of the alert list (query parameters; unknown ones are refused)."""

    alert_type: AlertType | None = None
    detector: Detector | None = Field(default=None, description="MAN-1, MAN-2, MAN-3 or MAN-4.")
    symbol: Symbol | None = None
    owner: Uuid | None = Field(default=None, description="A beneficial owner (a user id).")
    account_id: Uuid | None = Field(default=None, description="Alerts naming this account.")
    status: AlertStatus | None = Field(
        default=None, description="new, in_case, dismissed or escalated."
    )
    before: Uuid | None = Field(
        default=None, description="An alert id: list only older alerts (the next page)."
    )
    limit: int = Field(default=100, ge=1, le=500)


class AlertStatusIn(Strict):
    reason: Annotated[str, Field(min_length=3, max_length=1000, description="Why (audited).")]


class OrderDetail(BaseModel):
    """An order behind an alert, as the stream saw it at the finding."""

    order_id: str
    account_id: str | None = None
    side: str | None = Field(default=None, description="buy or sell.")
    price: str | None = Field(default=None, description="The limit price, or market.")
    quantity: int | None = None
    filled_quantity: int | None = None
    time: str | None = Field(default=None, description="Placed at (RFC 3339 UTC, ns).")
    status: str | None = Field(
        default=None,
        description="working, partially_filled, filled, cancelled (reason), replaced, expired.",
    )


class ExecutionDetail(BaseModel):
    """An execution behind an alert."""

    execution_id: str
    order_id: str | None = None
    account_id: str | None = None
    side: str | None = None
    price: str | None = None
    quantity: int | None = None
    time: str | None = Field(default=None, description="Executed at (RFC 3339 UTC, ns).")
    liquidity: str | None = Field(default=None, description="maker or taker.")
    counterparty: str | None = Field(
        default=None,
        description="street, or the other customer's account number masked (TG******78).",
    )


def _details(evidence: dict[str, Any], key: str, model: type[BaseModel]) -> list[Any]:
    rows = evidence.get(key)
    if not isinstance(rows, list):
        return []
    return [model.model_validate(r) for r in rows if isinstance(r, dict)]


class AlertOut(BaseModel):
    id: str
    alert_type: AlertType
    detector: Detector
    status: AlertStatus
    symbol: str
    owner: str = Field(description="The beneficial owner: a user id (a linked group's first).")
    accounts: list[str]
    score: int = Field(description="0-100: 50 at the model's thresholds, more beyond them.")
    summary: str = Field(description="Quantities, prices and ratios; no personal data.")
    window_start: str = Field(description="RFC 3339 UTC, nanoseconds.")
    window_end: str
    first_trigger_seq: int = Field(description="The ledger event that completed the pattern.")
    latest_trigger_seq: int
    occurrences: int = Field(description="Findings folded into this alert, the first included.")
    order_ids: list[str]
    execution_ids: list[str]
    evidence: dict[str, Any] = Field(
        description="The model's figures and a reconstruction of the customer book."
    )
    orders: list[OrderDetail] = Field(
        description="The orders behind the alert: side, price, quantity, time, status."
    )
    executions: list[ExecutionDetail] = Field(
        description="The executions behind the alert: price, quantity, time, counterparty."
    )
    latency_ms: float = Field(description="From the triggering ledger event to the alert.")
    created_at: str
    updated_at: str


def alert_out(row: SurveillanceAlert) -> AlertOut:
    return AlertOut(
        id=row.id,
        alert_type=AlertType(row.alert_type),
        detector=Detector(row.detector),
        status=AlertStatus(row.status),
        symbol=row.symbol,
        owner=row.owner,
        accounts=list(row.accounts),
        score=row.score,
        summary=row.summary,
        window_start=ns_to_iso(row.window_start_ns),
        window_end=ns_to_iso(row.window_end_ns),
        first_trigger_seq=row.first_trigger_seq,
        latest_trigger_seq=row.latest_trigger_seq,
        occurrences=row.occurrences,
        order_ids=list(row.order_ids),
        execution_ids=list(row.execution_ids),
        evidence=dict(row.evidence),
        orders=_details(row.evidence, "orders", OrderDetail),
        executions=_details(row.evidence, "executions", ExecutionDetail),
        latency_ms=round(row.latency_ns / 1e6, 3),
        created_at=ns_to_iso(row.created_ns),
        updated_at=ns_to_iso(row.updated_ns),
    )


# Cases ---------------------------------------------------------------------------------------

Reason = Annotated[str, Field(min_length=3, max_length=1000, description="Why (audited).")]


class CaseIn(Strict):
    alert_ids: list[Uuid] = Field(min_length=1, max_length=50)
    title: str = Field(min_length=3, max_length=200)


class CaseAlertsIn(Strict):
    alert_ids: list[Uuid] = Field(min_length=1, max_length=50)


class CaseAlertRemoveIn(Strict):
    alert_id: Uuid
    reason: Reason


class AssignIn(Strict):
    assignee: Uuid = Field(description="A compliance user's id.")


class NoteIn(Strict):
    text: str = Field(min_length=3, max_length=1000)


class EscalateIn(Strict):
    reason: Reason


class CloseIn(Strict):
    disposition: Disposition
    reason: Reason
    detected_at: datetime | None = Field(
        default=None,
        description="reported only: the initial detection (default: the first alert's time).",
    )
    suspect_identified: bool = Field(
        default=True,
        description=(
            "reported only: false extends the deadline to 60 days; refused (422) when an "
            "account of the case's alerts has a known owner (a suspect is identified)."
        ),
    )


class FiledIn(Strict):
    reference: str = Field(min_length=3, max_length=100, description="The filing's reference.")


class CaseQuery(Strict):
    status: CaseStatus | None = None
    assignee: Uuid | None = None
    before: Uuid | None = None
    limit: int = Field(default=100, ge=1, le=500)


class TimelineEntryOut(BaseModel):
    at: str
    kind: str
    actor: str
    detail: dict[str, Any]
    event_id: str = Field(description="The ledger event that audits this step.")


class CaseOut(BaseModel):
    id: str
    title: str
    status: CaseStatus
    assignee: str | None
    disposition: Disposition | None
    created_by: str
    created_at: str
    updated_at: str
    closed_at: str | None
    alert_ids: list[str] | None = None
    timeline: list[TimelineEntryOut] | None = None
    report_id: str | None = None


def case_out(row: SurveillanceCase, view: CaseView | None = None) -> CaseOut:
    return CaseOut(
        id=row.id,
        title=row.title,
        status=CaseStatus(row.status),
        assignee=row.assignee,
        disposition=Disposition(row.disposition) if row.disposition else None,
        created_by=row.created_by,
        created_at=ns_to_iso(row.created_ns),
        updated_at=ns_to_iso(row.updated_ns),
        closed_at=ns_to_iso(row.closed_ns) if row.closed_ns is not None else None,
        alert_ids=view.alert_ids if view else None,
        timeline=[
            TimelineEntryOut(
                at=ns_to_iso(e.created_ns),
                kind=e.kind,
                actor=e.actor,
                detail=dict(e.detail),
                event_id=e.event_id,
            )
            for e in view.timeline
        ]
        if view
        else None,
        report_id=view.report.id if view and view.report else None,
    )


class ReportSummaryOut(BaseModel):
    id: str
    case_id: str
    status: str
    due_date: str
    detected_at: str
    suspect_identified: bool
    overdue: bool
    filed_at: str | None
    filing_reference: str | None
    total_amount: str


def report_summary(row: SurveillanceReport, now_ns: int) -> ReportSummaryOut:
    return ReportSummaryOut(
        id=row.id,
        case_id=row.case_id,
        status=str(row.draft.get("status", "draft")),
        due_date=str(row.draft["filing"]["due_date"]),
        detected_at=ns_to_iso(row.detected_ns),
        suspect_identified=row.suspect_identified,
        overdue=row.filed_ns is None and now_ns >= row.due_ns,
        filed_at=ns_to_iso(row.filed_ns) if row.filed_ns is not None else None,
        filing_reference=row.filing_reference,
        total_amount=str(row.draft["activity"]["total_amount"]),
    )


class ReportQuery(Strict):
    overdue: bool = Field(default=False, description="Only reports past due and not filed.")
    limit: int = Field(default=100, ge=1, le=500)


# Actions -------------------------------------------------------------------------------------


class ActionQuery(Strict):
    account_id: Uuid | None = None
    alert_id: Uuid | None = None
    status: ActionStatus | None = None
    before: Uuid | None = None
    limit: int = Field(default=100, ge=1, le=500)


class ActionOut(BaseModel):
    id: str
    alert_id: str
    account_id: str
    action: ActionKind
    status: ActionStatus
    rule: dict[str, Any]
    detail: dict[str, Any]
    applied_at: str
    reversed_by: str | None
    reversed_at: str | None
    reverse_reason: str | None


def action_out(row: SurveillanceAction) -> ActionOut:
    return ActionOut(
        id=row.id,
        alert_id=row.alert_id,
        account_id=row.account_id,
        action=ActionKind(row.action),
        status=ActionStatus(row.status),
        rule=dict(row.rule),
        detail=dict(row.detail),
        applied_at=ns_to_iso(row.applied_ns),
        reversed_by=row.reversed_by,
        reversed_at=ns_to_iso(row.reversed_ns) if row.reversed_ns is not None else None,
        reverse_reason=row.reverse_reason,
    )


class ReverseIn(Strict):
    reason: Reason


class RuleIo(Strict):
    alert_type: AlertType
    min_score: int = Field(ge=0, le=100)
    action: ActionKind


class PolicyIn(Strict):
    rules: list[RuleIo] = Field(max_length=50)
    reason: Reason


class PolicyOut(BaseModel):
    rules: list[RuleIo]


def policy_out(rules: list[ActionRule]) -> PolicyOut:
    return PolicyOut(
        rules=[
            RuleIo(alert_type=r.alert_type, min_score=r.min_score, action=r.action) for r in rules
        ]
    )


# Beneficial-owner links --------------------------------------------------------------------


class LinkQuery(Strict):
    kind: LinkKind | None = None
    status: LinkStatus | None = None
    before: Uuid | None = Field(
        default=None, description="A link id: list only older links (the next page)."
    )
    limit: int = Field(default=100, ge=1, le=500)


class LinkOut(BaseModel):
    id: str
    kind: LinkKind
    status: LinkStatus
    account_a: str | None = Field(description="Between two accounts (manual, bank_account).")
    account_b: str | None
    user_a: str | None = Field(description="Between two users (device, network).")
    user_b: str | None
    reason: str
    evidence: dict[str, Any] = Field(
        description="What was shared, when and how often: keyed hashes and masked values."
    )
    created_by: str
    created_at: str
    dismissed_by: str | None
    dismissed_at: str | None
    dismiss_reason: str | None


def link_out(row: SurveillanceLink) -> LinkOut:
    return LinkOut(
        id=row.id,
        kind=LinkKind(row.kind),
        status=LinkStatus(row.status),
        account_a=row.account_a,
        account_b=row.account_b,
        user_a=row.user_a,
        user_b=row.user_b,
        reason=row.reason,
        evidence=dict(row.evidence or {}),
        created_by=row.created_by,
        created_at=ns_to_iso(row.created_ns),
        dismissed_by=row.dismissed_by,
        dismissed_at=ns_to_iso(row.dismissed_ns) if row.dismissed_ns is not None else None,
        dismiss_reason=row.dismiss_reason,
    )


class DismissIn(Strict):
    reason: Reason
