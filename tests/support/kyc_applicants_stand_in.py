"""A stand-in for onboarding's ApplicantDirectory (kyc/contracts.py), backed by a dict.

The identity documents tests need an applicant's declared facts before onboarding exists on
this branch; the lead replaces this file's use with the real onboarding directory at merge.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.kyc.contracts import ApplicantFacts


class StandInApplicants:
    """`ApplicantDirectory` over a dict of user id -> facts."""

    def __init__(self) -> None:
        self.facts: dict[str, ApplicantFacts] = {}

    def declare(
        self,
        user_id: str,
        *,
        given_names: str = "Anna Maria",
        family_name: str = "Eriksson",
        birth_date: date = date(1974, 8, 12),
        nationality: str = "DE",
        country: str = "DE",
    ) -> ApplicantFacts:
        facts = ApplicantFacts(
            user_id=user_id,
            application_id=f"app-{user_id}",
            given_names=given_names,
            family_name=family_name,
            birth_date=birth_date,
            nationality=nationality,
            country=country,
            status="submitted",
        )
        self.facts[user_id] = facts
        return facts

    async def applicant(self, session: AsyncSession, user_id: str) -> ApplicantFacts | None:
        return self.facts.get(user_id)
