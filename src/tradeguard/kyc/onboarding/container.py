"""Builds the onboarding services once per process (app, CLI command, test), and installs
the onboarding gate in trading when settings.kyc_required."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tradeguard.config import Settings
from tradeguard.identity.container import IdentityServices
from tradeguard.kyc.contracts import IdentityEvidenceSource, Screener
from tradeguard.kyc.onboarding.adapters import (
    Applicants,
    ApprovedApplicationGate,
    CustomerSubjects,
    FilingPersons,
    RiskProfiles,
    StandingListener,
)
from tradeguard.kyc.onboarding.common import OnboardingDeps
from tradeguard.kyc.onboarding.service import OnboardingService
from tradeguard.trading.accounts import AccountService as TradingAccounts


@dataclass(slots=True)
class OnboardingServices:
    deps: OnboardingDeps
    sessions: async_sessionmaker[AsyncSession]
    applications: OnboardingService
    # For the other KYC/AML parts (kyc/contracts.py).
    applicants: Applicants
    profiles: RiskProfiles
    subjects: CustomerSubjects
    filings: FilingPersons
    gate: ApprovedApplicationGate
    listener: StandingListener

    def wire(
        self,
        *,
        screener: Screener | None = None,
        evidence: IdentityEvidenceSource | None = None,
    ) -> None:
        """Hand in the screening and identity-evidence services once they are built."""
        if screener is not None:
            self.deps.screener = screener
        if evidence is not None:
            self.deps.evidence = evidence


def build_onboarding(
    settings: Settings,
    *,
    identity: IdentityServices,
    accounts: TradingAccounts,
    sessions: async_sessionmaker[AsyncSession],
    screener: Screener | None = None,
    evidence: IdentityEvidenceSource | None = None,
) -> OnboardingServices:
    deps = OnboardingDeps(
        clock=identity.deps.clock,
        ids=identity.deps.ids,
        ledger=identity.deps.ledger,
        keyring=identity.deps.keyring,
        users=identity.accounts,
        notifier=identity.deps.notifier,
        trading=accounts,
        min_age=settings.kyc_min_age_years,
        terms_version=settings.kyc_terms_version,
        high_risk_countries=frozenset(settings.kyc_high_risk_countries),
        screener=screener,
        evidence=evidence,
    )
    service = OnboardingService(deps)
    gate = ApprovedApplicationGate(service)
    # KYC-2: with kyc_required, every account opened (API, staff, CLI, demo) waits for the
    # customer's approved application.
    accounts.deps.onboarding = gate if settings.kyc_required else None
    return OnboardingServices(
        deps=deps,
        sessions=sessions,
        applications=service,
        applicants=Applicants(service),
        profiles=RiskProfiles(service),
        subjects=CustomerSubjects(service),
        filings=FilingPersons(service),
        gate=gate,
        listener=StandingListener(service),
    )
