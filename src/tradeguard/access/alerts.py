"""Access alert use cases (IAC-4): raise an alert from a finding (once per rule, staff member
and window), notify compliance and administrators, acknowledge, close with a note.

Every change is a ledger event in the caller's transaction, and the notification is queued
in the same transaction (notify outbox): an alert, its audit record and its emails commit
together or not at all. Services never commit.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.access import alerts_repository as repository
from tradeguard.access.alerts_models import AccessAlert
from tradeguard.access.alerts_repository import AlertFilter
from tradeguard.access.anomalies import (
    MAX_EVIDENCE,
    RULE_DESCRIPTIONS,
    AccessAlertEvent,
    AlertStatus,
    AnomalyRule,
    Finding,
)
from tradeguard.access.domain import Role
from tradeguard.core.clock import Clock, ns_to_iso
from tradeguard.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from tradeguard.core.ids import IdGenerator
from tradeguard.identity.service import AccountService
from tradeguard.ledger.domain import LedgerEvent, Party
from tradeguard.ledger.service import Ledger
from tradeguard.notify.service import Notifier

DETECTOR_PARTY = Party("system", "access-anomaly-detector")
# Who is told of every alert. Compliance reviews them; administrators can act on an account
# at once (lock it, end its sessions). The staff member the alert is about is never told.
NOTIFIED_ROLES = frozenset({Role.COMPLIANCE, Role.ADMIN})
EMAIL_TEMPLATE = "access_alert"
MIN_NOTE_CHARS = 3
MAX_NOTE_CHARS = 2000
BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


class SelfReviewRefused(Forbidden):
    """A staff member may not acknowledge or close an alert about themselves."""

    slug = "self-review"
    title = "You cannot review an alert about yourself"


class AlertNotFound(NotFound):
    slug = "alert-not-found"
    title = "No such alert"


class AlertStateConflict(Conflict):
    slug = "alert-state"
    title = "The alert is not in a state that allows this"


@dataclass(frozen=True, slots=True)
class Reviewer:
    """Who acknowledges or closes: a staff user (API) or an operator (CLI)."""

    party: Party
    # The staff user's id; None for an operator at the command line.
    user_id: str | None = None

    @property
    def label(self) -> str:
        return self.user_id if self.user_id is not None else f"{self.party.kind}:{self.party.id}"


def normalized_note(note: str) -> str:
    """A closing note: required, trimmed, bounded, one paragraph of printable text."""
    text = note.strip()
    if len(text) < MIN_NOTE_CHARS:
        raise InvalidInput(f"note must say what was found (at least {MIN_NOTE_CHARS} characters)")
    if len(text) > MAX_NOTE_CHARS:
        raise InvalidInput(f"note is longer than {MAX_NOTE_CHARS} characters")
    # Control characters could rewrite a reviewer's terminal (the CLI prints notes), and
    # bidirectional overrides could make a note read differently from what it says.
    if any(
        (unicodedata.category(ch) == "Cc" and ch not in "\n\t") or ch in BIDI_CONTROLS
        for ch in text
    ):
        raise InvalidInput("note must be printable text")
    return text


def _fold_evidence(old: Sequence[int], new: Sequence[int]) -> list[int]:
    return sorted(set(old) | set(new))[-MAX_EVIDENCE:]


class AlertDesk:
    """Raises, lists and reviews access alerts; never commits."""

    def __init__(
        self,
        *,
        clock: Clock,
        ids: IdGenerator,
        ledger: Ledger,
        notifier: Notifier,
        accounts: AccountService,
    ) -> None:
        self._clock = clock
        self._ids = ids
        self._ledger = ledger
        self._notifier = notifier
        self._accounts = accounts

    # Raising ------------------------------------------------------------------------------

    async def record(self, session: AsyncSession, finding: Finding) -> AccessAlert | None:
        """Raise an alert for a finding, or fold it into the live alert it duplicates.

        Returns the new alert, or None when the finding was folded into an existing one.
        """
        live = await repository.live_alert(
            session,
            rule=finding.rule.value,
            staff_user_id=finding.staff_id,
            dedup_key=finding.dedup_key,
        )
        if live is not None and _duplicates(live, finding):
            live.window_start_ns = min(live.window_start_ns, finding.window_start_ns)
            live.window_end_ns = max(live.window_end_ns, finding.window_end_ns)
            live.evidence_seqs = _fold_evidence(live.evidence_seqs, finding.evidence)
            live.occurrences += 1
            live.summary = finding.summary
            return None
        row = AccessAlert(
            id=self._ids.new_str(),
            rule=finding.rule.value,
            severity=finding.severity.value,
            staff_user_id=finding.staff_id,
            dedup_key=finding.dedup_key,
            window_start_ns=finding.window_start_ns,
            window_end_ns=finding.window_end_ns,
            summary=finding.summary,
            evidence_seqs=list(finding.evidence),
            occurrences=1,
            status=AlertStatus.OPEN.value,
            created_ns=self._clock.now_ns(),
        )
        repository.add(session, row)
        await self._ledger.append(
            session,
            LedgerEvent(
                type=AccessAlertEvent.RAISED,
                actor=DETECTOR_PARTY,
                subject=Party("user", finding.staff_id),
                data={
                    "alert_id": row.id,
                    "rule": row.rule,
                    "severity": row.severity,
                    "window_start_ns": str(row.window_start_ns),
                    "window_end_ns": str(row.window_end_ns),
                    "evidence_seqs": list(row.evidence_seqs),
                    "summary": row.summary,
                },
            ),
        )
        await self._notify(session, row)
        return row

    async def _notify(self, session: AsyncSession, row: AccessAlert) -> None:
        contacts = await self._accounts.contacts_with_roles(session, NOTIFIED_ROLES)
        body = _email_body(row)
        for user_id, email in contacts:
            if user_id == row.staff_user_id:
                continue
            await self._notifier.enqueue_email(
                session,
                to=email,
                template=EMAIL_TEMPLATE,
                # The subject is stored in plaintext: rule and severity only.
                subject=f"tradeguard access alert: {row.rule} ({row.severity})",
                body=body,
            )

    # Reading ------------------------------------------------------------------------------

    async def search(self, session: AsyncSession, where: AlertFilter) -> Sequence[AccessAlert]:
        return await repository.alerts(session, where)

    async def staff_user(self, session: AsyncSession, login: str) -> str | None:
        """The id of a user by username or email (to filter alerts by staff member)."""
        found = await self._accounts.find_user(session, login)
        return found[0] if found is not None else None

    async def get(self, session: AsyncSession, alert_id: str) -> AccessAlert:
        row = await repository.alert(session, alert_id)
        if row is None:
            raise AlertNotFound("no such alert")
        return row

    # Reviewing ----------------------------------------------------------------------------

    async def _for_review(
        self, session: AsyncSession, alert_id: str, reviewer: Reviewer, action: str
    ) -> AccessAlert:
        row = await repository.alert(session, alert_id, for_update=True)
        if row is None:
            raise AlertNotFound("no such alert")
        # Separation of duties: whoever the alert is about must not be the one who clears it.
        if reviewer.user_id is not None and reviewer.user_id == row.staff_user_id:
            raise SelfReviewRefused(f"you cannot {action} an alert about yourself")
        return row

    async def acknowledge(
        self, session: AsyncSession, alert_id: str, *, reviewer: Reviewer, request_id: str | None
    ) -> AccessAlert:
        row = await self._for_review(session, alert_id, reviewer, "acknowledge")
        if row.status != AlertStatus.OPEN.value:
            raise AlertStateConflict(
                f"the alert is {row.status}; only an open alert is acknowledged"
            )
        row.status = AlertStatus.ACKNOWLEDGED.value
        row.acknowledged_by = reviewer.label
        row.acknowledged_ns = self._clock.now_ns()
        await self._audit(
            session,
            AccessAlertEvent.ACKNOWLEDGED,
            row,
            reviewer=reviewer,
            request_id=request_id,
            extra={},
        )
        return row

    async def close(
        self,
        session: AsyncSession,
        alert_id: str,
        *,
        reviewer: Reviewer,
        note: str,
        request_id: str | None,
    ) -> AccessAlert:
        text = normalized_note(note)
        row = await self._for_review(session, alert_id, reviewer, "close")
        if row.status == AlertStatus.CLOSED.value:
            raise AlertStateConflict("the alert is already closed")
        row.status = AlertStatus.CLOSED.value
        row.closed_by = reviewer.label
        row.closed_ns = self._clock.now_ns()
        row.note = text
        await self._audit(
            session,
            AccessAlertEvent.CLOSED,
            row,
            reviewer=reviewer,
            request_id=request_id,
            extra={"note": text},
        )
        return row

    async def refused_self_review(
        self, session: AsyncSession, alert_id: str, *, reviewer: Reviewer, request_id: str | None
    ) -> None:
        """Record a refused self-review (committed on its own by the caller: the request fails)."""
        await self._ledger.append(
            session,
            LedgerEvent(
                type=AccessAlertEvent.SELF_REVIEW_REFUSED,
                actor=reviewer.party,
                subject=Party("user", reviewer.user_id) if reviewer.user_id else None,
                data={"alert_id": alert_id},
                request_id=request_id,
            ),
        )

    async def _audit(
        self,
        session: AsyncSession,
        event_type: AccessAlertEvent,
        row: AccessAlert,
        *,
        reviewer: Reviewer,
        request_id: str | None,
        extra: dict[str, Any],
    ) -> None:
        await self._ledger.append(
            session,
            LedgerEvent(
                type=event_type,
                actor=reviewer.party,
                subject=Party("user", row.staff_user_id),
                data={"alert_id": row.id, "rule": row.rule, **extra},
                request_id=request_id,
            ),
        )


def _duplicates(live: AccessAlert, finding: Finding) -> bool:
    """Whether a finding belongs to a live alert of the same rule, staff member and key."""
    if finding.fold_within_ns is None:
        return True
    return finding.window_end_ns - live.window_end_ns <= finding.fold_within_ns


def _email_body(row: AccessAlert) -> str:
    rule = AnomalyRule(row.rule)
    seqs = ", ".join(str(s) for s in row.evidence_seqs[-10:])
    return (
        f"An access alert was raised.\n\n"
        f"Alert:      {row.id}\n"
        f"Rule:       {row.rule}: {RULE_DESCRIPTIONS[rule]}\n"
        f"Severity:   {row.severity}\n"
        f"Staff user: {row.staff_user_id}\n"
        f"Window:     {ns_to_iso(row.window_start_ns)} to {ns_to_iso(row.window_end_ns)}\n"
        f"Summary:    {row.summary}\n"
        f"Evidence:   ledger sequence numbers {seqs}\n\n"
        f"Review it with `tradeguard access alerts show {row.id}` or "
        f"GET /api/v1/access/alerts/{row.id}, and close it with a note once it is explained.\n"
    )
