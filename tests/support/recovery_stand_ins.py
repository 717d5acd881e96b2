"""Stand-ins for the KYC contracts account recovery uses (kyc/contracts.py), until the lead
wires onboarding's applicant directory and the documents' evidence source: dict-backed,
for tests only (never in src/)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.kyc.contracts import (
    ApplicantFacts,
    EvidenceStatus,
    IdentityEvidence,
)


@dataclass
class DictApplicants:
    """ApplicantDirectory over a dict of user id → facts."""

    facts: dict[str, ApplicantFacts] = field(default_factory=dict)

    async def applicant(self, session: AsyncSession, user_id: str) -> ApplicantFacts | None:
        return self.facts.get(user_id)

    def add(
        self,
        user_id: str,
        *,
        birth_date: date = date(1985, 4, 12),
        postal_code: str = "SW1A 1AA",
        tax_id_last4: str = "6789",
    ) -> ApplicantFacts:
        facts = ApplicantFacts(
            user_id=user_id,
            application_id=f"app-{user_id[:8]}",
            given_names="Alice",
            family_name="Example",
            birth_date=birth_date,
            nationality="GB",
            country="GB",
            status="approved",
            tax_id_last4=tax_id_last4,
            postal_code=postal_code,
        )
        self.facts[user_id] = facts
        return facts


@dataclass
class DictEvidence:
    """IdentityEvidenceSource over a dict of user id → evidence (none: nothing uploaded)."""

    by_user: dict[str, IdentityEvidence] = field(default_factory=dict)

    async def evidence(self, session: AsyncSession, user_id: str) -> IdentityEvidence:
        return self.by_user.get(
            user_id, IdentityEvidence(identity=EvidenceStatus.NONE, address=EvidenceStatus.NONE)
        )

    def set(self, user_id: str, status: EvidenceStatus, document_id: str | None) -> None:
        self.by_user[user_id] = IdentityEvidence(
            identity=status, address=EvidenceStatus.NONE, identity_document_id=document_id
        )
