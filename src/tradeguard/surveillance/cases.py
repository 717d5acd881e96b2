"""Surveillance cases (MAN-5): compliance groups alerts into a case, assigns it, annotates,
escalates and closes it with a disposition; a case closed as "reported" gets its
suspicious-activity report draft with a filing deadline (surveillance/sar.py).

Every step is a ledger event and a line of the case's timeline, written together in the
caller's transaction (the line names its event). Illegal steps are refused by the state
machine in surveillance/domain.py with a 409 that says why; nothing changes then.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.access.domain import Role
from tradeguard.core.clock import Clock, ns_to_iso
from tradeguard.core.errors import Conflict, InvalidInput, NotFound
from tradeguard.core.ids import IdGenerator
from tradeguard.ledger import service as ledger_service
from tradeguard.ledger.domain import LedgerEvent, Party
from tradeguard.ledger.service import Ledger
from tradeguard.surveillance import repository, sar
from tradeguard.surveillance.domain import (
    ESCALATION_REQUIRED,
    AlertStatus,
    CaseCommand,
    CaseStatus,
    Disposition,
    case_transition,
)
from tradeguard.surveillance.events import SurveillanceEvent
from tradeguard.surveillance.models import (
    SurveillanceAlert,
    SurveillanceCase,
    SurveillanceCaseAlert,
    SurveillanceCaseEntry,
    SurveillanceReport,
)
from tradeguard.surveillance.repository import CaseFilter
from tradeguard.surveillance.service import AlertNotFound, AlertStatusRefused, clean_reason
from tradeguard.trading.accounts import AccountService
from tradeguard.trading.common import AccountNotFound

MAX_ALERTS_PER_REQUEST = 50
MAX_TITLE_CHARS = 200
MAX_REFERENCE_CHARS = 100

_EVENT_OF: dict[CaseCommand, SurveillanceEvent] = {
    CaseCommand.OPEN: SurveillanceEvent.CASE_OPENED,
    CaseCommand.ADD_ALERT: SurveillanceEvent.CASE_ALERT_ADDED,
    CaseCommand.REMOVE_ALERT: SurveillanceEvent.CASE_ALERT_REMOVED,
    CaseCommand.ASSIGN: SurveillanceEvent.CASE_ASSIGNED,
    CaseCommand.NOTE: SurveillanceEvent.CASE_NOTE_ADDED,
    CaseCommand.ESCALATE: SurveillanceEvent.CASE_ESCALATED,
    CaseCommand.CLOSE: SurveillanceEvent.CASE_CLOSED,
    CaseCommand.REPORT_FILED: SurveillanceEvent.CASE_REPORT_FILED,
}


class CaseNotFound(NotFound):
    slug = "case-not-found"
    title = "No such surveillance case"


class ReportNotFound(NotFound):
    slug = "report-not-found"
    title = "No report for this case"


class CaseTransitionRefused(Conflict):
    slug = "case-transition-refused"
    title = "The case cannot do that in its current state"


class AlertInCase(Conflict):
    slug = "alert-in-case"
    title = "The alert is already in a case"


class SecondReviewerRequired(Conflict):
    slug = "second-reviewer-required"
    title = "Another compliance officer must take this decision"


class StaffRoles(Protocol):
    """Who holds which role (identity's service): an assignee must be compliance staff."""

    async def role_of(self, session: AsyncSession, user_id: str) -> Role | None: ...


@dataclass(frozen=True, slots=True)
class CaseView:
    case: SurveillanceCase
    alert_ids: list[str]
    timeline: Sequence[SurveillanceCaseEntry]
    report: SurveillanceReport | None


def _party(actor: Party) -> str:
    return f"{actor.kind}:{actor.id}"[:120]


def _clean_title(title: str) -> str:
    text = clean_reason(title, field="title")
    if len(text) > MAX_TITLE_CHARS or "\n" in text:
        raise InvalidInput(f"a title is one line of at most {MAX_TITLE_CHARS} characters")
    return text


def _alert_ids(alert_ids: Sequence[str]) -> list[str]:
    ids = list(dict.fromkeys(alert_ids))
    if not ids:
        raise InvalidInput("name at least one alert")
    if len(ids) > MAX_ALERTS_PER_REQUEST:
        raise InvalidInput(f"at most {MAX_ALERTS_PER_REQUEST} alerts at once")
    return ids


class CaseDesk:
    """Cases and their report drafts; never commits."""

    def __init__(
        self,
        *,
        clock: Clock,
        ids: IdGenerator,
        ledger: Ledger,
        accounts: AccountService,
        staff: StaffRoles | None,
    ) -> None:
        self._clock = clock
        self._ids = ids
        self._ledger = ledger
        self._accounts = accounts
        self._staff = staff

    # Opening and alerts -------------------------------------------------------------------

    async def open(
        self,
        session: AsyncSession,
        *,
        alert_ids: Sequence[str],
        title: str,
        actor: Party,
        request_id: str | None = None,
    ) -> SurveillanceCase:
        text = _clean_title(title)
        ids = _alert_ids(alert_ids)
        await self._free_alerts(session, ids)
        now = self._clock.now_ns()
        row = SurveillanceCase(
            id=self._ids.new_str(),
            title=text,
            status=CaseStatus.OPEN.value,
            assignee=None,
            disposition=None,
            created_by=_party(actor),
            created_ns=now,
            updated_ns=now,
            closed_ns=None,
        )
        repository.add(session, row)
        for alert_id in ids:
            repository.add(
                session, SurveillanceCaseAlert(alert_id=alert_id, case_id=row.id, added_ns=now)
            )
        await session.flush()
        await self._record(
            session,
            row,
            CaseCommand.OPEN,
            actor,
            {"title": text, "alert_ids": ids},
            request_id,
        )
        return row

    async def _free_alerts(self, session: AsyncSession, ids: list[str]) -> None:
        """Refuse unknown alerts, and alerts already in a case."""
        found = await repository.alerts_by_ids(session, ids, lock=True)
        missing = [a for a in ids if a not in found]
        if missing:
            raise AlertNotFound(f"no such alert: {missing[0]}")
        taken = await repository.case_memberships(session, ids)
        if taken:
            first = taken[ids[[a in taken for a in ids].index(True)]]
            raise AlertInCase(f"alert {first.alert_id} is already in case {first.case_id}")
        dismissed = [a for a in ids if found[a].status == AlertStatus.DISMISSED.value]
        if dismissed:
            raise AlertStatusRefused(
                f"alert {dismissed[0]} was dismissed: reopen it (with a reason) before a case"
            )
        # In a case from now on: the case decides it (its events name the alerts).
        now = self._clock.now_ns()
        for alert_id in ids:
            found[alert_id].status = AlertStatus.IN_CASE.value
            found[alert_id].updated_ns = now

    async def add_alerts(
        self,
        session: AsyncSession,
        *,
        case_id: str,
        alert_ids: Sequence[str],
        actor: Party,
        request_id: str | None = None,
    ) -> SurveillanceCase:
        row = await self._live(session, case_id, CaseCommand.ADD_ALERT)
        ids = _alert_ids(alert_ids)
        await self._free_alerts(session, ids)
        now = self._clock.now_ns()
        for alert_id in ids:
            repository.add(
                session, SurveillanceCaseAlert(alert_id=alert_id, case_id=row.id, added_ns=now)
            )
        await session.flush()
        await self._record(
            session, row, CaseCommand.ADD_ALERT, actor, {"alert_ids": ids}, request_id
        )
        return row

    async def remove_alert(
        self,
        session: AsyncSession,
        *,
        case_id: str,
        alert_id: str,
        reason: str,
        actor: Party,
        request_id: str | None = None,
    ) -> SurveillanceCase:
        text = clean_reason(reason)
        row = await self._live(session, case_id, CaseCommand.REMOVE_ALERT)
        current = await repository.case_alert_ids(session, row.id)
        if alert_id not in current:
            raise AlertNotFound("the alert is not in this case")
        if len(current) == 1:
            raise CaseTransitionRefused(
                "a case keeps at least one alert: close it (false_positive) instead"
            )
        await repository.remove_case_alert(session, row.id, alert_id)
        removed = (await repository.alerts_by_ids(session, [alert_id], lock=True)).get(alert_id)
        if removed is not None:
            removed.status = AlertStatus.NEW.value
            removed.updated_ns = self._clock.now_ns()
        await self._record(
            session,
            row,
            CaseCommand.REMOVE_ALERT,
            actor,
            {"alert_id": alert_id, "reason": text},
            request_id,
        )
        return row

    # Review -------------------------------------------------------------------------------

    async def assign(
        self,
        session: AsyncSession,
        *,
        case_id: str,
        assignee: str,
        actor: Party,
        request_id: str | None = None,
    ) -> SurveillanceCase:
        row = await self._live(session, case_id, CaseCommand.ASSIGN)
        if self._staff is None:  # pragma: no cover - every container passes identity
            raise InvalidInput("assignment needs the staff directory")
        # Only compliance staff review surveillance cases; the same message whether the user
        # does not exist or holds another role, so the route is no directory of users.
        if await self._staff.role_of(session, assignee) is not Role.COMPLIANCE:
            raise InvalidInput("the assignee must be a compliance user")
        if row.assignee == assignee:
            raise CaseTransitionRefused("the case is already assigned to them")
        before = row.assignee
        row.assignee = assignee
        await self._move(session, row, CaseCommand.ASSIGN)
        await self._record(
            session,
            row,
            CaseCommand.ASSIGN,
            actor,
            {"assignee": assignee, "previous_assignee": before},
            request_id,
        )
        return row

    async def note(
        self,
        session: AsyncSession,
        *,
        case_id: str,
        text: str,
        actor: Party,
        request_id: str | None = None,
    ) -> SurveillanceCase:
        body = clean_reason(text, field="text")
        row = await self._live(session, case_id, CaseCommand.NOTE)
        row.updated_ns = self._clock.now_ns()
        await self._record(session, row, CaseCommand.NOTE, actor, {"text": body}, request_id)
        return row

    async def escalate(
        self,
        session: AsyncSession,
        *,
        case_id: str,
        reason: str,
        actor: Party,
        request_id: str | None = None,
    ) -> SurveillanceCase:
        text = clean_reason(reason)
        row = await self._case(session, case_id, lock=True)
        await self._move(session, row, CaseCommand.ESCALATE)
        await self._record(session, row, CaseCommand.ESCALATE, actor, {"reason": text}, request_id)
        return row

    async def close(
        self,
        session: AsyncSession,
        *,
        case_id: str,
        disposition: Disposition,
        reason: str,
        actor: Party,
        detected_ns: int | None = None,
        suspect_identified: bool = True,
        request_id: str | None = None,
    ) -> SurveillanceCase:
        """Close with a disposition; "reported" drafts the suspicious-activity report, its
        deadline counted from `detected_ns` (default: the case's first alert)."""
        text = clean_reason(reason)
        row = await self._case(session, case_id, lock=True)
        await self._move(session, row, CaseCommand.CLOSE, disposition)
        if disposition in ESCALATION_REQUIRED:
            await self._second_reviewer(session, row, actor, disposition)
        # Locked: a finding being folded into one of them finishes first, and one recorded
        # after the close raises a new alert instead (service.AlertStore.record).
        alerts = await self._alerts_of(session, row.id, lock=True)
        now = self._clock.now_ns()
        if disposition is not Disposition.REPORTED and (
            detected_ns is not None or not suspect_identified
        ):
            raise InvalidInput("detection date and suspect apply to a case closed as reported")
        if not suspect_identified:
            await self._no_known_owner(session, alerts)
        if detected_ns is not None:
            first = min(a.created_ns for a in alerts)
            if not first <= detected_ns <= now:
                raise InvalidInput("the detection date lies between the case's first alert and now")
        row.disposition = disposition.value
        row.closed_ns = now
        await self._record(
            session,
            row,
            CaseCommand.CLOSE,
            actor,
            {"disposition": disposition.value, "reason": text},
            request_id,
        )
        if disposition is Disposition.REPORTED:
            await self._draft(
                session,
                row,
                alerts,
                conclusion=text,
                closed_by=actor,
                detected_ns=detected_ns
                if detected_ns is not None
                else min(a.created_ns for a in alerts),
                suspect_identified=suspect_identified,
                request_id=request_id,
            )
        return row

    # Reports ------------------------------------------------------------------------------

    async def _draft(
        self,
        session: AsyncSession,
        row: SurveillanceCase,
        alerts: Sequence[SurveillanceAlert],
        *,
        conclusion: str,
        closed_by: Party,
        detected_ns: int,
        suspect_identified: bool,
        request_id: str | None,
    ) -> SurveillanceReport:
        numbers: dict[str, str | None] = {}
        for account_id in sorted({a for alert in alerts for a in alert.accounts}):
            try:
                numbers[account_id] = (await self._accounts.get(session, account_id)).number
            except AccountNotFound:
                numbers[account_id] = None
        facts = sar.CaseFacts(
            case_id=row.id,
            title=row.title,
            assignee=row.assignee,
            closed_by=_party(closed_by),
            closed_ns=row.closed_ns or self._clock.now_ns(),
            conclusion=conclusion,
            detected_ns=detected_ns,
            suspect_identified=suspect_identified,
        )
        now = self._clock.now_ns()
        report_id = self._ids.new_str()
        # Each account's own customer: linked users are reported separately.
        holders = await self._accounts.owners_of(session, sorted(numbers))
        draft = sar.build_draft(
            facts,
            [_facts(a) for a in alerts],
            numbers,
            report_id=report_id,
            created_ns=now,
            account_users={a: holders.get(a) for a in numbers},
        )
        report = SurveillanceReport(
            id=report_id,
            case_id=row.id,
            detected_ns=detected_ns,
            suspect_identified=suspect_identified,
            due_ns=sar.due_ns(detected_ns, suspect_identified=suspect_identified),
            draft=draft,
            created_ns=now,
            filed_ns=None,
            filing_reference=None,
        )
        repository.add(session, report)
        await self._ledger.append(
            session,
            LedgerEvent(
                type=SurveillanceEvent.REPORT_DRAFTED,
                actor=closed_by,
                subject=Party("surveillance_case", row.id),
                data={
                    "report_id": report_id,
                    "case_id": row.id,
                    "due_date": draft["filing"]["due_date"],
                    "total_amount": draft["activity"]["total_amount"],
                    "alert_ids": [a.id for a in alerts],
                },
                request_id=request_id,
            ),
        )
        return report

    async def file_report(
        self,
        session: AsyncSession,
        *,
        case_id: str,
        reference: str,
        actor: Party,
        request_id: str | None = None,
    ) -> SurveillanceReport:
        """Record that the report was filed (with the regulator's reference)."""
        text = clean_reason(reference, field="reference")
        if len(text) > MAX_REFERENCE_CHARS or "\n" in text:
            raise InvalidInput(f"a filing reference is one line of at most {MAX_REFERENCE_CHARS}")
        row = await self._case(session, case_id, lock=True)
        refused = case_transition(CaseStatus(row.status), CaseCommand.REPORT_FILED)
        if not isinstance(refused, CaseStatus):
            raise CaseTransitionRefused(refused)
        report = await repository.report_of_case(session, row.id, lock=True)
        if report is None:
            raise ReportNotFound("the case was not closed as reported: it has no report")
        if report.filed_ns is not None:
            raise CaseTransitionRefused("the report is already filed")
        now = self._clock.now_ns()
        report.filed_ns = now
        report.filing_reference = text
        draft = dict(report.draft)
        draft["status"] = "filed"
        draft["filing"] = {**draft["filing"], "filed_at": ns_to_iso(now), "reference": text}
        report.draft = draft
        await self._record(
            session,
            row,
            CaseCommand.REPORT_FILED,
            actor,
            {"report_id": report.id, "reference": text, "on_time": now < report.due_ns},
            request_id,
        )
        return report

    async def report(self, session: AsyncSession, case_id: str) -> SurveillanceReport:
        await self._case(session, case_id)
        report = await repository.report_of_case(session, case_id)
        if report is None:
            raise ReportNotFound("the case was not closed as reported: it has no report")
        return report

    async def reports(
        self, session: AsyncSession, *, overdue: bool, limit: int
    ) -> Sequence[SurveillanceReport]:
        return await repository.reports(
            session, overdue_at_ns=self._clock.now_ns() if overdue else None, limit=limit
        )

    # Reading ------------------------------------------------------------------------------

    def now_ns(self) -> int:
        """The desk's clock (what "overdue" is judged by)."""
        return self._clock.now_ns()

    async def get(self, session: AsyncSession, case_id: str) -> CaseView:
        row = await self._case(session, case_id)
        return CaseView(
            case=row,
            alert_ids=await repository.case_alert_ids(session, row.id),
            timeline=await repository.case_entries(session, row.id),
            report=await repository.report_of_case(session, row.id),
        )

    async def search(self, session: AsyncSession, where: CaseFilter) -> Sequence[SurveillanceCase]:
        return await repository.cases(session, where)

    # Internals ----------------------------------------------------------------------------

    async def _case(
        self, session: AsyncSession, case_id: str, *, lock: bool = False
    ) -> SurveillanceCase:
        row = await repository.case(session, case_id, lock=lock)
        if row is None:
            raise CaseNotFound("no such surveillance case")
        return row

    async def _live(
        self, session: AsyncSession, case_id: str, command: CaseCommand
    ) -> SurveillanceCase:
        row = await self._case(session, case_id, lock=True)
        refused = case_transition(CaseStatus(row.status), command)
        if not isinstance(refused, CaseStatus):
            raise CaseTransitionRefused(refused)
        return row

    async def _move(
        self,
        session: AsyncSession,
        row: SurveillanceCase,
        command: CaseCommand,
        disposition: Disposition | None = None,
    ) -> None:
        after = case_transition(CaseStatus(row.status), command, disposition)
        if not isinstance(after, CaseStatus):
            raise CaseTransitionRefused(after)
        row.status = after.value
        row.updated_ns = self._clock.now_ns()

    async def _second_reviewer(
        self,
        session: AsyncSession,
        row: SurveillanceCase,
        actor: Party,
        disposition: Disposition,
    ) -> None:
        """Four eyes: who closes a case as restricted or reported is not who escalated it
        (the escalation is the first look, the close the second).

        Who escalated is read from the ledger's escalation events (hash-chained), never from
        the timeline table a database user could edit: an insider who rewrote the
        "escalated" row's actor still cannot close alone."""
        documents = await ledger_service.documents_about(
            session,
            subject_id=row.id,
            event_types=[SurveillanceEvent.CASE_ESCALATED.value],
        )
        escalated_by = {
            _party(Party(str(by.get("kind")), str(by.get("id"))))
            for doc in documents
            if isinstance(by := doc.get("actor"), dict)
        }
        if _party(actor) in escalated_by:
            raise SecondReviewerRequired(
                f"you escalated this case: another compliance officer closes it as "
                f"{disposition.value} (four eyes)"
            )

    async def _no_known_owner(
        self, session: AsyncSession, alerts: Sequence[SurveillanceAlert]
    ) -> None:
        """`suspect_identified: false` (60 days to file instead of 30) only when no alert of
        the case names an account whose owner the firm knows."""
        accounts = sorted({a for alert in alerts for a in alert.accounts})
        if await self._accounts.owners_of(session, accounts):
            raise InvalidInput(
                "suspect_identified cannot be false: the case's alerts name accounts whose "
                "owner is known, so a suspect is identified (the report is due in 30 days)"
            )

    async def _alerts_of(
        self, session: AsyncSession, case_id: str, *, lock: bool = False
    ) -> list[SurveillanceAlert]:
        ids = await repository.case_alert_ids(session, case_id)
        found = await repository.alerts_by_ids(session, ids, lock=lock)
        return [found[a] for a in ids if a in found]

    async def _record(  # noqa: PLR0917 - one private helper, every caller passes all six
        self,
        session: AsyncSession,
        row: SurveillanceCase,
        command: CaseCommand,
        actor: Party,
        detail: dict[str, Any],
        request_id: str | None,
    ) -> None:
        appended = await self._ledger.append(
            session,
            LedgerEvent(
                type=_EVENT_OF[command],
                actor=actor,
                subject=Party("surveillance_case", row.id),
                data={"case_id": row.id, "status": row.status, **detail},
                request_id=request_id,
            ),
        )
        repository.add(
            session,
            SurveillanceCaseEntry(
                id=self._ids.new_str(),
                case_id=row.id,
                kind=command.value,
                actor=_party(actor),
                detail={"status": row.status, **detail},
                event_id=appended.event_id,
                created_ns=appended.occurred_ns,
            ),
        )


def _facts(alert: SurveillanceAlert) -> sar.AlertFacts:
    return sar.AlertFacts(
        alert_id=alert.id,
        alert_type=alert.alert_type,
        detector=alert.detector,
        symbol=alert.symbol,
        owner=alert.owner,
        accounts=list(alert.accounts),
        score=alert.score,
        window_start_ns=alert.window_start_ns,
        window_end_ns=alert.window_end_ns,
        first_trigger_seq=alert.first_trigger_seq,
        occurrences=alert.occurrences,
        order_ids=list(alert.order_ids),
        execution_ids=list(alert.execution_ids),
        evidence=dict(alert.evidence),
        summary=alert.summary,
    )
