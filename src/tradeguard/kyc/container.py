"""The KYC parts built and wired together, for the app and the CLI alike (issue #13).

Each part reaches another only through kyc/contracts.py: identity documents check the MRZ
against the application (ApplicantDirectory); onboarding approves on the documents'
evidence (IdentityEvidenceSource) and the customer's screening (Screener), and hands its
customers to the sanctions re-screen (SubjectSource)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tradeguard.config import Settings
from tradeguard.identity.container import IdentityServices
from tradeguard.kyc.contracts import SubjectKind
from tradeguard.kyc.documents.container import DocumentServices, build_documents
from tradeguard.kyc.onboarding.container import OnboardingServices, build_onboarding
from tradeguard.kyc.sanctions.container import SanctionsServices, build_sanctions
from tradeguard.trading.accounts import AccountService as TradingAccounts


@dataclass(slots=True)
class KycServices:
    onboarding: OnboardingServices
    documents: DocumentServices
    sanctions: SanctionsServices


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
    sanctions = build_sanctions(
        settings,
        clock=identity.deps.clock,
        ids=identity.deps.ids,
        ledger=identity.deps.ledger,
        keyring=identity.deps.keyring,
        sessions=sessions,
    )
    onboarding = build_onboarding(
        settings,
        identity=identity,
        accounts=accounts,
        sessions=sessions,
        screener=sanctions.service,
        evidence=documents.evidence,
    )
    documents.deps.applicants = onboarding.applicants
    sanctions.service.register_source(SubjectKind.CUSTOMER, onboarding.subjects)
    # A customer's standing after approval restricts their accounts (re-screen, review).
    sanctions.service.add_listener(onboarding.listener)
    return KycServices(onboarding=onboarding, documents=documents, sanctions=sanctions)
