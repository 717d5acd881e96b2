"""Onboarding's answers to the other parts' questions (kyc/contracts.py), and trading's
onboarding gate: each a small class over the service, handed to the other part at wiring."""

from __future__ import annotations

from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.kyc.contracts import (
    ApplicantFacts,
    CustomerRiskProfile,
    FilingPerson,
    ScreeningOutcome,
    ScreeningSubject,
    SubjectKind,
)
from tradeguard.kyc.onboarding.service import OnboardingService
from tradeguard.ledger.domain import Party


class Applicants:
    """`ApplicantDirectory` for identity documents: what the customer declared."""

    def __init__(self, service: OnboardingService) -> None:
        self._service = service

    async def applicant(self, session: AsyncSession, user_id: str) -> ApplicantFacts | None:
        return await self._service.applicant(session, user_id)


class RiskProfiles:
    """`CustomerProfiles` for AML monitoring: the approved application's risk profile."""

    def __init__(self, service: OnboardingService) -> None:
        self._service = service

    async def profile(self, session: AsyncSession, user_id: str) -> CustomerRiskProfile | None:
        return await self._service.profile(session, user_id)


class FilingPersons:
    """`FilingSubjects` for AML's CTR and SAR exports: the approved application's identity,
    address and tax id."""

    def __init__(self, service: OnboardingService) -> None:
        self._service = service

    async def filing_person(self, session: AsyncSession, user_id: str) -> FilingPerson | None:
        return await self._service.filing_person(session, user_id)


class CustomerSubjects:
    """`SubjectSource` of customers for re-screening: every approved customer."""

    def __init__(self, service: OnboardingService) -> None:
        self._service = service

    async def subjects(self, session: AsyncSession) -> AsyncIterator[ScreeningSubject]:
        for subject in await self._service.customers(session):
            yield subject


class ApprovedApplicationGate:
    """trading's `OnboardingGate`: an account opens ACTIVE only for a customer whose
    application is approved and whose sanctions standing is clear; otherwise PENDING until
    the approval (or the clear) opens it."""

    def __init__(self, service: OnboardingService) -> None:
        self._service = service

    async def cleared(self, session: AsyncSession, user_id: str) -> bool:
        return await self._service.cleared(session, user_id)


class StandingListener:
    """`ScreeningListener` for sanctions: an approved customer's standing restricts (or
    lifts the restriction on) their accounts and re-rates them."""

    def __init__(self, service: OnboardingService) -> None:
        self._service = service

    async def standing_changed(
        self,
        session: AsyncSession,
        kind: SubjectKind,
        ref: str,
        outcome: ScreeningOutcome,
        *,
        actor: Party,
        request_id: str | None = None,
    ) -> None:
        await self._service.standing_changed(
            session, kind, ref, outcome, actor=actor, request_id=request_id
        )
