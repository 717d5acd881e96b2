"""Account recovery after a takeover (ATO-3): identity verification, credential reset, a
review of recent activity from the ledger, reversal of fraudulent trades, and the case's
close, worked by staff.

Every step appends its ledger event in the caller's transaction; nothing here commits. The
consequential steps (reset the credentials, reverse an execution, close the case, which
lifts the withdrawal freeze when the account is recovered) are proposals: one staff member
proposes, a different one approves, and only the approval carries the step out (four-eyes,
as a freeze's lift). Nobody works a recovery of their own account.

Identity is re-verified against what is on file before anything is reset or lifted: the
KYC record (birth date, postal code, tax id's last four, all matching, a few attempts) or a
new identity document verified by the documents checks. Both come through the KYC contracts
(kyc/contracts.py), injected: recovery never reads KYC's tables.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.access.domain import STAFF_ROLES
from tradeguard.core.clock import NS_PER_SECOND, Clock
from tradeguard.core.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    ServiceUnavailable,
)
from tradeguard.core.ids import IdGenerator
from tradeguard.fraud import repository
from tradeguard.fraud.domain import FraudEvent, ReviewOutcome
from tradeguard.fraud.models import RecoveryCase, RecoveryMark, RecoveryProposal
from tradeguard.fraud.service import FourEyesRequired
from tradeguard.fraud.timeline import (
    DEFAULT_LOOKBACK_DAYS,
    MAX_LOOKBACK_DAYS,
    RECORD_ATTEMPTS,
    RECORD_WINDOW_DAYS,
    CaseOutcome,
    CaseStatus,
    MarkKind,
    ProposalAction,
    ProposalStatus,
    RecoveryEvent,
    StatedIdentity,
    TimelineEntry,
    VerifyMethod,
    describe,
    mark_kind,
    record_matches,
)
from tradeguard.identity.administration import CredentialsReset, UserAdministration
from tradeguard.identity.common import RequestInfo
from tradeguard.identity.service import AccountService as IdentityAccounts
from tradeguard.kyc.contracts import (
    ApplicantDirectory,
    ApplicantFacts,
    EvidenceStatus,
    IdentityEvidence,
    IdentityEvidenceSource,
)
from tradeguard.ledger.domain import LedgerEvent, Party
from tradeguard.ledger.search.query import EventFilter, SortOrder
from tradeguard.ledger.search.service import search_page
from tradeguard.ledger.service import Ledger, events_after
from tradeguard.trading.accounts import AccountService as TradingAccounts
from tradeguard.trading.reversals import Reversal, ReversalService

DAY_NS: Final = 86_400 * NS_PER_SECOND
PAGE: Final = 500
# At most this many events per subject are read into one timeline (a month of a very
# active account); the answer says when it stopped short.
MAX_EVENTS: Final = 5_000


class RecoveryConflict(Conflict):
    slug = "recovery-step-refused"
    title = "This recovery step cannot be taken now"


class IdentityNotVerified(RecoveryConflict):
    slug = "identity-not-verified"
    title = "Identity must be re-verified first"


class KycUnavailable(ServiceUnavailable):
    slug = "kyc-unavailable"
    title = "The KYC record cannot be reached"


class UnwiredApplicants:
    """Until the app wires onboarding's directory (kyc/contracts.py): refuse, never guess."""

    async def applicant(self, session: AsyncSession, user_id: str) -> ApplicantFacts | None:
        raise KycUnavailable("the KYC record is not connected to account recovery")


class UnwiredEvidence:
    async def evidence(self, session: AsyncSession, user_id: str) -> IdentityEvidence:
        raise KycUnavailable("identity documents are not connected to account recovery")


@dataclass(frozen=True, slots=True)
class Verification:
    verified: bool
    method: VerifyMethod
    attempts_left: int


@dataclass(frozen=True, slots=True)
class CaseView:
    case: RecoveryCase
    proposals: tuple[RecoveryProposal, ...]
    marks: tuple[RecoveryMark, ...]
    freezes_active: int
    reversed_executions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Timeline:
    user_id: str
    since_ns: int
    until_ns: int
    entries: tuple[TimelineEntry, ...]
    marked: frozenset[int]
    truncated: bool


@dataclass(frozen=True, slots=True)
class Approval:
    proposal: RecoveryProposal
    case: RecoveryCase
    reset: CredentialsReset | None = None
    reversal: Reversal | None = None
    freezes_lifted: int = 0


@dataclass
class AccountRecovery:
    clock: Clock
    ids: IdGenerator
    ledger: Ledger
    administration: UserAdministration
    identity_accounts: IdentityAccounts
    trading_accounts: TradingAccounts
    reversals: ReversalService
    # The KYC contracts (kyc/contracts.py), wired by the app once onboarding and documents
    # are there; until then recovery refuses identity checks (503) rather than guess.
    applicants: ApplicantDirectory = field(default_factory=UnwiredApplicants)
    evidence: IdentityEvidenceSource = field(default_factory=UnwiredEvidence)
    # Told of sessions ended here (the API process's session-state cache drops them).
    on_sessions_ended: Callable[[tuple[str, ...]], None] | None = None
    # Attempts against the KYC record belong to the user over a window, across cases: a
    # closed case and a new one do not bring fresh guesses at the tax id's last four.
    record_attempts: int = RECORD_ATTEMPTS
    record_window_ns: int = RECORD_WINDOW_DAYS * 86_400 * 1_000_000_000

    # Opening ---------------------------------------------------------------------------------

    async def open_case(
        self,
        session: AsyncSession,
        *,
        actor: Party,
        user_id: str | None = None,
        review_id: str | None = None,
        note: str | None = None,
    ) -> RecoveryCase:
        """Open a recovery for a customer, directly or from their takeover review."""
        if review_id is not None:
            review = await repository.review(session, review_id)
            if review is None:
                raise NotFound("no such review")
            if user_id is not None and user_id != review.user_id:
                raise InvalidInput("the review is about another user")
            user_id = review.user_id
        if user_id is None:
            raise InvalidInput("name the user or the takeover review to recover from")
        _not_own_account(user_id, actor)
        role = await self.identity_accounts.role_of(session, user_id)
        if role is None:
            raise NotFound("no such user")
        if role in STAFF_ROLES:
            raise RecoveryConflict("staff accounts are not recovered this way")
        if await repository.open_recovery_of(session, user_id) is not None:
            raise RecoveryConflict("the user already has an open recovery")
        if review_id is None:
            open_review = await repository.open_review_of(session, user_id)
            review_id = open_review.id if open_review is not None else None
        evidence = await self.evidence.evidence(session, user_id)
        case = RecoveryCase(
            id=self.ids.new_str(),
            user_id=user_id,
            review_id=review_id,
            status=CaseStatus.OPEN.value,
            opened_ns=self.clock.now_ns(),
            opened_by=actor.id,
            document_on_file=evidence.identity_document_id,
            record_attempts=0,
            note=note,
        )
        session.add(case)
        await self._event(
            session,
            RecoveryEvent.OPENED,
            case,
            actor=actor,
            data={"review_id": review_id, "document_on_file": case.document_on_file is not None},
        )
        return case

    # Identity ----------------------------------------------------------------------------

    async def verify_with_record(
        self, session: AsyncSession, *, case_id: str, stated: StatedIdentity, actor: Party
    ) -> Verification:
        """Compare what the caller states with their KYC record (all must match). A failure
        spends one of a few attempts and is returned, not raised, so that it commits; after
        the last one only a new identity document will do. The record's values are never
        returned, and the answer never says which field was wrong."""
        # Locked: two attempts at once must each spend one of the few.
        case = await self._open_case(session, case_id, actor, lock=True)
        if case.verified_ns is not None:
            raise RecoveryConflict("identity is already re-verified")
        spent = case.record_attempts + await self._spent_elsewhere(session, case)
        if spent >= self.record_attempts:
            raise RecoveryConflict(
                "no attempts against the record are left: verify with a new identity document"
            )
        facts = await self.applicants.applicant(session, case.user_id)
        if facts is None:
            raise RecoveryConflict(
                "the user has no KYC record on file: verify with a new identity document"
            )
        case.record_attempts += 1
        matched = record_matches(
            stated,
            birth_date=facts.birth_date,
            postal_code=facts.postal_code,
            tax_id_last4=facts.tax_id_last4,
        )
        left = max(self.record_attempts - spent - 1, 0)
        if matched:
            await self._verified(session, case, VerifyMethod.KYC_RECORD, actor)
        else:
            await self._event(
                session,
                RecoveryEvent.VERIFICATION_FAILED,
                case,
                actor=actor,
                data={"method": VerifyMethod.KYC_RECORD.value, "attempts_left": left},
            )
        return Verification(matched, VerifyMethod.KYC_RECORD, 0 if matched else left)

    async def verify_with_document(
        self, session: AsyncSession, *, case_id: str, actor: Party
    ) -> Verification:
        """Accept a new identity document the documents checks VERIFIED: a different one from
        the document on file when the case opened (the intruder may hold that one)."""
        # Locked: two attempts at once must each spend one of the few.
        case = await self._open_case(session, case_id, actor, lock=True)
        if case.verified_ns is not None:
            raise RecoveryConflict("identity is already re-verified")
        evidence = await self.evidence.evidence(session, case.user_id)
        if evidence.identity is not EvidenceStatus.VERIFIED or not evidence.identity_document_id:
            raise RecoveryConflict("the user has no verified identity document yet")
        if evidence.identity_document_id == case.document_on_file:
            raise RecoveryConflict(
                "the verified document is the one on file when the case opened: a new one is needed"
            )
        await self._verified(
            session, case, VerifyMethod.DOCUMENT, actor, document=evidence.identity_document_id
        )
        spent = case.record_attempts + await self._spent_elsewhere(session, case)
        return Verification(True, VerifyMethod.DOCUMENT, max(self.record_attempts - spent, 0))

    async def _spent_elsewhere(self, session: AsyncSession, case: RecoveryCase) -> int:
        """Failed attempts against the record in the user's other cases within the window
        (one case is open at a time, and it is locked: the count cannot race)."""
        return await repository.record_attempts_of_user(
            session,
            case.user_id,
            since_ns=self.clock.now_ns() - self.record_window_ns,
            other_than=case.id,
        )

    async def _verified(
        self,
        session: AsyncSession,
        case: RecoveryCase,
        method: VerifyMethod,
        actor: Party,
        document: str | None = None,
    ) -> None:
        case.verified_ns = self.clock.now_ns()
        case.verified_by = actor.id
        case.verified_method = method.value
        await self._event(
            session,
            RecoveryEvent.VERIFIED,
            case,
            actor=actor,
            data={"method": method.value, "document_id": document},
        )

    # Proposals and approvals (four-eyes) -------------------------------------------------

    async def propose(
        self,
        session: AsyncSession,
        *,
        case_id: str,
        action: ProposalAction,
        reason: str,
        actor: Party,
        execution_id: str | None = None,
        outcome: CaseOutcome | None = None,
    ) -> RecoveryProposal:
        """Propose a consequential step; a different staff member approves it."""
        case = await self._open_case(session, case_id, actor, lock=True)
        target: str | None = None
        pending = [
            p
            for p in await repository.proposals_of(session, case.id)
            if p.status == ProposalStatus.PENDING
        ]
        if action is ProposalAction.RESET_CREDENTIALS:
            self._require_verified(case, "credentials can be reset")
            if case.credentials_reset_ns is not None:
                raise RecoveryConflict("the credentials were already reset in this case")
        elif action is ProposalAction.REVERSE_EXECUTION:
            if execution_id is None:
                raise InvalidInput("name the execution to reverse")
            await self._reversible(session, case, execution_id)
            target = execution_id
        else:
            if outcome is None:
                raise InvalidInput("give the outcome to close the case with")
            if outcome is CaseOutcome.RECOVERED:
                self._require_verified(case, "the case can close as recovered")
                if case.credentials_reset_ns is None:
                    raise RecoveryConflict("reset the credentials before closing as recovered")
            target = outcome.value
        if any(p.action == action.value and p.target == target for p in pending):
            raise RecoveryConflict("the same step is already proposed")
        row = RecoveryProposal(
            id=self.ids.new_str(),
            case_id=case.id,
            action=action.value,
            target=target,
            reason=reason,
            status=ProposalStatus.PENDING.value,
            proposed_by=actor.id,
            proposed_ns=self.clock.now_ns(),
        )
        session.add(row)
        await self._event(
            session,
            RecoveryEvent.PROPOSED,
            case,
            actor=actor,
            data={
                "proposal_id": row.id,
                "action": action.value,
                "target": target,
                "reason": reason,
            },
        )
        return row

    async def withdraw(
        self, session: AsyncSession, *, proposal_id: str, actor: Party
    ) -> RecoveryProposal:
        """Withdraw a pending proposal (any member of the case's staff): nothing happens."""
        row, case = await self._pending(session, proposal_id, actor)
        if not await repository.decide_proposal(
            session,
            row.id,
            status=ProposalStatus.WITHDRAWN.value,
            by=actor.id,
            now_ns=self.clock.now_ns(),
        ):
            raise RecoveryConflict("the proposal was decided meanwhile")
        await session.refresh(row)
        await self._event(
            session,
            RecoveryEvent.PROPOSAL_WITHDRAWN,
            case,
            actor=actor,
            data={"proposal_id": row.id, "action": row.action},
        )
        return row

    async def approve(
        self,
        session: AsyncSession,
        *,
        proposal_id: str,
        actor: Party,
        request: RequestInfo | None = None,
    ) -> Approval:
        """A second staff member, never the proposer, approves: the step is carried out now,
        in this transaction, audited with both names."""
        row, case = await self._pending(session, proposal_id, actor)
        if row.proposed_by == actor.id:
            raise FourEyesRequired("the staff member who proposed cannot also approve")
        proposer = Party("staff", row.proposed_by)
        action = ProposalAction(row.action)
        # Check again at approval: the case may have moved since the proposal.
        if action is ProposalAction.RESET_CREDENTIALS:
            self._require_verified(case, "credentials can be reset")
        if not await repository.decide_proposal(
            session,
            row.id,
            status=ProposalStatus.APPROVED.value,
            by=actor.id,
            now_ns=self.clock.now_ns(),
        ):
            raise RecoveryConflict("the proposal was decided meanwhile")
        await session.refresh(row)
        await self._event(
            session,
            RecoveryEvent.APPROVED,
            case,
            actor=actor,
            data={
                "proposal_id": row.id,
                "action": row.action,
                "target": row.target,
                "proposed_by": proposer.as_json(),
            },
        )
        if action is ProposalAction.RESET_CREDENTIALS:
            reset = await self._reset(
                session, case, row, proposer=proposer, approver=actor, request=request
            )
            return Approval(row, case, reset=reset)
        if action is ProposalAction.REVERSE_EXECUTION:
            assert row.target is not None  # noqa: S101 - set by propose
            await self._reversible(session, case, row.target)
            reversal = await self.reversals.reverse_execution(
                session,
                row.target,
                reason=row.reason,
                actor=actor,
                account_ids=await self._account_ids(session, case.user_id),
                reference=f"recovery:{case.id}",
                approved_by=proposer,
            )
            return Approval(row, case, reversal=reversal)
        lifted = await self._close(session, case, row, proposer, actor)
        return Approval(row, case, freezes_lifted=lifted)

    async def _reset(
        self,
        session: AsyncSession,
        case: RecoveryCase,
        row: RecoveryProposal,
        *,
        proposer: Party,
        approver: Party,
        request: RequestInfo | None,
    ) -> CredentialsReset:
        if case.credentials_reset_ns is not None:
            raise RecoveryConflict("the credentials were already reset in this case")
        reset = await self.administration.reset_credentials(
            session,
            user_id=case.user_id,
            accounts=self.identity_accounts,
            actor=approver,
            approved_by=proposer,
            reason=f"account recovery {case.id}: {row.reason}",
            request=request or RequestInfo(),
        )
        case.credentials_reset_ns = self.clock.now_ns()
        await self._event(
            session,
            RecoveryEvent.CREDENTIALS_RESET,
            case,
            actor=approver,
            data={
                "proposal_id": row.id,
                "proposed_by": proposer.as_json(),
                "sessions_ended": len(reset.sessions_ended),
                "factors_removed": reset.factors_removed,
                "devices_untrusted": reset.devices_untrusted,
                "reset_link_sent": reset.reset_link_sent,
                # No API keys exist in the project yet; when they do, they are revoked here.
                "api_keys_revoked": 0,
            },
        )
        if reset.sessions_ended and self.on_sessions_ended is not None:
            self.on_sessions_ended(reset.sessions_ended)
        return reset

    async def _close(
        self,
        session: AsyncSession,
        case: RecoveryCase,
        row: RecoveryProposal,
        proposer: Party,
        approver: Party,
    ) -> int:
        outcome = CaseOutcome(row.target or "")
        now = self.clock.now_ns()
        lifted = 0
        if outcome is CaseOutcome.RECOVERED:
            self._require_verified(case, "the case can close as recovered")
            for freeze in await repository.active_freezes(session, case.user_id):
                if await repository.lift_for_recovery(
                    session,
                    freeze.id,
                    now_ns=now,
                    asked_by=proposer.id,
                    by=approver.id,
                    reason=f"account recovered (case {case.id})",
                ):
                    lifted += 1
                    await self._fraud_event(
                        session,
                        FraudEvent.FREEZE_LIFTED,
                        case.user_id,
                        actor=approver,
                        data={
                            "freeze_id": freeze.id,
                            "requested_by": proposer.id,
                            "recovery_id": case.id,
                        },
                    )
        if case.review_id is not None:
            review_outcome = (
                ReviewOutcome.FALSE_ALARM
                if outcome is CaseOutcome.NOT_A_TAKEOVER
                else ReviewOutcome.TAKEOVER_CONFIRMED
            )
            note = f"closed by account recovery {case.id}: {outcome.value}"
            if await repository.close_review(
                session,
                case.review_id,
                now_ns=now,
                by=approver.id,
                outcome=review_outcome.value,
                note=note,
            ):
                await self._fraud_event(
                    session,
                    FraudEvent.REVIEW_CLOSED,
                    case.user_id,
                    actor=approver,
                    data={
                        "review_id": case.review_id,
                        "outcome": review_outcome.value,
                        "note": note,
                    },
                )
        case.status = CaseStatus.CLOSED.value
        case.outcome = outcome.value
        case.closed_ns = now
        case.closed_by = approver.id
        await self._event(
            session,
            RecoveryEvent.CLOSED,
            case,
            actor=approver,
            data={
                "proposal_id": row.id,
                "outcome": outcome.value,
                "proposed_by": proposer.as_json(),
                "freezes_lifted": lifted,
                "reason": row.reason,
            },
        )
        return lifted

    async def _pending(
        self, session: AsyncSession, proposal_id: str, actor: Party
    ) -> tuple[RecoveryProposal, RecoveryCase]:
        row = await repository.proposal(session, proposal_id)
        if row is None:
            raise NotFound("no such proposal")
        case = await self._open_case(session, row.case_id, actor, lock=True)
        if row.status != ProposalStatus.PENDING:
            raise RecoveryConflict(f"the proposal is already {row.status}")
        return row, case

    def _require_verified(self, case: RecoveryCase, what: str) -> None:
        if case.verified_ns is None:
            raise IdentityNotVerified(f"re-verify the user's identity before {what}")

    async def _account_ids(self, session: AsyncSession, user_id: str) -> frozenset[str]:
        return frozenset(a.id for a in await self.trading_accounts.list_for(session, user_id))

    async def _reversible(
        self, session: AsyncSession, case: RecoveryCase, execution_id: str
    ) -> None:
        """An execution marked fraudulent in this case, of the user's, not yet reversed."""
        marks = await repository.marks_of(session, case.id)
        if not any(m.kind == MarkKind.EXECUTION and m.ref_id == execution_id for m in marks):
            raise RecoveryConflict("mark the execution as fraudulent in the timeline first")
        execution = await self.reversals.execution(session, execution_id)
        if execution is None or execution.account_id not in await self._account_ids(
            session, case.user_id
        ):
            raise NotFound("no such execution in the user's accounts")
        if await self.reversals.reversal_of(session, execution_id) is not None:
            raise RecoveryConflict("the execution is already reversed")

    # Timeline ----------------------------------------------------------------------------

    async def timeline(
        self,
        session: AsyncSession,
        *,
        case_id: str,
        actor: Party,
        since_ns: int | None = None,
        until_ns: int | None = None,
    ) -> Timeline:
        """The user's activity from the ledger, in chain order: events about the user and
        about each of their trading accounts, from `since_ns` (default: 30 days before the
        case opened) up to `until_ns` (default: now). Reading it is audited."""
        case = await self._case(session, case_id, actor)
        now = self.clock.now_ns()
        since = case.opened_ns - DEFAULT_LOOKBACK_DAYS * DAY_NS if since_ns is None else since_ns
        until = now if until_ns is None else until_ns
        if since >= until:
            raise InvalidInput("the window's start must be before its end")
        if until - since > MAX_LOOKBACK_DAYS * DAY_NS:
            raise InvalidInput(f"the window is at most {MAX_LOOKBACK_DAYS} days")
        subjects = [case.user_id, *sorted(await self._account_ids(session, case.user_id))]
        found: dict[int, tuple[int, dict[str, Any]]] = {}
        truncated = False
        conn = await session.connection()
        for subject in subjects:
            where = EventFilter(subject_id=subject, from_ns=since, to_ns=until + 1)
            cursor: str | None = None
            read = 0
            while True:
                page = await search_page(
                    conn, where, sort=SortOrder.OLDEST, limit=PAGE, cursor=cursor
                )
                for event in page.items:
                    found[event.seq] = (event.occurred_ns, event.document)
                read += len(page.items)
                cursor = page.next_cursor
                if cursor is None:
                    break
                if read >= MAX_EVENTS:
                    truncated = True
                    break
        documents = [doc for _, doc in found.values()]
        keys = self.ledger.subject_keys
        if keys is not None:
            # Opened to mask the address for display; the clear value goes no further.
            await keys.open_documents(session, documents)
        entries = tuple(
            entry
            for seq in sorted(found)
            if (entry := describe(seq, found[seq][0], found[seq][1])) is not None
        )
        marks = await repository.marks_of(session, case.id)
        await self._event(
            session,
            RecoveryEvent.TIMELINE_VIEWED,
            case,
            actor=actor,
            data={
                "since_ns": str(since),
                "until_ns": str(until),
                "entries": len(entries),
                "truncated": truncated,
            },
        )
        return Timeline(
            user_id=case.user_id,
            since_ns=since,
            until_ns=until,
            entries=entries,
            marked=frozenset(m.seq for m in marks),
            truncated=truncated,
        )

    async def mark(
        self, session: AsyncSession, *, case_id: str, seq: int, note: str, actor: Party
    ) -> RecoveryMark:
        """Mark a timeline entry fraudulent by its sequence number: an execution to reverse,
        a withdrawal to chase, or anything else worth the case's record."""
        case = await self._open_case(session, case_id, actor)
        if seq < 0:
            raise InvalidInput("a sequence number is not negative")
        found = await events_after(session, after_seq=seq - 1, limit=1)
        document = found[0].document if found and found[0].seq == seq else None
        subjects = {case.user_id, *await self._account_ids(session, case.user_id)}
        subject = document.get("subject") if document is not None else None
        if (
            document is None
            or not isinstance(subject, Mapping)
            or subject.get("id") not in subjects
        ):
            raise NotFound("no entry with that sequence number in the user's activity")
        event_type = str(document.get("type", ""))
        kind = mark_kind(event_type)
        data = document.get("data") if isinstance(document.get("data"), Mapping) else {}
        assert isinstance(data, Mapping)  # noqa: S101 - narrowed above
        ref_key = {MarkKind.EXECUTION: "execution_id", MarkKind.WITHDRAWAL: "withdrawal_id"}
        ref = data.get(ref_key[kind]) if kind in ref_key else None
        if any(m.seq == seq for m in await repository.marks_of(session, case.id)):
            raise RecoveryConflict("the entry is already marked")
        row = RecoveryMark(
            id=self.ids.new_str(),
            case_id=case.id,
            seq=seq,
            event_type=event_type[:64],
            kind=kind.value,
            ref_id=ref if isinstance(ref, str) else None,
            note=note,
            marked_by=actor.id,
            marked_ns=self.clock.now_ns(),
        )
        session.add(row)
        await self._event(
            session,
            RecoveryEvent.MARKED,
            case,
            actor=actor,
            data={"seq": seq, "event_type": event_type, "kind": kind.value, "ref_id": row.ref_id},
        )
        return row

    # Reading -----------------------------------------------------------------------------

    async def cases(
        self, session: AsyncSession, *, status: str | None, user_id: str | None, limit: int
    ) -> Sequence[RecoveryCase]:
        return await repository.recovery_cases(session, status=status, user_id=user_id, limit=limit)

    async def view(self, session: AsyncSession, *, case_id: str, actor: Party) -> CaseView:
        case = await self._case(session, case_id, actor)
        proposals = await repository.proposals_of(session, case.id)
        marks = await repository.marks_of(session, case.id)
        freezes = await repository.active_freezes(session, case.user_id)
        reversed_ids = []
        for mark in marks:
            if (
                mark.ref_id
                and mark.kind == MarkKind.EXECUTION
                and await self.reversals.reversal_of(session, mark.ref_id) is not None
            ):
                reversed_ids.append(mark.ref_id)
        return CaseView(case, tuple(proposals), tuple(marks), len(freezes), tuple(reversed_ids))

    async def _case(self, session: AsyncSession, case_id: str, actor: Party) -> RecoveryCase:
        case = await repository.recovery_case(session, case_id)
        if case is None:
            raise NotFound("no such recovery")
        _not_own_account(case.user_id, actor)
        return case

    async def _open_case(
        self, session: AsyncSession, case_id: str, actor: Party, *, lock: bool = False
    ) -> RecoveryCase:
        case = await repository.recovery_case(session, case_id, lock=lock)
        if case is None:
            raise NotFound("no such recovery")
        _not_own_account(case.user_id, actor)
        if case.status != CaseStatus.OPEN:
            raise RecoveryConflict("the recovery is closed")
        return case

    # Ledger ------------------------------------------------------------------------------

    async def _event(
        self,
        session: AsyncSession,
        event_type: RecoveryEvent,
        case: RecoveryCase,
        *,
        actor: Party,
        data: Mapping[str, Any],
    ) -> None:
        await self.ledger.append(
            session,
            LedgerEvent(
                type=event_type.value,
                actor=actor,
                subject=Party("user", case.user_id),
                data={"recovery_id": case.id, **data},
            ),
        )

    async def _fraud_event(
        self,
        session: AsyncSession,
        event_type: FraudEvent,
        user_id: str,
        *,
        actor: Party,
        data: Mapping[str, Any],
    ) -> None:
        await self.ledger.append(
            session,
            LedgerEvent(
                type=event_type.value,
                actor=actor,
                subject=Party("user", user_id),
                data=dict(data),
            ),
        )


def _not_own_account(user_id: str, actor: Party) -> None:
    if actor.id == user_id:
        raise Forbidden("staff cannot work a recovery of their own account")


def parse_birth_date(value: str) -> date:
    """An ISO date (YYYY-MM-DD); the value is never echoed in the error."""
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput("the birth date is YYYY-MM-DD") from exc
