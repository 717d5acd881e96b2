"""Builds the identity document services once per process (app, CLI command, test)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tradeguard.config import Settings
from tradeguard.core.clock import Clock
from tradeguard.crypto.keyring import Keyring
from tradeguard.kyc.contracts import ApplicantDirectory
from tradeguard.kyc.documents.inspection import DocumentLimits
from tradeguard.kyc.documents.provider import provider_named
from tradeguard.kyc.documents.service import DocumentDeps, DocumentEvidence, DocumentService
from tradeguard.ledger.service import Ledger


@dataclass(slots=True)
class DocumentServices:
    deps: DocumentDeps
    sessions: async_sessionmaker[AsyncSession]
    documents: DocumentService
    evidence: DocumentEvidence


def limits_from(settings: Settings) -> DocumentLimits:
    return DocumentLimits(
        max_bytes=settings.kyc_document_max_bytes,
        max_pixels=settings.kyc_document_max_pixels,
        max_pages=settings.kyc_document_max_pages,
        max_inflated_bytes=settings.kyc_document_max_inflated_bytes,
    )


def build_documents(
    settings: Settings,
    *,
    clock: Clock,
    ledger: Ledger,
    keyring: Keyring,
    sessions: async_sessionmaker[AsyncSession],
    applicants: ApplicantDirectory | None = None,
) -> DocumentServices:
    deps = DocumentDeps(
        clock=clock,
        ledger=ledger,
        keyring=keyring,
        limits=limits_from(settings),
        provider=provider_named(settings.kyc_verification_provider),
        uploads_per_day=settings.kyc_document_uploads_per_day,
        refusals_per_day=settings.kyc_document_refusals_per_day,
        on_file=settings.kyc_documents_on_file,
        applicants=applicants,
    )
    documents = DocumentService(deps)
    return DocumentServices(
        deps=deps, sessions=sessions, documents=documents, evidence=DocumentEvidence(documents)
    )
