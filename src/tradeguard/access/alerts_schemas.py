"""API bodies of the access alerts (pydantic v2, extra fields refused)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from tradeguard.access.alerts_models import AccessAlert
from tradeguard.access.anomalies import AlertStatus, AnomalyRule, Severity
from tradeguard.core.clock import ns_to_iso

UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
Uuid = Annotated[str, Field(min_length=36, max_length=36, pattern=UUID_PATTERN)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AlertQuery(Strict):
    """Filters of the alert list (query parameters; unknown ones are refused)."""

    status: AlertStatus | None = None
    rule: AnomalyRule | None = None
    severity: Severity | None = None
    staff_user_id: Uuid | None = None
    before: Uuid | None = Field(
        default=None, description="An alert id: list only older alerts (the next page)."
    )
    limit: int = Field(default=100, ge=1, le=500)


Note = Annotated[
    str,
    Field(
        min_length=3,
        max_length=2000,
        description="What was found: kept with the alert and in the audit ledger.",
    ),
]


class CloseIn(Strict):
    note: Note


class AlertOut(BaseModel):
    id: str
    rule: AnomalyRule
    severity: Severity
    staff_user_id: str
    window_start: str = Field(description="RFC 3339 UTC, nanoseconds.")
    window_end: str
    summary: str = Field(description="Counts and limits; no personal data.")
    evidence_seqs: list[int] = Field(description="Ledger sequence numbers (the newest 50).")
    occurrences: int = Field(description="Findings folded into this alert, the first included.")
    status: AlertStatus
    created_at: str
    acknowledged_by: str | None
    acknowledged_at: str | None
    closed_by: str | None
    closed_at: str | None
    note: str | None


def _iso(ns: int | None) -> str | None:
    return None if ns is None else ns_to_iso(ns)


def alert_out(row: AccessAlert) -> AlertOut:
    return AlertOut(
        id=row.id,
        rule=AnomalyRule(row.rule),
        severity=Severity(row.severity),
        staff_user_id=row.staff_user_id,
        window_start=ns_to_iso(row.window_start_ns),
        window_end=ns_to_iso(row.window_end_ns),
        summary=row.summary,
        evidence_seqs=list(row.evidence_seqs),
        occurrences=row.occurrences,
        status=AlertStatus(row.status),
        created_at=ns_to_iso(row.created_ns),
        acknowledged_by=row.acknowledged_by,
        acknowledged_at=_iso(row.acknowledged_ns),
        closed_by=row.closed_by,
        closed_at=_iso(row.closed_ns),
        note=row.note,
    )
