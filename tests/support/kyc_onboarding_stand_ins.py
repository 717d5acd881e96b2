"""Small stand-ins for the screening (kyc/sanctions) and identity-evidence (kyc/documents)
services that onboarding depends on (kyc/contracts.py), for onboarding's own tests: dict
backed, outcomes set by the test. The lead replaces them with the real services after the
parts are merged; nothing in src/ uses them."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.kyc.contracts import (
    EvidenceStatus,
    IdentityEvidence,
    ScreeningDecision,
    ScreeningHit,
    ScreeningOutcome,
    ScreeningSubject,
    SubjectKind,
)
from tradeguard.ledger.domain import Party

CLEAR = ScreeningOutcome(ScreeningDecision.CLEAR, (), "test-1")


def hit(decision: ScreeningDecision = ScreeningDecision.REVIEW) -> ScreeningHit:
    return ScreeningHit(
        hit_id="hit-1",
        list_name="OFAC SDN",
        list_version="test-1",
        entry_id="1234",
        matched_name="A LISTED PERSON",
        score=0.91,
        decision=decision,
        reasons=("name similarity 0.91",),
    )


@dataclass
class StandInScreener:
    """Screens by name: `outcomes` maps a full name to its outcome (CLEAR otherwise); the
    standing is the last outcome of the subject, or what `standings` says."""

    outcomes: dict[str, ScreeningOutcome] = field(default_factory=dict)
    standings: dict[str, ScreeningOutcome] = field(default_factory=dict)
    screened: list[tuple[ScreeningSubject, str]] = field(default_factory=list)

    async def screen(
        self,
        session: AsyncSession,
        subject: ScreeningSubject,
        *,
        reason: str,
        actor: Party,
        request_id: str | None = None,
    ) -> ScreeningOutcome:
        self.screened.append((subject, reason))
        outcome = self.outcomes.get(subject.name, CLEAR)
        self.standings[subject.ref] = outcome
        return outcome

    async def standing(
        self, session: AsyncSession, kind: SubjectKind, ref: str
    ) -> ScreeningOutcome:
        return self.standings.get(ref, CLEAR)

    def clear(self, ref: str, *, cleared_hits: int = 0) -> None:
        """A reviewer cleared the subject's hits."""
        self.standings[ref] = ScreeningOutcome(
            ScreeningDecision.CLEAR, tuple(hit() for _ in range(cleared_hits)), "test-1"
        )


@dataclass
class StandInEvidence:
    """Identity evidence per user id; NONE for both until the test says otherwise."""

    by_user: dict[str, IdentityEvidence] = field(default_factory=dict)

    async def evidence(self, session: AsyncSession, user_id: str) -> IdentityEvidence:
        return self.by_user.get(user_id, IdentityEvidence(EvidenceStatus.NONE, EvidenceStatus.NONE))

    def verify(
        self,
        user_id: str,
        *,
        identity: EvidenceStatus = EvidenceStatus.VERIFIED,
        address: EvidenceStatus = EvidenceStatus.VERIFIED,
    ) -> None:
        self.by_user[user_id] = IdentityEvidence(identity, address, "doc-id", "doc-address")
