"""AML use cases: the monitor's ingestion of ledger events (movements, alerts, CTRs), SAR
cases with their deadlines and reminders, FinCEN exports, and five-year retention.

Every state change appends a ledger event in the caller's transaction; nothing commits here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.access.domain import Role
from tradeguard.aml import fincen, repository
from tradeguard.aml.domain import (
    DAY_NS,
    AmlRules,
    Context,
    Direction,
    Finding,
    Movement,
    MovementKind,
    ProfileView,
    business_day,
    ctr_aggregate,
    ctr_due,
    evaluate,
    money,
    reminders_due,
    sar_due_ns,
)
from tradeguard.aml.models import AmlAlert, AmlCase, AmlCaseNote, AmlCtr, AmlFiling, AmlMovement
from tradeguard.core.clock import Clock, ns_to_iso
from tradeguard.core.errors import Conflict, InvalidInput, NotFound
from tradeguard.core.ids import IdGenerator
from tradeguard.crypto.columns import keyring_field
from tradeguard.crypto.keyring import Keyring
from tradeguard.identity.service import AccountService as IdentityAccounts
from tradeguard.kyc.contracts import CustomerProfiles, FilingPerson, FilingSubjects
from tradeguard.ledger.domain import LedgerEvent, Party
from tradeguard.ledger.service import Ledger, SequencedEvent
from tradeguard.notify.service import Notifier
from tradeguard.trading.accounts import AccountService as TradingAccounts

AML_SYSTEM = Party("system", "aml")
NOTIFIED_ROLES = frozenset({Role.COMPLIANCE, Role.ADMIN})
STAFF_DECIDERS = frozenset({Role.COMPLIANCE, Role.ADMIN})
MAX_NOTE = 4000
MAX_REASON = 2000
MAX_NARRATIVE = 10_000

# Ledger event types the monitor reads (funds/common.py, trading).
DEPOSIT_CREDITED = "funds:deposit:credited"
DEPOSIT_SETTLED = "funds:deposit:settled"
DEPOSIT_RETURNED = "funds:deposit:returned"
WITHDRAWAL_SENT = "funds:withdrawal:sent"
EXECUTION_CREATED = "trading:execution:created"
WATCHED = frozenset(
    {DEPOSIT_CREDITED, DEPOSIT_SETTLED, DEPOSIT_RETURNED, WITHDRAWAL_SENT, EXECUTION_CREATED}
)


class AmlEvent(StrEnum):
    ALERT_RAISED = "aml:alert:raised"
    ALERT_FOLDED = "aml:alert:folded"
    CTR_OWED = "aml:ctr:owed"
    CTR_UPDATED = "aml:ctr:updated"
    CASE_OPENED = "aml:case:opened"
    CASE_ASSIGNED = "aml:case:assigned"
    CASE_NOTED = "aml:case:noted"
    CASE_EVIDENCE_ATTACHED = "aml:case:evidence_attached"
    CASE_DECIDED = "aml:case:decided"
    CASE_FIRST_DECISION = "aml:case:first_decision"
    CASE_REMINDED = "aml:case:reminded"
    CASE_OVERDUE = "aml:case:overdue"
    FILING_EXPORTED = "aml:filing:exported"
    FILING_DELETED = "aml:filing:deleted"
    FILING_READ = "aml:filing:read"
    RECORDS_PURGED = "aml:records:purged"


class CaseStatus(StrEnum):
    OPEN = "open"
    # Closing without a SAR waits for a second staff member (four-eyes).
    PENDING_SECOND = "pending_second"
    SAR_REQUIRED = "sar_required"
    SAR_FILED = "sar_filed"
    CLOSED = "closed"


OPEN_STATUSES = frozenset({CaseStatus.OPEN, CaseStatus.PENDING_SECOND, CaseStatus.SAR_REQUIRED})


class Decision(StrEnum):
    SAR = "sar"
    NO_SAR = "no_sar"


class AmlInputError(InvalidInput):
    """Bad AML input (422): the message says what to change."""


class AmlConflict(Conflict):
    """The request clashes with the case's or filing's current state (409)."""


class FilingRefused(InvalidInput):
    """A final export was refused (422): what is missing or invalid is named (field names
    and rules, never values)."""

    slug = "filing-refused"
    title = "The filing cannot be exported as final"


class RetainedRecord(Conflict):
    """An AML record younger than the retention period cannot be deleted (409)."""

    slug = "record-retained"
    title = "The record is kept for five years"


# The subject's personal data for filings ----------------------------------------------------

# Reading a stored filing states why, like a staff download of an identity document.
MIN_READ_REASON = 5
MAX_READ_REASON = 500


def mask_tin(tin: str | None) -> str | None:
    """A draft carries the tax id's last four digits only: the full number goes into the
    final export (the one sent to FinCEN) and nowhere else."""
    if not tin:
        return tin
    if len(tin) <= 4:
        return "*" * len(tin)
    return "*" * (len(tin) - 4) + tin[-4:]


def masked(subject: fincen.Subject) -> fincen.Subject:
    return replace(subject, tin=mask_tin(subject.tin))


def subject_of(person: FilingPerson | None) -> fincen.Subject:
    if person is None:
        return fincen.Subject(None, None, None, None, fincen.Address(None, None, None, None, None))
    return fincen.Subject(
        family_name=person.family_name,
        given_name=person.given_name,
        birth_date=person.birth_date,
        tin=person.tin,
        address=fincen.Address(
            person.street, person.city, person.state, person.zip_code, person.country
        ),
        occupation=person.occupation,
    )


@dataclass(slots=True)
class AmlDeps:
    clock: Clock
    ids: IdGenerator
    ledger: Ledger
    keyring: Keyring
    notifier: Notifier
    users: IdentityAccounts
    accounts: TradingAccounts
    rules: AmlRules
    filer: fincen.Filer
    # Withdrawals as funds' staff service reads them (amount, rail, owner of a sent one).
    withdrawals: WithdrawalReader
    profiles: CustomerProfiles | None = None
    subjects: FilingSubjects | None = None
    tz: ZoneInfo = field(init=False)

    def __post_init__(self) -> None:
        self.tz = ZoneInfo(self.rules.timezone)

    async def audit(
        self,
        session: AsyncSession,
        type_: str,
        *,
        actor: Party,
        subject: Party | None = None,
        data: dict[str, object] | None = None,
        request_id: str | None = None,
    ) -> None:
        await self.ledger.append(
            session,
            LedgerEvent(
                type=type_, actor=actor, subject=subject, data=data or {}, request_id=request_id
            ),
        )


class WithdrawalReader(Protocol):
    async def staff_get(self, session: AsyncSession, withdrawal_id: str) -> Any: ...


def _movement(row: AmlMovement) -> Movement:
    return Movement(
        id=row.id,
        seq=row.seq,
        user_id=row.user_id,
        account_id=row.account_id,
        kind=MovementKind(row.kind),
        amount=row.amount,
        ts_ns=row.ts_ns,
        day=date.fromisoformat(row.day),
        rail=row.rail,
        symbol=row.symbol,
        bank_account_id=row.bank_account_id,
    )


# Monitoring -----------------------------------------------------------------------------------


@dataclass(slots=True)
class IngestResult:
    movements: int = 0
    alerts: int = 0
    folded: int = 0
    ctrs: int = 0
    skipped: int = 0


def _decimal(value: object) -> Decimal:
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValueError("not an amount") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError("not an amount")
    return amount


def _account_of(document: dict[str, Any]) -> str | None:
    subject = document.get("subject")
    if isinstance(subject, dict) and subject.get("kind") == "account":
        value = subject.get("id")
        return value if isinstance(value, str) else None
    return None


class AmlMonitor:
    """Turns ledger events into movements, judges each against the rules, raises alerts
    (one per rule, person and window) and keeps the CTRs owed."""

    def __init__(self, deps: AmlDeps) -> None:
        self.deps = deps

    async def ingest(self, session: AsyncSession, events: Sequence[SequencedEvent]) -> IngestResult:
        result = IngestResult()
        watched = [e for e in events if e.document.get("type") in WATCHED]
        if not watched:
            return result
        accounts = {a for e in watched if (a := _account_of(e.document)) is not None}
        owners = await self.deps.accounts.owners_of(session, sorted(accounts))
        profiles: dict[str, ProfileView] = {}
        parsed: list[Movement] = []
        for event in watched:
            try:
                movement = await self._parse(session, event, owners)
            except (ValueError, KeyError, TypeError, NotFound):
                result.skipped += 1
                continue
            if movement is not None:
                parsed.append(movement)
        # Read before (a replay after a crash between passes): counted once.
        seen = await repository.existing_movement_ids(session, [m.id for m in parsed])
        for movement in parsed:
            if movement.id in seen:
                continue
            seen.add(movement.id)
            session.add(
                AmlMovement(
                    id=movement.id,
                    seq=movement.seq,
                    user_id=movement.user_id,
                    account_id=movement.account_id,
                    kind=movement.kind.value,
                    rail=movement.rail,
                    amount=movement.amount,
                    currency="USD",
                    symbol=movement.symbol,
                    bank_account_id=movement.bank_account_id,
                    ts_ns=movement.ts_ns,
                    day=movement.day.isoformat(),
                )
            )
            await session.flush()
            result.movements += 1
            if movement.user_id not in profiles:
                profiles[movement.user_id] = await self.profile(session, movement.user_id)
            history = await self.history(session, movement)
            for finding in await self.judge(session, movement, profiles[movement.user_id], history):
                raised = await self.record(session, finding)
                result.alerts += raised
                result.folded += not raised
            result.ctrs += await self._ctr(session, movement, history)
        return result

    async def _parse(
        self, session: AsyncSession, event: SequencedEvent, owners: dict[str, str]
    ) -> Movement | None:
        doc = event.document
        kind = doc["type"]
        data = doc.get("data") or {}
        ts = int(doc["ts"])
        account = _account_of(doc)
        if account is None:
            raise ValueError("no account")
        day = business_day(ts, self.deps.tz)
        if kind == WITHDRAWAL_SENT:
            row = await self.deps.withdrawals.staff_get(session, str(data["withdrawal_id"]))
            return Movement(
                id=f"withdrawal:{row.id}",
                seq=event.seq,
                user_id=row.user_id,
                account_id=row.account_id,
                kind=MovementKind.WITHDRAWAL,
                amount=_decimal(row.amount),
                ts_ns=ts,
                day=day,
                rail=row.rail,
                bank_account_id=row.bank_account_id,
            )
        user = owners.get(account)
        if user is None:
            raise ValueError("unknown account")
        if kind == EXECUTION_CREATED:
            notional = _decimal(data["quantity"]) * _decimal(data["price"])
            return Movement(
                id=f"execution:{data['execution_id']}",
                seq=event.seq,
                user_id=user,
                account_id=account,
                kind=MovementKind.BUY if data["side"] == "buy" else MovementKind.SELL,
                amount=notional,
                ts_ns=ts,
                day=day,
                symbol=str(data["symbol"])[:20],
            )
        rail = str(data.get("rail") or "")
        if kind == DEPOSIT_CREDITED and not data.get("credited"):
            return None
        if kind == DEPOSIT_SETTLED and rail != "wire":
            return None  # ACH and card deposits counted when credited
        if kind == DEPOSIT_RETURNED:
            return Movement(
                id=f"return:{data['deposit_id']}",
                seq=event.seq,
                user_id=user,
                account_id=account,
                kind=MovementKind.RETURN,
                amount=_decimal(data["amount"]),
                ts_ns=ts,
                day=day,
                rail=rail or None,
            )
        bank = data.get("bank_account_id")
        return Movement(
            id=f"deposit:{data['deposit_id']}",
            seq=event.seq,
            user_id=user,
            account_id=account,
            kind=MovementKind.DEPOSIT,
            amount=_decimal(data["amount"]),
            ts_ns=ts,
            day=day,
            rail=rail or None,
            bank_account_id=bank if isinstance(bank, str) else None,
        )

    async def profile(self, session: AsyncSession, user_id: str) -> ProfileView:
        rules = self.deps.rules
        found = None
        if self.deps.profiles is not None:
            found = await self.deps.profiles.profile(session, user_id)
        if found is None:
            return ProfileView(
                expected_monthly_funding=rules.default_monthly_funding, from_profile=False
            )
        expected = found.expected_monthly_funding
        usable = expected is not None and expected > 0
        return ProfileView(
            expected_monthly_funding=expected
            if usable and expected is not None
            else rules.default_monthly_funding,
            from_profile=usable,
            country=found.country,
            nationality=found.nationality,
            rating=found.rating.value,
        )

    async def history(self, session: AsyncSession, movement: Movement) -> list[Movement]:
        """The person's movements within the longest window, through this one. Day-based
        windows reach back to the start of a business day: one day more."""
        since = movement.ts_ns - (self.deps.rules.lookback_days + 1) * DAY_NS
        rows = await repository.movements_since(session, movement.user_id, since, movement.seq)
        return [_movement(r) for r in rows]

    async def judge(
        self,
        session: AsyncSession,
        movement: Movement,
        profile: ProfileView,
        history: list[Movement] | None = None,
    ) -> list[Finding]:
        rules = self.deps.rules
        if history is None:
            history = await self.history(session, movement)
        earlier = [
            m.ts_ns for m in history if m.account_id == movement.account_id and m.seq < movement.seq
        ]
        previous = (
            max(earlier)
            if earlier
            else await repository.previous_activity_ns(session, movement.account_id, movement.seq)
        )
        net = Decimal(0)
        if movement.is_trade:
            for kind, amount in await repository.cash_totals_before(
                session, movement.user_id, movement.seq
            ):
                net += amount if kind == "deposit" else -amount
        context = Context(profile=profile, previous_activity_ns=previous, net_funding=net)
        return evaluate(movement, history, context, rules)

    async def record(self, session: AsyncSession, finding: Finding) -> bool:
        """Raise the finding as an alert, or fold it into its window's alert; True when new."""
        deps, now = self.deps, self.deps.clock.now_ns()
        existing = await repository.alert_in_window(
            session, finding.rule.value, finding.user_id, finding.window_key
        )
        if existing is not None:
            existing.score = max(existing.score, finding.score)
            existing.summary = finding.summary
            existing.facts = finding.facts
            existing.movement_ids = sorted(set(existing.movement_ids) | set(finding.movement_ids))
            existing.occurrences += 1
            existing.window_start_ns = min(existing.window_start_ns, finding.window_start_ns)
            existing.window_end_ns = max(existing.window_end_ns, finding.window_end_ns)
            existing.updated_ns = now
            await deps.audit(
                session,
                AmlEvent.ALERT_FOLDED,
                actor=AML_SYSTEM,
                subject=Party("user", finding.user_id),
                data={
                    "alert_id": existing.id,
                    "rule": finding.rule.value,
                    "seq": finding.trigger_seq,
                },
            )
            return False
        row = AmlAlert(
            id=deps.ids.new_str(),
            rule=finding.rule.value,
            user_id=finding.user_id,
            window_key=finding.window_key,
            score=finding.score,
            status="open",
            summary=finding.summary[:400],
            facts=finding.facts,
            movement_ids=list(finding.movement_ids),
            occurrences=1,
            window_start_ns=finding.window_start_ns,
            window_end_ns=finding.window_end_ns,
            trigger_seq=finding.trigger_seq,
            case_id=None,
            created_ns=now,
            updated_ns=now,
        )
        session.add(row)
        await session.flush()
        await deps.audit(
            session,
            AmlEvent.ALERT_RAISED,
            actor=AML_SYSTEM,
            subject=Party("user", finding.user_id),
            data={
                "alert_id": row.id,
                "rule": row.rule,
                "score": row.score,
                "window": finding.window_key,
                "seq": finding.trigger_seq,
            },
        )
        return True

    async def _ctr(self, session: AsyncSession, movement: Movement, history: list[Movement]) -> int:
        """Keep the CTR owed for the movement's person, day and direction (the history
        covers the whole business day: it reaches back a day past the longest window)."""
        deps, rules = self.deps, self.deps.rules
        direction = movement.direction
        if direction is None or (movement.rail or "") not in rules.ctr_rails:
            return 0
        day = movement.day.isoformat()
        aggregate = ctr_aggregate(
            history,
            user_id=movement.user_id,
            day=movement.day,
            direction=direction,
            rules=rules,
        )
        if aggregate is None:
            return 0
        now = deps.clock.now_ns()
        row = await repository.ctr_of(session, movement.user_id, day, direction.value)
        if row is None:
            row = AmlCtr(
                id=deps.ids.new_str(),
                user_id=movement.user_id,
                day=day,
                direction=direction.value,
                total=aggregate.total,
                movement_ids=list(aggregate.movement_ids),
                accounts=list(aggregate.accounts),
                status="owed",
                due_day=ctr_due(movement.day, rules).isoformat(),
                amended=False,
                created_ns=now,
                updated_ns=now,
            )
            session.add(row)
            await session.flush()
            event = AmlEvent.CTR_OWED
        else:
            row.total = aggregate.total
            row.movement_ids = list(aggregate.movement_ids)
            row.accounts = list(aggregate.accounts)
            row.updated_ns = now
            if row.status == "filed":
                row.amended = True
            event = AmlEvent.CTR_UPDATED
        await deps.audit(
            session,
            event,
            actor=AML_SYSTEM,
            subject=Party("user", movement.user_id),
            data={
                "ctr_id": row.id,
                "day": day,
                "direction": direction.value,
                "total": money(aggregate.total),
                "due": row.due_day,
            },
        )
        return 1 if event is AmlEvent.CTR_OWED else 0


# Cases ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CaseView:
    case: AmlCase
    alerts: Sequence[AmlAlert]
    movements: Sequence[AmlMovement]
    notes: Sequence[AmlCaseNote]
    filings: Sequence[AmlFiling]
    overdue: bool


def _text(value: str, what: str, limit: int) -> str:
    text = value.strip()
    if not text:
        raise AmlInputError(f"{what} must not be empty")
    if len(text) > limit:
        raise AmlInputError(f"{what} must be at most {limit} characters")
    return text


class AmlCases:
    def __init__(self, deps: AmlDeps) -> None:
        self.deps = deps

    def overdue(self, row: AmlCase, now_ns: int | None = None) -> bool:
        now = self.deps.clock.now_ns() if now_ns is None else now_ns
        return row.status in OPEN_STATUSES and now > row.due_ns

    async def _case(self, session: AsyncSession, case_id: str, *, lock: bool = True) -> AmlCase:
        row = await repository.case(session, case_id, lock=lock)
        if row is None:
            raise NotFound("no such case")
        return row

    async def _staff(self, session: AsyncSession, user_id: str) -> None:
        role = await self.deps.users.role_of(session, user_id)
        if role not in STAFF_DECIDERS:
            raise AmlInputError("the assignee must be a compliance officer or administrator")

    async def open(
        self,
        session: AsyncSession,
        *,
        staff_id: str,
        alert_ids: Sequence[str],
        suspect_identified: bool = True,
        assignee: str | None = None,
        request_id: str | None = None,
    ) -> AmlCase:
        deps, now = self.deps, self.deps.clock.now_ns()
        wanted = sorted(set(alert_ids))
        if not wanted or len(wanted) > 100:
            raise AmlInputError("a case groups 1 to 100 alerts")
        rows = await repository.alerts_by_id(session, wanted, lock=True)
        if len(rows) != len(wanted):
            raise NotFound("no such alert")
        users = {r.user_id for r in rows}
        if len(users) != 1:
            raise AmlInputError("a case groups the alerts of one person")
        if any(r.case_id is not None for r in rows):
            raise AmlConflict("an alert is already in a case")
        if assignee is not None:
            await self._staff(session, assignee)
        detection = min(r.created_ns for r in rows)
        row = AmlCase(
            id=deps.ids.new_str(),
            user_id=users.pop(),
            status=CaseStatus.OPEN.value,
            assignee=assignee,
            opened_by=staff_id,
            detection_ns=detection,
            suspect_identified=suspect_identified,
            due_ns=sar_due_ns(detection, suspect_identified=suspect_identified, rules=deps.rules),
            reminders_sent=[],
            overdue_notified=False,
            extra_movement_ids=[],
            max_score=max(r.score for r in rows),
            created_ns=now,
            updated_ns=now,
        )
        session.add(row)
        for alert in rows:
            alert.case_id = row.id
            alert.status = "in_case"
            alert.updated_ns = now
        await session.flush()
        await deps.audit(
            session,
            AmlEvent.CASE_OPENED,
            actor=Party("user", staff_id),
            subject=Party("user", row.user_id),
            data={
                "case_id": row.id,
                "alerts": wanted,
                "suspect_identified": suspect_identified,
                "detected": ns_to_iso(detection),
                "sar_due": ns_to_iso(row.due_ns),
                "assignee": assignee,
            },
            request_id=request_id,
        )
        return row

    async def assign(
        self,
        session: AsyncSession,
        *,
        staff_id: str,
        case_id: str,
        assignee: str,
        request_id: str | None = None,
    ) -> AmlCase:
        row = await self._case(session, case_id)
        if row.status not in OPEN_STATUSES:
            raise AmlConflict("the case is closed")
        await self._staff(session, assignee)
        previous, row.assignee = row.assignee, assignee
        row.updated_ns = self.deps.clock.now_ns()
        await self.deps.audit(
            session,
            AmlEvent.CASE_ASSIGNED,
            actor=Party("user", staff_id),
            subject=Party("user", row.user_id),
            data={"case_id": row.id, "assignee": assignee, "previous": previous},
            request_id=request_id,
        )
        return row

    async def note(
        self,
        session: AsyncSession,
        *,
        staff_id: str,
        case_id: str,
        text: str,
        request_id: str | None = None,
    ) -> AmlCaseNote:
        body = _text(text, "the note", MAX_NOTE)
        row = await self._case(session, case_id)
        now = self.deps.clock.now_ns()
        note = AmlCaseNote(
            id=self.deps.ids.new_str(), case_id=row.id, author=staff_id, text=body, created_ns=now
        )
        session.add(note)
        row.updated_ns = now
        await session.flush()
        # The note's text stays in its table (it may name people): the event names it by id.
        await self.deps.audit(
            session,
            AmlEvent.CASE_NOTED,
            actor=Party("user", staff_id),
            subject=Party("user", row.user_id),
            data={"case_id": row.id, "note_id": note.id, "length": len(body)},
            request_id=request_id,
        )
        return note

    async def attach(
        self,
        session: AsyncSession,
        *,
        staff_id: str,
        case_id: str,
        movement_ids: Sequence[str],
        request_id: str | None = None,
    ) -> AmlCase:
        wanted = sorted(set(movement_ids))
        if not wanted or len(wanted) > 500:
            raise AmlInputError("attach 1 to 500 movements")
        row = await self._case(session, case_id)
        if row.status not in OPEN_STATUSES:
            raise AmlConflict("the case is closed")
        found = await repository.movements_by_id(session, wanted)
        if len(found) != len(wanted) or any(m.user_id != row.user_id for m in found):
            raise NotFound("no such movement of this person")
        row.extra_movement_ids = sorted(set(row.extra_movement_ids) | set(wanted))
        row.updated_ns = self.deps.clock.now_ns()
        await self.deps.audit(
            session,
            AmlEvent.CASE_EVIDENCE_ATTACHED,
            actor=Party("user", staff_id),
            subject=Party("user", row.user_id),
            data={"case_id": row.id, "movements": wanted},
            request_id=request_id,
        )
        return row

    async def decide(
        self,
        session: AsyncSession,
        *,
        staff_id: str,
        case_id: str,
        decision: Decision,
        reason: str,
        request_id: str | None = None,
    ) -> AmlCase:
        """SAR required, or no SAR with a reason. Closing without a SAR a case whose alerts
        scored at least `four_eyes_score` takes two different staff members."""
        why = _text(reason, "the reason", MAX_REASON)
        deps, now = self.deps, self.deps.clock.now_ns()
        row = await self._case(session, case_id)
        if row.status not in (CaseStatus.OPEN, CaseStatus.PENDING_SECOND):
            raise AmlConflict(f"the case is already decided ({row.status})")
        if row.status == CaseStatus.PENDING_SECOND and decision is Decision.NO_SAR:
            if row.first_decider == staff_id:
                raise AmlConflict("a second, different staff member must confirm (four-eyes)")
        elif decision is Decision.NO_SAR and row.max_score >= deps.rules.four_eyes_score:
            row.status = CaseStatus.PENDING_SECOND.value
            row.first_decider = staff_id
            row.decision_reason = why
            row.updated_ns = now
            await deps.audit(
                session,
                AmlEvent.CASE_FIRST_DECISION,
                actor=Party("user", staff_id),
                subject=Party("user", row.user_id),
                data={"case_id": row.id, "decision": decision.value},
                request_id=request_id,
            )
            return row
        row.decision = decision.value
        row.decision_reason = why
        row.decided_by = staff_id
        row.decided_ns = now
        row.updated_ns = now
        row.status = (
            CaseStatus.SAR_REQUIRED.value if decision is Decision.SAR else CaseStatus.CLOSED.value
        )
        for alert in await repository.alerts_of_case(session, row.id):
            alert.status = "closed"
            alert.updated_ns = now
        await deps.audit(
            session,
            AmlEvent.CASE_DECIDED,
            actor=Party("user", staff_id),
            subject=Party("user", row.user_id),
            data={
                "case_id": row.id,
                "decision": decision.value,
                "first_decider": row.first_decider,
                "status": row.status,
            },
            request_id=request_id,
        )
        return row

    async def view(self, session: AsyncSession, case_id: str) -> CaseView:
        row = await self._case(session, case_id, lock=False)
        alerts = await repository.alerts_of_case(session, row.id)
        ids = sorted({m for a in alerts for m in a.movement_ids} | set(row.extra_movement_ids))
        return CaseView(
            case=row,
            alerts=alerts,
            movements=await repository.movements_by_id(session, ids),
            notes=await repository.notes(session, row.id),
            filings=await repository.filings_of(session, "sar", row.id),
            overdue=self.overdue(row),
        )

    async def list(
        self, session: AsyncSession, *, status: str | None, assignee: str | None, limit: int
    ) -> Sequence[AmlCase]:
        return await repository.cases(session, status=status, assignee=assignee, limit=limit)

    async def due_case_ids(self, session: AsyncSession, limit: int = 500) -> Sequence[str]:
        return await repository.open_case_ids(session, limit)

    async def remind(self, session: AsyncSession, case_id: str) -> int:
        """Send the SAR deadline's reminders that fell due (once each), and the overdue
        notice once; returns how many notices went out."""
        deps, now = self.deps, self.deps.clock.now_ns()
        row = await self._case(session, case_id)
        if row.status not in OPEN_STATUSES:
            return 0
        sent = 0
        owed = reminders_due(row.due_ns, now, sent=row.reminders_sent, rules=deps.rules)
        if owed and now <= row.due_ns:
            closest = min(owed)
            await self._notify(
                session,
                row,
                subject=f"tradeguard AML: SAR due in {closest} days",
                body=f"Case {row.id}: the SAR decision and filing are due by "
                f"{ns_to_iso(row.due_ns)} ({closest} days). Status: {row.status}.",
            )
            row.reminders_sent = sorted(set(row.reminders_sent) | set(owed), reverse=True)
            row.updated_ns = now
            await deps.audit(
                session,
                AmlEvent.CASE_REMINDED,
                actor=AML_SYSTEM,
                subject=Party("user", row.user_id),
                data={"case_id": row.id, "days_before": closest, "due": ns_to_iso(row.due_ns)},
            )
            sent += 1
        if now > row.due_ns and not row.overdue_notified:
            row.overdue_notified = True
            row.reminders_sent = sorted(
                set(row.reminders_sent) | set(deps.rules.sar_reminder_days), reverse=True
            )
            row.updated_ns = now
            await self._notify(
                session,
                row,
                subject="tradeguard AML: SAR deadline passed",
                body=f"Case {row.id}: the SAR deadline {ns_to_iso(row.due_ns)} has passed. "
                f"Status: {row.status}.",
            )
            await deps.audit(
                session,
                AmlEvent.CASE_OVERDUE,
                actor=AML_SYSTEM,
                subject=Party("user", row.user_id),
                data={"case_id": row.id, "due": ns_to_iso(row.due_ns)},
            )
            sent += 1
        return sent

    async def _notify(
        self, session: AsyncSession, row: AmlCase, *, subject: str, body: str
    ) -> None:
        contacts = await self.deps.users.contacts_with_roles(session, NOTIFIED_ROLES)
        chosen = [c for c in contacts if c[0] == row.assignee] or contacts
        for _, email in chosen:
            await self.deps.notifier.enqueue_email(
                session, to=email, template="aml_sar_deadline", subject=subject, body=body
            )


# Filings --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Exported:
    filing: AmlFiling
    document: bytes
    problems: tuple[str, ...]


def _retention_cutoff(now_ns: int, years: int) -> int:
    now = datetime.fromtimestamp(now_ns // 1_000_000_000, tz=UTC)
    try:
        then = now.replace(year=now.year - years)
    except ValueError:  # 29 February
        then = now.replace(year=now.year - years, day=28)
    return int(then.timestamp()) * 1_000_000_000


class AmlFilings:
    def __init__(self, deps: AmlDeps, cases: AmlCases) -> None:
        self.deps = deps
        self.cases = cases

    async def _person(self, session: AsyncSession, user_id: str) -> FilingPerson | None:
        if self.deps.subjects is None:
            return None
        return await self.deps.subjects.filing_person(session, user_id)

    def _today(self) -> date:
        return business_day(self.deps.clock.now_ns(), self.deps.tz)

    async def ctr(self, session: AsyncSession, ctr_id: str) -> AmlCtr:
        row = await repository.ctr(session, ctr_id)
        if row is None:
            raise NotFound("no such CTR")
        return row

    async def ctrs(
        self, session: AsyncSession, *, status: str | None, user_id: str | None, limit: int
    ) -> Sequence[AmlCtr]:
        return await repository.ctrs(session, status=status, user_id=user_id, limit=limit)

    async def export_ctr(
        self,
        session: AsyncSession,
        *,
        staff_id: str,
        ctr_id: str,
        final: bool,
        request_id: str | None = None,
    ) -> Exported:
        row = await self.ctr(session, ctr_id)
        same_day = await repository.ctrs_on(session, row.user_id, row.day)
        cash_in = sum((c.total for c in same_day if c.direction == Direction.IN), Decimal(0))
        cash_out = sum((c.total for c in same_day if c.direction == Direction.OUT), Decimal(0))
        subject = subject_of(await self._person(session, row.user_id))
        report = fincen.CtrReport(
            reference=row.id,
            day=date.fromisoformat(row.day),
            cash_in=cash_in,
            cash_out=cash_out,
            subject=subject,
            accounts=tuple(row.accounts),
            filing_date=self._today(),
        )
        root = fincen.build_ctr(report, self.deps.filer)
        missing = self.deps.filer.missing() + subject.missing()
        exported = await self._store(
            session,
            kind="ctr",
            ref_id=row.id,
            user_id=row.user_id,
            root=root,
            draft_root=fincen.build_ctr(replace(report, subject=masked(subject)), self.deps.filer),
            missing=missing,
            final=final,
            staff_id=staff_id,
            request_id=request_id,
        )
        if final:
            for c in same_day:
                c.status = "filed"
                c.amended = False
                c.updated_ns = self.deps.clock.now_ns()
        return exported

    async def export_sar(
        self,
        session: AsyncSession,
        *,
        staff_id: str,
        case_id: str,
        final: bool,
        narrative: str | None = None,
        request_id: str | None = None,
    ) -> Exported:
        view = await self.cases.view(session, case_id)
        row = view.case
        if row.status not in (CaseStatus.SAR_REQUIRED, CaseStatus.SAR_FILED):
            raise AmlConflict("a SAR is exported once the case was decided: SAR required")
        cash = [m for m in view.movements if m.kind in ("deposit", "withdrawal")]
        moves = cash or list(view.movements)
        if not moves:
            raise AmlConflict("the case has no movements to report")
        days = sorted(m.day for m in moves)
        text = (narrative or "").strip()
        if len(text) > MAX_NARRATIVE:
            raise AmlInputError(f"the narrative must be at most {MAX_NARRATIVE} characters")
        auto = " ".join(
            f"[{a.rule}] {a.summary} (detected {ns_to_iso(a.created_ns)[:10]})."
            for a in view.alerts
        )
        person = await self._person(session, row.user_id) if row.suspect_identified else None
        subject = subject_of(person) if row.suspect_identified else None
        report = fincen.SarReport(
            reference=row.id,
            from_day=date.fromisoformat(days[0]),
            to_day=date.fromisoformat(days[-1]),
            amount=sum((m.amount for m in moves), Decimal(0)),
            subject=subject,
            narrative=(text + " " + auto).strip(),
            structuring=any(a.rule.startswith("structuring") for a in view.alerts),
            filing_date=self._today(),
            accounts=tuple(sorted({m.account_id for m in moves})),
        )
        root = fincen.build_sar(report, self.deps.filer)
        missing = self.deps.filer.missing() + (subject.missing() if subject is not None else [])
        draft = replace(report, subject=masked(subject) if subject is not None else None)
        exported = await self._store(
            session,
            kind="sar",
            ref_id=row.id,
            user_id=row.user_id,
            root=root,
            draft_root=fincen.build_sar(draft, self.deps.filer),
            missing=missing,
            final=final,
            staff_id=staff_id,
            request_id=request_id,
        )
        if final:
            row.status = CaseStatus.SAR_FILED.value
            row.updated_ns = self.deps.clock.now_ns()
        return exported

    async def _store(
        self,
        session: AsyncSession,
        *,
        kind: str,
        ref_id: str,
        user_id: str,
        root: Any,
        draft_root: Any,
        missing: Sequence[str],
        final: bool,
        staff_id: str,
        request_id: str | None,
    ) -> Exported:
        """Validated as it would be filed (full tax id); a draft is stored with the tax id
        masked, so only the final export (sent to FinCEN) carries it in full."""
        problems = fincen.validate(root)
        if final and (missing or problems):
            raise FilingRefused(
                "the filing lacks data or breaks FinCEN's element rules",
                missing=list(missing),
                problems=problems,
            )
        document = fincen.to_bytes(root if final else draft_root)
        digest = hashlib.sha256(document).hexdigest()
        filing_id = self.deps.ids.new_str()
        row = AmlFiling(
            id=filing_id,
            kind=kind,
            ref_id=ref_id,
            status="final" if final else "draft",
            missing=list(missing),
            sha256=digest,
            document_enc=keyring_field(self.deps.keyring, document.decode(), record_id=filing_id),
            created_by=staff_id,
            created_ns=self.deps.clock.now_ns(),
        )
        session.add(row)
        await session.flush()
        await self.deps.audit(
            session,
            AmlEvent.FILING_EXPORTED,
            actor=Party("user", staff_id),
            subject=Party("user", user_id),
            data={
                "filing_id": row.id,
                "kind": kind,
                "ref_id": ref_id,
                "status": row.status,
                "sha256": digest,
                "missing": list(missing),
                "problems": len(problems),
            },
            request_id=request_id,
        )
        return Exported(row, document, tuple(problems))

    async def filing(self, session: AsyncSession, filing_id: str) -> AmlFiling:
        row = await repository.filing(session, filing_id)
        if row is None:
            raise NotFound("no such filing")
        return row

    def document(self, row: AmlFiling) -> bytes:
        sealed = row.document_enc
        return sealed.reveal(self.deps.keyring, record_id=row.id).encode()  # type: ignore[union-attr]

    async def read(
        self,
        session: AsyncSession,
        *,
        staff_id: str,
        filing_id: str,
        reason: str,
        request_id: str | None = None,
    ) -> tuple[AmlFiling, bytes]:
        """The stored batch XML for a staff member who states why; the read is a ledger
        event naming the reader, the filing and the reason (never the document's data)."""
        stated = " ".join(reason.split())
        if not MIN_READ_REASON <= len(stated) <= MAX_READ_REASON:
            raise AmlInputError(
                f"a reason of {MIN_READ_REASON} to {MAX_READ_REASON} characters is required"
            )
        row = await self.filing(session, filing_id)
        document = self.document(row)
        await self.deps.audit(
            session,
            AmlEvent.FILING_READ,
            actor=Party("user", staff_id),
            data={
                "filing_id": row.id,
                "kind": row.kind,
                "ref_id": row.ref_id,
                "status": row.status,
                "reason": stated,
            },
            request_id=request_id,
        )
        return row, document

    async def delete_filing(
        self, session: AsyncSession, *, staff_id: str, filing_id: str, request_id: str | None = None
    ) -> None:
        """Refused while the record is younger than the retention period (31 CFR 1010.430)."""
        row = await self.filing(session, filing_id)
        cutoff = _retention_cutoff(self.deps.clock.now_ns(), self.deps.rules.retention_years)
        if row.created_ns >= cutoff:
            raise RetainedRecord(
                f"AML records are kept {self.deps.rules.retention_years} years",
                kept_until=ns_to_iso(row.created_ns + (self.deps.clock.now_ns() - cutoff)),
            )
        await repository.delete_filing(session, row)
        await self.deps.audit(
            session,
            AmlEvent.FILING_DELETED,
            actor=Party("user", staff_id),
            data={"filing_id": row.id, "kind": row.kind, "ref_id": row.ref_id},
            request_id=request_id,
        )

    async def purge(self, session: AsyncSession, *, actor: Party) -> dict[str, int]:
        """Delete AML records older than the retention period (decided cases only)."""
        cutoff = _retention_cutoff(self.deps.clock.now_ns(), self.deps.rules.retention_years)
        counts = await repository.purge_before(session, cutoff)
        await self.deps.audit(
            session,
            AmlEvent.RECORDS_PURGED,
            actor=actor,
            data={"before": ns_to_iso(cutoff), **{k: v for k, v in counts.items()}},
        )
        return counts
