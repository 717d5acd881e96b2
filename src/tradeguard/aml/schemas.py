"""API request and response bodies for AML (pydantic v2, extra fields refused). Amounts
travel as decimal strings; accounts in alert facts are masked."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Id = Annotated[str, Field(min_length=36, max_length=36, pattern=r"^[0-9a-f-]{36}$")]
MovementId = Annotated[
    str,
    Field(
        min_length=8,
        max_length=60,
        pattern=r"^(deposit|withdrawal|return|execution):[0-9A-Za-z-]{1,48}$",
    ),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AlertOut(Strict):
    id: str
    rule: str
    user_id: str
    window: str
    score: int
    status: str
    summary: str
    facts: dict[str, Any]
    movement_ids: list[str]
    occurrences: int
    window_start: str
    window_end: str
    case_id: str | None
    created_at: str
    updated_at: str


class CtrOut(Strict):
    id: str
    user_id: str
    day: str
    direction: str
    total: str
    accounts: list[str]
    movement_ids: list[str]
    status: str
    due_day: str
    amended: bool
    created_at: str


class OpenCaseIn(Strict):
    alert_ids: Annotated[list[Id], Field(min_length=1, max_length=100)]
    suspect_identified: bool = True
    assignee: Id | None = None


class AssignIn(Strict):
    assignee: Id


class NoteIn(Strict):
    text: Annotated[str, Field(min_length=1, max_length=4000)]


class AttachIn(Strict):
    movement_ids: Annotated[list[MovementId], Field(min_length=1, max_length=500)]


class DecideIn(Strict):
    decision: Literal["sar", "no_sar"]
    reason: Annotated[str, Field(min_length=1, max_length=2000)]


class ExportIn(Strict):
    final: bool = False
    narrative: Annotated[str | None, Field(max_length=10_000)] = None


class ReadIn(Strict):
    """Why the filing's document is read: recorded in the ledger."""

    reason: Annotated[str, Field(min_length=5, max_length=500)]


class NoteOut(Strict):
    id: str
    author: str
    text: str
    created_at: str


class MovementOut(Strict):
    id: str
    kind: str
    account: str
    rail: str | None
    amount: str
    symbol: str | None
    day: str
    at: str


class FilingOut(Strict):
    id: str
    kind: str
    ref_id: str
    status: str
    missing: list[str]
    problems: list[str] = []
    sha256: str
    created_at: str


class CaseOut(Strict):
    id: str
    user_id: str
    status: str
    assignee: str | None
    opened_by: str
    detected_at: str
    suspect_identified: bool
    sar_due: str
    overdue: bool
    reminders_sent: list[int]
    max_score: int
    decision: str | None
    decision_reason: str | None
    first_decider: str | None
    decided_by: str | None
    created_at: str


class CaseDetailOut(CaseOut):
    alerts: list[AlertOut]
    movements: list[MovementOut]
    notes: list[NoteOut]
    filings: list[FilingOut]
