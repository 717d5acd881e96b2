"""What the parts of KYC and AML promise each other (issue #13).

Onboarding (`kyc/onboarding`), identity documents (`kyc/documents`), sanctions screening
(`kyc/sanctions`) and AML monitoring (`aml/`) are built side by side; each reaches another
only through these types and protocols, so none imports another's tables or queries. The
app wires the real implementations together at start (web/app.py).

Pure: no I/O, no framework imports beyond typing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from tradeguard.ledger.domain import Party


# Sanctions screening -----------------------------------------------------------------------


class SubjectKind(StrEnum):
    """Who is screened: a customer (their application's identity) or a payee (the holder
    named on a bank account a customer sends money to)."""

    CUSTOMER = "customer"
    PAYEE = "payee"


@dataclass(frozen=True, slots=True)
class ScreeningSubject:
    kind: SubjectKind
    # The user id for a customer; the bank account id for a payee.
    ref: str
    # The full name as written by the customer (any script; screening normalises it).
    name: str
    # The customer concerned: the user for a customer, the account owner for a payee.
    user_id: str
    birth_date: date | None = None
    # ISO 3166-1 alpha-2 codes.
    nationality: str | None = None
    country: str | None = None


class ScreeningDecision(StrEnum):
    CLEAR = "clear"
    REVIEW = "review"
    BLOCK = "block"


@dataclass(frozen=True, slots=True)
class ScreeningHit:
    hit_id: str
    list_name: str  # e.g. "OFAC SDN"
    list_version: str
    entry_id: str  # the list's own id (OFAC ent_num)
    matched_name: str  # the list's name or alias that matched
    score: float  # 0..1
    decision: ScreeningDecision  # REVIEW or BLOCK by the score's threshold
    reasons: tuple[str, ...]  # plain-language explanation of the score


@dataclass(frozen=True, slots=True)
class ScreeningOutcome:
    """A subject's standing: CLEAR when no open hit remains (none found, or all cleared by a
    reviewer), else the worst open hit's decision. A hit a reviewer confirmed is BLOCK."""

    decision: ScreeningDecision
    hits: tuple[ScreeningHit, ...] = ()
    list_version: str | None = None


class SubjectSource(Protocol):
    """Every subject of one kind now on file, for re-screening the base on a new list."""

    def subjects(self, session: AsyncSession) -> AsyncIterator[ScreeningSubject]: ...


class Screener(Protocol):
    async def screen(
        self,
        session: AsyncSession,
        subject: ScreeningSubject,
        *,
        reason: str,
        actor: Party,
        request_id: str | None = None,
    ) -> ScreeningOutcome:
        """Screen now against the current list version; record new hits and an audit event.
        Never commits (the caller's unit of work does)."""
        ...

    async def standing(
        self, session: AsyncSession, kind: SubjectKind, ref: str
    ) -> ScreeningOutcome:
        """The subject's current standing from recorded hits and reviews (no new screen)."""
        ...


class ScreeningListener(Protocol):
    """Told when a subject's standing may have changed outside its own screen: new hits
    recorded (a re-screen on a new list version, a change of name) or a reviewer's clear or
    confirm. Onboarding implements it to restrict (or lift the restriction on) an approved
    customer's accounts; sanctions calls it in the same transaction (never commits)."""

    async def standing_changed(
        self,
        session: AsyncSession,
        kind: SubjectKind,
        ref: str,
        outcome: ScreeningOutcome,
        *,
        actor: Party,
        request_id: str | None = None,
    ) -> None: ...


# The applicant's identity (onboarding → documents, screening, recovery) --------------------


@dataclass(frozen=True, slots=True)
class ApplicantFacts:
    """What the customer declared on their application, as documents are checked against."""

    user_id: str
    application_id: str
    given_names: str
    family_name: str
    birth_date: date
    nationality: str  # ISO 3166-1 alpha-2
    country: str  # of the residential address, ISO 3166-1 alpha-2
    status: str  # the application's status (draft, submitted, approved, ...)
    # For staff re-verifying a caller against the record (account recovery, ATO-3): the tax
    # id's last four digits and the residential postal code, as declared.
    tax_id_last4: str | None = None
    postal_code: str | None = None


class ApplicantDirectory(Protocol):
    async def applicant(self, session: AsyncSession, user_id: str) -> ApplicantFacts | None:
        """The user's latest application's identity, or None when they have none."""
        ...


# Identity evidence (documents → onboarding, recovery) --------------------------------------


class EvidenceStatus(StrEnum):
    NONE = "none"  # nothing uploaded yet
    PENDING = "pending"  # uploaded, checks not finished
    VERIFIED = "verified"
    REVIEW = "review"  # a person must look (provider said review, or MRZ inconsistent)
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class IdentityEvidence:
    """Where the user's identity documents stand: an identity document (passport, national
    ID, driving licence) and a proof of address, each with its checks."""

    identity: EvidenceStatus
    address: EvidenceStatus
    identity_document_id: str | None = None
    address_document_id: str | None = None
    reasons: tuple[str, ...] = ()


class IdentityEvidenceSource(Protocol):
    async def evidence(self, session: AsyncSession, user_id: str) -> IdentityEvidence: ...


# The customer's risk profile (onboarding → AML monitoring) ---------------------------------


class RiskRating(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


@dataclass(frozen=True, slots=True)
class CustomerRiskProfile:
    user_id: str
    rating: RiskRating
    country: str | None  # residence, ISO alpha-2
    nationality: str | None
    occupation: str | None
    annual_income: Decimal | None  # declared, USD
    net_worth: Decimal | None  # declared, USD
    # What the customer said they expect to move in a month (deposits plus withdrawals).
    expected_monthly_funding: Decimal | None
    source_of_funds: str | None
    factors: Sequence[str] = field(default_factory=tuple)


class CustomerProfiles(Protocol):
    async def profile(self, session: AsyncSession, user_id: str) -> CustomerRiskProfile | None:
        """The customer's profile from their approved application, or None."""
        ...


# The subject of a regulatory filing (onboarding → AML's CTR and SAR exports) ---------------


@dataclass(frozen=True, slots=True)
class FilingPerson:
    """The customer as a FinCEN filing names them, from the approved application: read only
    when a filing is exported (the tax id in full: the export is audited and sealed)."""

    family_name: str | None
    given_name: str | None
    birth_date: date | None
    tin: str | None
    street: str | None
    city: str | None
    state: str | None
    zip_code: str | None
    country: str | None
    occupation: str | None = None


class FilingSubjects(Protocol):
    async def filing_person(self, session: AsyncSession, user_id: str) -> FilingPerson | None:
        """The customer's filing identity, or None when they have no approved application."""
        ...
