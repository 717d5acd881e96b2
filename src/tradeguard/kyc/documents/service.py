"""Identity document use cases (KYC-2): upload (checked, sealed, verified), the owner's and
staff's reads and downloads, staff review, and the identity evidence onboarding reads.

Services never commit; every state change and every staff download appends a ledger event
in the caller's transaction. A refused upload raises before anything is added to the
session, so nothing of it is stored.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.core.clock import NS_PER_SECOND, Clock
from tradeguard.core.errors import Conflict, InvalidInput, NotFound
from tradeguard.crypto.columns import SealedField, keyring_field
from tradeguard.crypto.keyring import Keyring
from tradeguard.kyc.contracts import (
    ApplicantDirectory,
    ApplicantFacts,
    EvidenceStatus,
    IdentityEvidence,
)
from tradeguard.kyc.documents import repository
from tradeguard.kyc.documents.domain import (
    IDENTITY_KINDS,
    MRZ_KINDS,
    DocumentEvent,
    DocumentKind,
    DocumentSide,
    DocumentStatus,
    InvalidUploadForm,
    Refusal,
    ReviewDecision,
    UploadQuotaReached,
)
from tradeguard.kyc.documents.inspection import DocumentLimits, Inspection, inspect_document
from tradeguard.kyc.documents.models import KycDocument, KycDocumentRefusal
from tradeguard.kyc.documents.mrz import (
    MrzRecord,
    MrzUnreadable,
    inconsistencies,
    mrz_problems,
    parse_mrz,
)
from tradeguard.kyc.documents.provider import (
    ProviderOutcome,
    VerificationProvider,
    VerificationRequest,
    VerificationResult,
)
from tradeguard.kyc.documents.sealing import new_data_key, open_chunks, seal_chunks
from tradeguard.ledger.domain import SYSTEM, LedgerEvent, Party
from tradeguard.ledger.service import Ledger

logger = logging.getLogger("tradeguard.kyc.documents")

DAY_NS = 86_400 * NS_PER_SECOND
MAX_MRZ_CHARACTERS = 200
MIN_REASON = 5
MAX_REASON = 500
APPLICANT_UNKNOWN = "APPLICANT_UNKNOWN"
MRZ_MISSING = "MRZ_MISSING"
# A verified identity document followed by one that failed its checks or waits for a person:
# the evidence is REVIEW until a person decides that one or a newer document verifies.
LATER_DOCUMENT_NOT_VERIFIED = "LATER_DOCUMENT_NOT_VERIFIED"
# Evidence prefers the strongest document: a verified one over one in review, over one whose
# checks are not finished, over a failed one; the newest among equals.
_RANK = {
    DocumentStatus.VERIFIED.value: 3,
    DocumentStatus.REVIEW.value: 2,
    DocumentStatus.PENDING.value: 1,
    DocumentStatus.FAILED.value: 0,
}


class ReviewInputError(InvalidInput):
    """A staff review or download without a usable reason or decision (422)."""


class DocumentConflict(Conflict):
    """The document is not in a state that takes this step (409)."""


@dataclass(slots=True)
class DocumentDeps:
    clock: Clock
    ledger: Ledger
    keyring: Keyring
    limits: DocumentLimits
    provider: VerificationProvider
    uploads_per_day: int
    on_file: int
    # Refused uploads per user per 24 hours before further uploads get 429.
    refusals_per_day: int = 10
    # Wired at start by the app (onboarding's directory); None means no application is
    # known, so identity documents go to review.
    applicants: ApplicantDirectory | None = None

    async def audit(
        self,
        session: AsyncSession,
        type_: str,
        *,
        actor: Party,
        subject: Party | None = None,
        data: dict[str, object] | None = None,
        request_id: str | None = None,
    ) -> None:
        await self.ledger.append(
            session,
            LedgerEvent(
                type=type_, actor=actor, subject=subject, data=data or {}, request_id=request_id
            ),
        )

    def today(self) -> date:
        return datetime.fromtimestamp(self.clock.now_ns() / NS_PER_SECOND, tz=UTC).date()


@dataclass(frozen=True, slots=True)
class UploadRequest:
    user_id: str
    kind: str
    side: str | None
    mrz: str | None
    content: bytes
    declared_type: str | None
    filename: str | None


def new_document_id() -> str:
    """A random id (UUID version 4: 122 random bits from the OS): unguessable."""
    return str(uuid.uuid4())


def reasons_of(row: KycDocument) -> tuple[str, ...]:
    return tuple(reason for reason in row.reasons.split(",") if reason)


def _parse_kind(kind: str, side: str | None) -> tuple[DocumentKind, DocumentSide | None]:
    try:
        parsed_kind = DocumentKind(kind.strip())
    except ValueError:
        known = ", ".join(k.value for k in DocumentKind)
        raise InvalidUploadForm(Refusal.FORM_INVALID, f"kind must be one of {known}") from None
    if side is None or not side.strip():
        return parsed_kind, None
    try:
        return parsed_kind, DocumentSide(side.strip())
    except ValueError:
        raise InvalidUploadForm(Refusal.FORM_INVALID, "side must be front or back") from None


def _parse_mrz_text(
    kind: DocumentKind, mrz: str | None, today: date
) -> tuple[str | None, MrzRecord | None]:
    if mrz is None or not mrz.strip():
        return None, None
    if kind not in MRZ_KINDS:
        raise InvalidUploadForm(
            Refusal.FORM_INVALID, "an MRZ is given only with a passport or national ID"
        )
    if len(mrz) > MAX_MRZ_CHARACTERS:
        raise InvalidUploadForm(Refusal.MRZ_UNREADABLE, "the MRZ is too long")
    text = mrz.strip().upper()
    try:
        return text, parse_mrz(text, today=today)
    except MrzUnreadable as exc:
        raise InvalidUploadForm(
            Refusal.MRZ_UNREADABLE, f"the MRZ could not be read: {exc}"
        ) from None


def _reason(text: str) -> str:
    cleaned = " ".join(text.split())
    if not MIN_REASON <= len(cleaned) <= MAX_REASON:
        raise ReviewInputError(f"a reason of {MIN_REASON} to {MAX_REASON} characters is required")
    return cleaned


def decide(
    kind: DocumentKind,
    result: VerificationResult,
    record: MrzRecord | None,
    applicant: ApplicantFacts | None,
    today: date,
) -> tuple[DocumentStatus, tuple[str, ...]]:
    """The document's status from the provider's answer and our own MRZ checks: a provider
    cannot verify an MRZ that fails its check digits or disagrees with the application."""
    reasons: list[str] = list(result.reasons)
    failed = result.outcome is ProviderOutcome.FAIL
    review = result.outcome is ProviderOutcome.REVIEW
    if record is not None:
        problems = mrz_problems(record, today=today)
        reasons += [p.value for p in problems]
        failed = failed or bool(problems)
        if applicant is not None:
            found = inconsistencies(record, applicant)
            reasons += [i.value for i in found]
            review = review or bool(found)
    elif kind in MRZ_KINDS:
        reasons.append(MRZ_MISSING)
        review = True
    if kind in IDENTITY_KINDS and applicant is None:
        reasons.append(APPLICANT_UNKNOWN)
        review = True
    unique = tuple(dict.fromkeys(reasons))
    if failed:
        return DocumentStatus.FAILED, unique
    if review:
        return DocumentStatus.REVIEW, unique
    return DocumentStatus.VERIFIED, unique


class DocumentService:
    def __init__(self, deps: DocumentDeps) -> None:
        self.deps = deps

    # -- customer ---------------------------------------------------------------------------

    async def upload(
        self,
        session: AsyncSession,
        *,
        upload: UploadRequest,
        actor: Party,
        request_id: str | None = None,
    ) -> KycDocument:
        """Check the file and the form, store the file sealed, verify; DocumentRefused
        (nothing stored) for any refusal."""
        deps, now, today = self.deps, self.deps.clock.now_ns(), self.deps.today()
        kind, side = _parse_kind(upload.kind, upload.side)
        mrz_text, record = _parse_mrz_text(kind, upload.mrz, today)
        await self._check_quota(session, upload.user_id, now)
        # Parsing a hostile file is CPU work: off the event loop.
        inspection: Inspection = await asyncio.to_thread(
            inspect_document,
            upload.content,
            declared_type=upload.declared_type,
            filename=upload.filename,
            limits=deps.limits,
        )
        document_id = new_document_id()
        key = new_data_key()
        chunks = seal_chunks(key, document_id, upload.content)
        row = KycDocument(
            id=document_id,
            user_id=upload.user_id,
            kind=kind.value,
            side=side.value if side else None,
            detected_type=inspection.detected.value,
            size_bytes=inspection.size_bytes,
            sha256=inspection.sha256,
            pages=inspection.pages,
            width=inspection.width,
            height=inspection.height,
            chunk_count=len(chunks),
            data_key_enc=keyring_field(
                deps.keyring, base64.b64encode(key).decode(), record_id=document_id
            ),
            status=DocumentStatus.PENDING.value,
            mrz_format=record.format.value if record else None,
            reasons="",
            # The MRZ as given, sealed, so that a check the provider could not finish can be
            # run again later (`recheck_pending`).
            fields_enc=keyring_field(
                deps.keyring, json.dumps({"mrz": mrz_text, "read": {}}), record_id=document_id
            ),
            created_ns=now,
        )
        repository.add(session, row, chunks)
        subject = Party("user", upload.user_id)
        await deps.audit(
            session,
            DocumentEvent.UPLOADED,
            actor=actor,
            subject=subject,
            data={
                "document_id": document_id,
                "kind": kind.value,
                "detected_type": inspection.detected.value,
                "size_bytes": inspection.size_bytes,
                "sha256": inspection.sha256,
            },
            request_id=request_id,
        )
        await self._verify(
            session, row, upload.content, mrz_text, record, actor=actor, request_id=request_id
        )
        return row

    async def check_refusals(self, session: AsyncSession, user_id: str) -> None:
        """429 (Retry-After: when the oldest counted refusal leaves the 24-hour window) once
        the user's refused uploads reach the daily budget: checked before the body is read
        or parsed, so a stream of hostile files stops costing CPU."""
        deps, now = self.deps, self.deps.clock.now_ns()
        refused = await repository.refusals_since(session, user_id, now - DAY_NS)
        if len(refused) >= deps.refusals_per_day:
            oldest = refused[len(refused) - deps.refusals_per_day]
            wait = max(1, -(-(oldest + DAY_NS - now) // NS_PER_SECOND))
            raise UploadQuotaReached(
                Refusal.REFUSALS_PER_DAY,
                f"at most {deps.refusals_per_day} refused uploads in 24 hours; try again later",
                limit=deps.refusals_per_day,
                retry_after=wait,
            )

    async def record_refusal(
        self,
        session: AsyncSession,
        *,
        user_id: str,
        reason: Refusal,
        actor: Party,
        request_id: str | None = None,
    ) -> None:
        """Count a refused upload (in its own transaction: the refused one rolled back).
        Nothing of the file is kept: who, when and the refusal code."""
        now = self.deps.clock.now_ns()
        await repository.forget_refusals_before(session, user_id, now - DAY_NS)
        repository.add_refusal(
            session,
            KycDocumentRefusal(
                id=new_document_id(), user_id=user_id, reason=reason.value, created_ns=now
            ),
        )
        await self.deps.audit(
            session,
            DocumentEvent.REFUSED,
            actor=actor,
            subject=Party("user", user_id),
            data={"reason": reason.value},
            request_id=request_id,
        )

    async def _check_quota(self, session: AsyncSession, user_id: str, now: int) -> None:
        deps = self.deps
        await self.check_refusals(session, user_id)
        if await repository.count_of(session, user_id) >= deps.on_file:
            raise UploadQuotaReached(
                Refusal.DOCUMENTS_ON_FILE,
                f"at most {deps.on_file} documents may be on file",
                limit=deps.on_file,
            )
        if (
            await repository.count_of(session, user_id, since_ns=now - DAY_NS)
            >= deps.uploads_per_day
        ):
            raise UploadQuotaReached(
                Refusal.UPLOADS_PER_DAY,
                f"at most {deps.uploads_per_day} uploads in 24 hours; try again tomorrow",
                limit=deps.uploads_per_day,
            )

    async def _verify(
        self,
        session: AsyncSession,
        row: KycDocument,
        content: bytes,
        mrz_text: str | None,
        record: MrzRecord | None,
        *,
        actor: Party,
        request_id: str | None,
    ) -> None:
        deps, today = self.deps, self.deps.today()
        kind = DocumentKind(row.kind)
        applicant = (
            await deps.applicants.applicant(session, row.user_id)
            if deps.applicants is not None
            else None
        )
        try:
            result = await deps.provider.verify(
                VerificationRequest(
                    document_id=row.id,
                    kind=kind,
                    detected_type=row.detected_type,
                    content=content,
                    mrz_text=mrz_text,
                    applicant=applicant,
                    today=today,
                )
            )
        except Exception as exc:
            # The document stays pending; the evidence says so. Only the error's type is
            # logged: a provider's message may quote the applicant's data.
            logger.warning(
                "verification provider failed (%s); document %s stays pending",
                type(exc).__name__,
                row.id,
            )
            return
        status, reasons = decide(kind, result, record, applicant, today)
        row.status = status.value
        row.reasons = ",".join(reasons)[:1000]
        row.provider = result.provider
        row.provider_outcome = result.outcome.value
        row.provider_reference = result.reference
        row.checked_ns = deps.clock.now_ns()
        sealed = json.dumps({"mrz": mrz_text, "read": dict(result.fields)}, sort_keys=True)
        row.fields_enc = keyring_field(deps.keyring, sealed, record_id=row.id)
        await deps.audit(
            session,
            DocumentEvent.CHECKED,
            actor=actor,
            subject=Party("user", row.user_id),
            data={
                "document_id": row.id,
                "status": status.value,
                "provider": result.provider,
                "provider_outcome": result.outcome.value,
                "reasons": list(reasons),
            },
            request_id=request_id,
        )

    async def pending(self, session: AsyncSession, *, limit: int = 100) -> list[str]:
        """Ids of documents whose checks did not finish (the provider was not reached)."""
        rows = await repository.with_status(session, [DocumentStatus.PENDING.value], limit=limit)
        return [row.id for row in rows]

    async def recheck(self, session: AsyncSession, document_id: str) -> KycDocument | None:
        """Run a pending document's checks again; None when it is no longer pending."""
        row = await repository.document(session, document_id, lock=True)
        if row is None or row.status != DocumentStatus.PENDING.value:
            return None
        content = await self._content(session, row)
        mrz_text = self._sealed_fields(row).get("mrz")
        record = parse_mrz(mrz_text, today=self.deps.today()) if mrz_text else None
        await self._verify(session, row, content, mrz_text, record, actor=SYSTEM, request_id=None)
        return row

    def _sealed_fields(self, row: KycDocument) -> dict[str, Any]:
        if not isinstance(row.fields_enc, SealedField):
            return {}
        opened: dict[str, Any] = json.loads(
            row.fields_enc.reveal(self.deps.keyring, record_id=row.id)
        )
        return opened

    async def of_user(self, session: AsyncSession, user_id: str) -> Sequence[KycDocument]:
        return await repository.documents_of(session, user_id)

    async def own(self, session: AsyncSession, user_id: str, document_id: str) -> KycDocument:
        """The user's own document; another user's id is simply not found."""
        row = await repository.document(session, document_id, user_id=user_id)
        if row is None:
            raise NotFound("no such document")
        return row

    async def download_own(
        self,
        session: AsyncSession,
        *,
        user_id: str,
        document_id: str,
        actor: Party,
        request_id: str | None = None,
    ) -> tuple[KycDocument, bytes]:
        row = await self.own(session, user_id, document_id)
        content = await self._content(session, row)
        await self.deps.audit(
            session,
            DocumentEvent.DOWNLOADED,
            actor=actor,
            subject=Party("user", row.user_id),
            data={"document_id": row.id, "by": "owner"},
            request_id=request_id,
        )
        return row, content

    # -- staff ------------------------------------------------------------------------------

    async def waiting(
        self, session: AsyncSession, *, statuses: Sequence[str] | None = None, limit: int = 200
    ) -> Sequence[KycDocument]:
        wanted = statuses or (DocumentStatus.REVIEW.value, DocumentStatus.PENDING.value)
        return await repository.with_status(session, list(wanted), limit=limit)

    async def any(self, session: AsyncSession, document_id: str) -> KycDocument:
        row = await repository.document(session, document_id)
        if row is None:
            raise NotFound("no such document")
        return row

    def fields_read(self, row: KycDocument) -> dict[str, str]:
        """What the provider read (staff only: names, numbers, dates)."""
        read: dict[str, str] = self._sealed_fields(row).get("read", {})
        return read

    async def staff_download(
        self,
        session: AsyncSession,
        *,
        document_id: str,
        reason: str,
        actor: Party,
        request_id: str | None = None,
    ) -> tuple[KycDocument, bytes]:
        """The file for a reviewer, with the stated reason in the ledger."""
        stated = _reason(reason)
        row = await self.any(session, document_id)
        content = await self._content(session, row)
        await self.deps.audit(
            session,
            DocumentEvent.DOWNLOADED,
            actor=actor,
            subject=Party("user", row.user_id),
            data={"document_id": row.id, "by": "staff", "reason": stated},
            request_id=request_id,
        )
        return row, content

    async def review(
        self,
        session: AsyncSession,
        *,
        document_id: str,
        decision: str,
        reason: str,
        reviewer_id: str,
        actor: Party,
        request_id: str | None = None,
    ) -> KycDocument:
        """Accept (verified) or reject (failed) a document waiting for a person."""
        try:
            verdict = ReviewDecision(decision)
        except ValueError:
            raise ReviewInputError("decision must be accept or reject") from None
        stated = _reason(reason)
        row = await repository.document(session, document_id, lock=True)
        if row is None:
            raise NotFound("no such document")
        if row.status not in {DocumentStatus.REVIEW.value, DocumentStatus.PENDING.value}:
            raise DocumentConflict(f"this document is {row.status}, not waiting for review")
        if row.user_id == reviewer_id:
            raise DocumentConflict("nobody reviews their own document")
        row.status = (
            DocumentStatus.VERIFIED if verdict is ReviewDecision.ACCEPT else DocumentStatus.FAILED
        ).value
        row.review_decision = verdict.value
        row.review_reason = stated
        row.reviewed_by = reviewer_id
        row.reviewed_ns = self.deps.clock.now_ns()
        await self.deps.audit(
            session,
            DocumentEvent.REVIEWED,
            actor=actor,
            subject=Party("user", row.user_id),
            data={
                "document_id": row.id,
                "decision": verdict.value,
                "status": row.status,
                "reason": stated,
            },
            request_id=request_id,
        )
        return row

    async def _content(self, session: AsyncSession, row: KycDocument) -> bytes:
        if not isinstance(row.data_key_enc, SealedField):
            raise NotFound("no such document")
        key = base64.b64decode(row.data_key_enc.reveal(self.deps.keyring, record_id=row.id))
        chunks = await repository.chunks_of(session, row.id)
        if len(chunks) != row.chunk_count:
            raise NotFound("the document's file is incomplete")
        return open_chunks(key, row.id, chunks)

    # -- evidence (IdentityEvidenceSource) --------------------------------------------------

    async def evidence(self, session: AsyncSession, user_id: str) -> IdentityEvidence:
        rows = await repository.documents_of(session, user_id)
        identities = [row for row in rows if row.kind in IDENTITY_KINDS]
        identity = _best(identities)
        address = _best([row for row in rows if row.kind == DocumentKind.PROOF_OF_ADDRESS])
        reasons: tuple[str, ...] = ()
        identity_status = _status(identity)
        if identity is not None:
            reasons += reasons_of(identity)
            contradicting = _contradicting(identities, identity)
            if contradicting:
                identity_status = EvidenceStatus.REVIEW
                reasons += (LATER_DOCUMENT_NOT_VERIFIED,)
                for row in contradicting:
                    reasons += tuple(r for r in reasons_of(row) if r not in reasons)
        if address is not None:
            reasons += tuple(r for r in reasons_of(address) if r not in reasons)
        return IdentityEvidence(
            identity=identity_status,
            address=_status(address),
            identity_document_id=identity.id if identity else None,
            address_document_id=address.id if address else None,
            reasons=reasons,
        )


def _best(rows: Sequence[KycDocument]) -> KycDocument | None:
    if not rows:
        return None
    return max(rows, key=lambda row: (_RANK.get(row.status, -1), row.created_ns))


def _contradicting(rows: Sequence[KycDocument], best: KycDocument) -> list[KycDocument]:
    """Identity documents uploaded after the verified one that failed their checks (a forged
    check digit, a provider's fail) or wait for a person (inconsistent with the application):
    the best document does not simply outvote them. A person's decision on such a document
    (`reviewed_by`) settles it; a newer verified document becomes the best one."""
    if best.status != DocumentStatus.VERIFIED.value:
        return []
    unsettled = {DocumentStatus.FAILED.value, DocumentStatus.REVIEW.value}
    return [
        row
        for row in rows
        if row.created_ns > best.created_ns and row.status in unsettled and row.reviewed_by is None
    ]


def _status(row: KycDocument | None) -> EvidenceStatus:
    if row is None:
        return EvidenceStatus.NONE
    return EvidenceStatus(row.status)


class DocumentEvidence:
    """`IdentityEvidenceSource` for onboarding and recovery (kyc/contracts.py)."""

    def __init__(self, service: DocumentService) -> None:
        self.service = service

    async def evidence(self, session: AsyncSession, user_id: str) -> IdentityEvidence:
        return await self.service.evidence(session, user_id)
