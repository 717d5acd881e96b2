"""The KYC parts built and wired together, for the app and the CLI alike (issue #13).

Each part reaches another only through kyc/contracts.py: identity documents check the MRZ
against the application (ApplicantDirectory), onboarding approves on the documents'
evidence (IdentityEvidenceSource)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tradeguard.config import Settings
from tradeguard.identity.container import IdentityServices
from tradeguard.kyc.documents.container import DocumentServices, build_documents
from tradeguard.kyc.onboarding.container import OnboardingServices, build_onboarding
from tradeguard.trading.accounts import AccountService as TradingAccounts


@dataclass(slots=True)
class KycServices:
    onboarding: OnboardingServices
    documents: DocumentServices


def build_kyc(
    settings: Settings,
    *,
    identity: IdentityServices,
    accounts: TradingAccounts,
    sessions: async_sessionmaker[AsyncSession],
) -> KycServices:
    documents = build_documents(
        settings,
        clock=identity.deps.clock,
        ledger=identity.deps.ledger,
        keyring=identity.deps.keyring,
        sessions=sessions,
    )
    onboarding = build_onboarding(
        settings,
        identity=identity,
        accounts=accounts,
        sessions=sessions,
        evidence=documents.evidence,
    )
    documents.deps.applicants = onboarding.applicants
    return KycServices(onboarding=onboarding, documents=documents)
