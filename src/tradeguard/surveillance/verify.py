"""Surveillance tables checked against the ledger (finding 6 of the #12 review).

Alerts, cases and automatic actions live in tables a database user can edit; each of their
changes is also a ledger event, and the ledger is hash-chained. The verification re-derives
from the chained events what every row must say, and reports each row that disagrees, each
row without an event, and each event whose row is gone:

- an alert: its type, owner, symbol, first and latest trigger, occurrences, status (raised:
  new; in a case: in_case; removed from it: new; dismissed, escalated, reopened), its order
  and execution ids, and its evidence (the digest each alert event records);
- a case: its status, assignee and disposition, its alerts, and its timeline (each case
  event has its entry, each entry its event, and each entry's contents, its kind, actor,
  detail (status, text or reason, ...) and time, are those of its event);
- an action: its alert, account, kind and status (applied, skipped, reversed).

Rows changed within `settle_ns` of now are not judged (their events may not be chained
yet). Read-only: the caller decides what to do with the result (`tradeguard surveillance
verify` prints it; the periodic job records a `surveillance:verify:mismatch` event and
mails compliance).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.core.clock import Clock
from tradeguard.ledger.domain import LedgerEvent, Party, scrubbed_data
from tradeguard.ledger.service import Ledger, events_of_types
from tradeguard.surveillance.actions import ActionDesk
from tradeguard.surveillance.domain import AlertStatus, CaseCommand
from tradeguard.surveillance.events import SurveillanceEvent
from tradeguard.surveillance.models import (
    SurveillanceAction,
    SurveillanceAlert,
    SurveillanceCase,
    SurveillanceCaseAlert,
    SurveillanceCaseEntry,
)
from tradeguard.surveillance.service import (
    ROW_DIGEST_FIELDS,
    alert_row_digest,
    evidence_digest,
    merged_ids,
)

log = logging.getLogger(__name__)

VERIFIER_PARTY = Party("system", "surveillance-verify")
MISMATCH_EVENT = SurveillanceEvent.VERIFY_MISMATCH
_CHUNK = 2000
_LAST_SEQ = 2**62
# At most this many mismatches go into the ledger event and the email (the count is whole).
MAX_REPORTED = 100

_E = SurveillanceEvent
_ALERT_TYPES = (
    _E.ALERT_RAISED,
    _E.ALERT_EXTENDED,
    _E.ALERT_DISMISSED,
    _E.ALERT_ESCALATED,
    _E.ALERT_REOPENED,
)
_CASE_TYPES = (
    _E.CASE_OPENED,
    _E.CASE_ALERT_ADDED,
    _E.CASE_ALERT_REMOVED,
    _E.CASE_ASSIGNED,
    _E.CASE_NOTE_ADDED,
    _E.CASE_ESCALATED,
    _E.CASE_CLOSED,
    _E.CASE_REPORT_FILED,
)
_ACTION_STATUS = {
    _E.ACTION_APPLIED.value: "applied",
    _E.ACTION_SKIPPED.value: "skipped",
    _E.ACTION_REVERSED.value: "reversed",
}
# The timeline entry kind of each case event (cases.py records both together).
_COMMAND_OF = {
    _E.CASE_OPENED.value: CaseCommand.OPEN.value,
    _E.CASE_ALERT_ADDED.value: CaseCommand.ADD_ALERT.value,
    _E.CASE_ALERT_REMOVED.value: CaseCommand.REMOVE_ALERT.value,
    _E.CASE_ASSIGNED.value: CaseCommand.ASSIGN.value,
    _E.CASE_NOTE_ADDED.value: CaseCommand.NOTE.value,
    _E.CASE_ESCALATED.value: CaseCommand.ESCALATE.value,
    _E.CASE_CLOSED.value: CaseCommand.CLOSE.value,
    _E.CASE_REPORT_FILED.value: CaseCommand.REPORT_FILED.value,
}
EVENT_TYPES = tuple(t.value for t in (*_ALERT_TYPES, *_CASE_TYPES)) + tuple(_ACTION_STATUS)


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One disagreement: the table, the row, what differs, the row's value and the
    ledger's (ids, statuses, counts and digests only: no personal data)."""

    table: str
    row_id: str
    field: str
    stored: Any
    derived: Any

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "row_id": self.row_id,
            "field": self.field,
            "stored": self.stored,
            "derived": self.derived,
        }

    def line(self) -> str:
        return (
            f"{self.table} {self.row_id}: {self.field} is {self.stored!r}, "
            f"the ledger says {self.derived!r}"
        )


@dataclass(slots=True)
class VerifyResult:
    events: int = 0
    alerts: int = 0
    cases: int = 0
    actions: int = 0
    # Rows changed within the settle time, not judged.
    unsettled: int = 0
    # Alerts whose events predate the row digest: their score, summary, accounts, window,
    # latency and creation time cannot be checked (not a mismatch; listed, never silent).
    unverifiable: list[str] = field(default_factory=list)
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches


@dataclass(slots=True)
class _Alert:
    fields: dict[str, Any]
    digest: str | None
    # The digest of the row's other decisive fields (service.ROW_DIGEST_FIELDS) the latest
    # raised / extended event recorded; None: an alert from before it (unverifiable).
    row_digest: str | None = None


@dataclass(slots=True)
class _Case:
    status: str
    assignee: str | None = None
    disposition: str | None = None
    alerts: set[str] = field(default_factory=set)
    event_ids: set[str] = field(default_factory=set)
    # From the `opened` event: its title and its actor (the row's `created_by`).
    title: str | None = None
    created_by: str | None = None


@dataclass(slots=True)
class Derived:
    """What the ledger says the tables hold."""

    alerts: dict[str, _Alert] = field(default_factory=dict)
    cases: dict[str, _Case] = field(default_factory=dict)
    # Each case event's timeline entry as it must read: kind, actor, detail, time.
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    actions: dict[str, dict[str, Any]] = field(default_factory=dict)


def derive(documents: Sequence[Mapping[str, Any]]) -> Derived:
    """The state the surveillance events (in chain order) leave. Pure."""
    found = Derived()
    for doc in documents:
        kind = doc.get("type")
        data = doc.get("data")
        if not isinstance(data, dict):
            continue
        if kind in _ACTION_STATUS:
            _action(found, kind, data)
        elif isinstance(kind, str) and kind.startswith("surveillance:alert:"):
            _alert(found, kind, data)
        elif isinstance(kind, str) and kind.startswith("surveillance:case:"):
            _case(found, kind, data, str(doc.get("id", "")))
            _entry(found, kind, doc, data)
            opened = found.cases.get(str(data.get("case_id")))
            if kind == _E.CASE_OPENED and opened is not None:
                entry = found.entries.get(str(doc.get("id", "")))
                opened.title = data.get("title")
                opened.created_by = entry["actor"] if entry is not None else None
    return found


def _entry(found: Derived, kind: str, doc: Mapping[str, Any], data: Mapping[str, Any]) -> None:
    """The timeline entry a case event must have (cases.CaseDesk._record writes both)."""
    command = _COMMAND_OF.get(kind)
    actor = doc.get("actor")
    if command is None or not isinstance(actor, dict):
        return
    try:
        created_ns = int(str(doc.get("ts")))
    except ValueError:
        created_ns = None
    found.entries[str(doc.get("id", ""))] = {
        "kind": command,
        "actor": f"{actor.get('kind')}:{actor.get('id')}"[:120],
        "detail": {k: v for k, v in data.items() if k != "case_id"},
        "created_ns": created_ns,
    }


def _alert(found: Derived, kind: str, data: Mapping[str, Any]) -> None:
    alert_id = str(data.get("alert_id"))
    if kind == _E.ALERT_RAISED:
        found.alerts[alert_id] = _Alert(
            fields={
                "alert_type": data.get("alert_type"),
                "owner": data.get("owner"),
                "symbol": data.get("symbol"),
                "first_trigger_seq": data.get("trigger_seq"),
                "latest_trigger_seq": data.get("trigger_seq"),
                "occurrences": 1,
                "status": AlertStatus.NEW.value,
                "order_ids": list(data.get("order_ids") or []),
                "execution_ids": list(data.get("execution_ids") or []),
            },
            digest=data.get("evidence_digest"),
            row_digest=data.get("row_digest"),
        )
        return
    alert = found.alerts.get(alert_id)
    if alert is None:
        return  # an event about an alert the ledger never raised: its row is judged alone
    if kind == _E.ALERT_EXTENDED:
        f = alert.fields
        f["occurrences"] += 1
        f["latest_trigger_seq"] = data.get("trigger_seq")
        f["order_ids"] = merged_ids(f["order_ids"], data.get("order_ids") or [])
        f["execution_ids"] = merged_ids(f["execution_ids"], data.get("execution_ids") or [])
        alert.digest = data.get("evidence_digest")
        alert.row_digest = data.get("row_digest")
    elif isinstance(data.get("status"), str):
        alert.fields["status"] = data["status"]


def _set_alert_status(found: Derived, alert_ids: Any, status: AlertStatus) -> None:
    for alert_id in alert_ids if isinstance(alert_ids, list) else [alert_ids]:
        alert = found.alerts.get(str(alert_id))
        if alert is not None:
            alert.fields["status"] = status.value


def _case(found: Derived, kind: str, data: Mapping[str, Any], event_id: str) -> None:
    case_id = str(data.get("case_id"))
    if kind == _E.CASE_OPENED:
        case = found.cases[case_id] = _Case(status=str(data.get("status")))
    else:
        existing = found.cases.get(case_id)
        if existing is None:
            return
        case = existing
    case.event_ids.add(event_id)
    if isinstance(data.get("status"), str):
        case.status = data["status"]
    if kind in (_E.CASE_OPENED, _E.CASE_ALERT_ADDED):
        ids = [str(a) for a in data.get("alert_ids") or []]
        case.alerts.update(ids)
        _set_alert_status(found, ids, AlertStatus.IN_CASE)
    elif kind == _E.CASE_ALERT_REMOVED:
        case.alerts.discard(str(data.get("alert_id")))
        _set_alert_status(found, str(data.get("alert_id")), AlertStatus.NEW)
    elif kind == _E.CASE_ASSIGNED:
        case.assignee = data.get("assignee")
    elif kind == _E.CASE_CLOSED:
        case.disposition = data.get("disposition")


def _action(found: Derived, kind: str, data: Mapping[str, Any]) -> None:
    action_id = str(data.get("action_id"))
    if kind == _E.ACTION_REVERSED:
        known = found.actions.get(action_id)
        if known is not None:
            known["status"] = "reversed"
            known["reverse_reason"] = data.get("reason")
        return
    found.actions[action_id] = {
        "alert_id": data.get("alert_id"),
        "account_id": data.get("account_id"),
        "action": data.get("action"),
        "status": _ACTION_STATUS[kind],
        "reverse_reason": None,
    }
    if isinstance(data.get("detail"), dict):
        found.actions[action_id]["detail"] = data["detail"]


def _compare(
    table: str, row_id: str, stored: Mapping[str, Any], derived: Mapping[str, Any]
) -> list[Mismatch]:
    return [
        Mismatch(table, row_id, name, stored.get(name), value)
        for name, value in derived.items()
        if stored.get(name) != value
    ]


class SurveillanceVerifier:
    """Checks the surveillance tables against the ledger; never commits."""

    def __init__(self, *, clock: Clock, ledger: Ledger, actions: ActionDesk | None = None) -> None:
        self._clock = clock
        self._ledger = ledger
        self._actions = actions

    async def verify(self, session: AsyncSession, *, settle_ns: int = 0) -> VerifyResult:
        documents: list[Mapping[str, Any]] = []
        first = 1
        while True:
            chunk = await events_of_types(
                session, EVENT_TYPES, first_seq=first, through_seq=_LAST_SEQ, limit=_CHUNK
            )
            documents.extend(e.document for e in chunk)
            if len(chunk) < _CHUNK:
                break
            first = chunk[-1].seq + 1
        derived = derive(documents)
        result = VerifyResult(events=len(documents))
        horizon = self._clock.now_ns() - settle_ns
        await self._alerts(session, derived, result, horizon)
        await self._cases(session, derived, result, horizon)
        await self._actions_rows(session, derived, result, horizon)
        return result

    async def _alerts(
        self, session: AsyncSession, derived: Derived, result: VerifyResult, horizon: int
    ) -> None:
        rows = (await session.execute(select(SurveillanceAlert))).scalars().all()
        seen: set[str] = set()
        for row in rows:
            seen.add(row.id)
            if row.updated_ns > horizon:
                result.unsettled += 1
                continue
            result.alerts += 1
            expected = derived.alerts.get(row.id)
            if expected is None:
                result.mismatches.append(
                    Mismatch("surveillance_alerts", row.id, "row", "present", "no event")
                )
                continue
            stored = {name: getattr(row, name) for name in expected.fields}
            stored["order_ids"] = list(row.order_ids)
            stored["execution_ids"] = list(row.execution_ids)
            result.mismatches.extend(
                _compare("surveillance_alerts", row.id, stored, expected.fields)
            )
            if expected.row_digest is None:
                result.unverifiable.append(row.id)
            elif alert_row_digest(row) != expected.row_digest:
                result.mismatches.append(
                    Mismatch(
                        "surveillance_alerts",
                        row.id,
                        "row_digest (" + ", ".join(ROW_DIGEST_FIELDS) + ")",
                        alert_row_digest(row),
                        expected.row_digest,
                    )
                )
            if expected.digest is not None:
                digest = evidence_digest(row.evidence)
                if digest != expected.digest:
                    result.mismatches.append(
                        Mismatch("surveillance_alerts", row.id, "evidence", digest, expected.digest)
                    )
        for alert_id in sorted(set(derived.alerts) - seen):
            result.mismatches.append(
                Mismatch("surveillance_alerts", alert_id, "row", "missing", "raised")
            )

    async def _cases(
        self, session: AsyncSession, derived: Derived, result: VerifyResult, horizon: int
    ) -> None:
        rows = (await session.execute(select(SurveillanceCase))).scalars().all()
        members: dict[str, set[str]] = {}
        for link in (await session.execute(select(SurveillanceCaseAlert))).scalars().all():
            members.setdefault(link.case_id, set()).add(link.alert_id)
        entries: dict[str, set[str]] = {}
        for entry in (await session.execute(select(SurveillanceCaseEntry))).scalars().all():
            entries.setdefault(entry.case_id, set()).add(entry.event_id)
            event = derived.entries.get(entry.event_id)
            if event is None or entry.created_ns > horizon:
                continue  # a row without its event shows as a timeline mismatch
            result.mismatches.extend(
                _compare(
                    "surveillance_case_entries",
                    entry.id,
                    {
                        "kind": entry.kind,
                        "actor": entry.actor,
                        # As the ledger stores free text: masked (ledger/domain.py).
                        "detail": scrubbed_data(entry.detail or {}),
                        "created_ns": entry.created_ns,
                    },
                    event,
                )
            )
        seen: set[str] = set()
        for row in rows:
            seen.add(row.id)
            if row.updated_ns > horizon:
                result.unsettled += 1
                continue
            result.cases += 1
            expected = derived.cases.get(row.id)
            if expected is None:
                result.mismatches.append(
                    Mismatch("surveillance_cases", row.id, "row", "present", "no event")
                )
                continue
            result.mismatches.extend(
                _compare(
                    "surveillance_cases",
                    row.id,
                    {
                        "status": row.status,
                        "assignee": row.assignee,
                        "disposition": row.disposition,
                        "alerts": sorted(members.get(row.id, set())),
                        "timeline": sorted(entries.get(row.id, set())),
                        "title": row.title,
                        "created_by": row.created_by,
                        "closed": row.closed_ns is not None,
                    },
                    {
                        "status": expected.status,
                        "assignee": expected.assignee,
                        "disposition": expected.disposition,
                        "alerts": sorted(expected.alerts),
                        "timeline": sorted(expected.event_ids),
                        "title": expected.title,
                        "created_by": expected.created_by,
                        "closed": expected.disposition is not None,
                    },
                )
            )
        for case_id in sorted(set(derived.cases) - seen):
            result.mismatches.append(
                Mismatch("surveillance_cases", case_id, "row", "missing", "opened")
            )

    async def _actions_rows(
        self, session: AsyncSession, derived: Derived, result: VerifyResult, horizon: int
    ) -> None:
        rows = (await session.execute(select(SurveillanceAction))).scalars().all()
        seen: set[str] = set()
        for row in rows:
            seen.add(row.id)
            if row.applied_ns > horizon:
                result.unsettled += 1
                continue
            result.actions += 1
            expected = derived.actions.get(row.id)
            if expected is None:
                result.mismatches.append(
                    Mismatch("surveillance_actions", row.id, "row", "present", "no event")
                )
                continue
            stored = {
                "alert_id": row.alert_id,
                "account_id": row.account_id,
                "action": row.action,
                "status": row.status,
                "reverse_reason": scrubbed_data({"r": row.reverse_reason})["r"],
                # As the ledger stores free text: masked (ledger/domain.py).
                "detail": scrubbed_data(row.detail or {}),
            }
            result.mismatches.extend(_compare("surveillance_actions", row.id, stored, expected))
        for action_id in sorted(set(derived.actions) - seen):
            result.mismatches.append(
                Mismatch("surveillance_actions", action_id, "row", "missing", "applied")
            )

    async def report(self, session: AsyncSession, result: VerifyResult) -> int:
        """Raise the alarm for a failed verification: a ledger event naming the rows (ids
        and fields only) and an email to compliance; the emails queued."""
        shown = [m.as_dict() for m in result.mismatches[:MAX_REPORTED]]
        await self._ledger.append(
            session,
            LedgerEvent(
                type=MISMATCH_EVENT,
                actor=VERIFIER_PARTY,
                subject=None,
                data={"mismatches": len(result.mismatches), "rows": shown},
            ),
        )
        log.error(
            "surveillance tables disagree with the ledger",
            extra={"mismatches": len(result.mismatches)},
        )
        if self._actions is None:
            return 0
        body = "\n".join(m.line() for m in result.mismatches[:MAX_REPORTED])
        return await self._actions.mail_compliance(
            session,
            subject=f"tradeguard surveillance: {len(result.mismatches)} rows disagree with "
            "the ledger",
            body="The surveillance tables were changed outside the application:\n\n"
            + body
            + "\n\nRun `tradeguard surveillance verify` for the full list.",
        )
