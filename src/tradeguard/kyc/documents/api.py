"""Identity document HTTP API (KYC-2): a customer's uploads under /api/v1/kyc/documents and
the staff review queue under /api/v1/admin/kyc/documents.

The server never renders a document: a file goes out only as an attachment, with nosniff
and a sandboxing Content-Security-Policy, so a browser neither guesses its type nor runs
anything in it. Another user's document id answers 404.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from tradeguard.access.domain import Permission
from tradeguard.core.clock import ns_to_iso
from tradeguard.core.context import request_id_var
from tradeguard.db.engine import unit_of_work
from tradeguard.identity.guard import CurrentPrincipal, guarded, problems
from tradeguard.kyc.documents import schemas as s
from tradeguard.kyc.documents.container import DocumentServices
from tradeguard.kyc.documents.domain import (
    DetectedType,
    DocumentRefused,
    DocumentStatus,
    UploadQuotaReached,
)
from tradeguard.kyc.documents.models import KycDocument
from tradeguard.kyc.documents.service import UploadRequest, reasons_of
from tradeguard.kyc.documents.upload import read_upload
from tradeguard.ledger.domain import Party

PREFIX = "/api/v1/kyc/documents"
router = APIRouter(prefix=PREFIX, tags=["kyc documents"])
staff_router = APIRouter(prefix="/api/v1/admin/kyc/documents", tags=["kyc documents (staff)"])

IdPath = Annotated[str, Path(min_length=36, max_length=36, pattern=r"^[0-9a-f-]{36}$")]
# The download's body in the OpenAPI document: the file, in its detected type.
FILE_RESPONSE: dict[int | str, dict[str, object]] = {
    200: {
        "description": "The file, as an attachment",
        "content": {
            media.value: {"schema": {"type": "string", "format": "binary"}}
            for media in DetectedType
        },
    }
}
_EXTENSION = {DetectedType.JPEG: "jpg", DetectedType.PNG: "png", DetectedType.PDF: "pdf"}


def documents(request: Request) -> DocumentServices:
    services: DocumentServices = request.app.state.kyc_documents
    return services


def _iso(ns: int | None) -> str | None:
    return ns_to_iso(ns) if ns is not None else None


def _fields(row: KycDocument) -> dict[str, object]:
    return {
        "id": row.id,
        "kind": row.kind,
        "side": row.side,
        "detected_type": row.detected_type,
        "size_bytes": row.size_bytes,
        "sha256": row.sha256,
        "pages": row.pages,
        "width": row.width,
        "height": row.height,
        "status": row.status,
        "mrz_format": row.mrz_format,
        "reasons": list(reasons_of(row)),
        "uploaded_at": ns_to_iso(row.created_ns),
        "checked_at": _iso(row.checked_ns),
        "reviewed_at": _iso(row.reviewed_ns),
    }


def document_out(row: KycDocument) -> s.DocumentOut:
    return s.DocumentOut.model_validate(_fields(row))


def _staff_fields(row: KycDocument) -> dict[str, object]:
    return _fields(row) | {
        "user_id": row.user_id,
        "provider": row.provider,
        "provider_outcome": row.provider_outcome,
        "provider_reference": row.provider_reference,
        "review_decision": row.review_decision,
        "review_reason": row.review_reason,
        "reviewed_by": row.reviewed_by,
    }


def staff_document_out(row: KycDocument) -> s.StaffDocumentOut:
    return s.StaffDocumentOut.model_validate(_staff_fields(row))


def attachment(row: KycDocument, content: bytes) -> Response:
    """The file as a download only: never rendered, sniffed or scripted by a browser."""
    detected = DetectedType(row.detected_type)
    name = f"{row.kind}-{row.id}.{_EXTENSION[detected]}"
    return Response(
        content=content,
        media_type=detected.value,
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox; default-src 'none'",
            "Cache-Control": "no-store",
        },
    )


# Customer -----------------------------------------------------------------------------------


@router.post(
    "",
    status_code=201,
    responses=problems(413, 415, 422, 429),
    **guarded(Permission.KYC_APPLY),
)
async def upload_document(request: Request, principal: CurrentPrincipal) -> s.DocumentOut:
    """Upload an identity document or proof of address as multipart/form-data: `kind`
    (passport, national_id, driving_licence, proof_of_address), optional `side` (front,
    back), optional `mrz` (the lines your scanner read), and `file` (JPEG, PNG or PDF). The
    type is read from the content; a refused file is not stored."""
    services = documents(request)
    actor = Party("user", principal.user_id)
    async with unit_of_work(services.sessions) as session:
        await services.documents.check_refusals(session, principal.user_id)
    try:
        form = await read_upload(
            request.headers.get("content-type"),
            request.stream(),
            max_file_bytes=services.deps.limits.max_bytes,
        )
        upload = UploadRequest(
            user_id=principal.user_id,
            kind=form.fields.get("kind", ""),
            side=form.fields.get("side"),
            mrz=form.fields.get("mrz"),
            content=bytes(form.content),
            declared_type=form.content_type,
            filename=form.filename,
        )
        async with unit_of_work(services.sessions) as session:
            row = await services.documents.upload(
                session, upload=upload, actor=actor, request_id=request_id_var.get()
            )
            return document_out(row)
    except DocumentRefused as refused:
        if not isinstance(refused, UploadQuotaReached):
            # The refused upload rolled back; its count is kept in a transaction of its own.
            async with unit_of_work(services.sessions) as session:
                await services.documents.record_refusal(
                    session,
                    user_id=principal.user_id,
                    reason=refused.reason,
                    actor=actor,
                    request_id=request_id_var.get(),
                )
        raise


@router.get("", **guarded(Permission.KYC_APPLY))
async def list_documents(request: Request, principal: CurrentPrincipal) -> list[s.DocumentOut]:
    """Your documents, newest first: metadata and the checks' outcome."""
    services = documents(request)
    async with unit_of_work(services.sessions) as session:
        rows = await services.documents.of_user(session, principal.user_id)
        return [document_out(row) for row in rows]


@router.get("/{document_id}", responses=problems(404), **guarded(Permission.KYC_APPLY))
async def get_document(
    document_id: IdPath, request: Request, principal: CurrentPrincipal
) -> s.DocumentOut:
    """One of your documents: metadata and the checks' outcome."""
    services = documents(request)
    async with unit_of_work(services.sessions) as session:
        return document_out(await services.documents.own(session, principal.user_id, document_id))


@router.get(
    "/{document_id}/file",
    response_class=Response,
    responses=FILE_RESPONSE | problems(404),
    **guarded(Permission.KYC_APPLY),
)
async def download_own_document(
    document_id: IdPath, request: Request, principal: CurrentPrincipal
) -> Response:
    """Your own file again, as an attachment."""
    services = documents(request)
    async with unit_of_work(services.sessions) as session:
        row, content = await services.documents.download_own(
            session,
            user_id=principal.user_id,
            document_id=document_id,
            actor=Party("user", principal.user_id),
            request_id=request_id_var.get(),
        )
    return attachment(row, content)


# Staff --------------------------------------------------------------------------------------


@staff_router.get("", **guarded(Permission.KYC_REVIEW))
async def documents_waiting(
    request: Request,
    principal: CurrentPrincipal,
    status: Annotated[list[DocumentStatus] | None, Query()] = None,
) -> list[s.StaffDocumentOut]:
    """Documents waiting for a person (review, pending), oldest first; `status` to choose."""
    services = documents(request)
    async with unit_of_work(services.sessions) as session:
        rows = await services.documents.waiting(
            session, statuses=[st.value for st in status] if status else None
        )
        return [staff_document_out(row) for row in rows]


@staff_router.get("/{document_id}", responses=problems(404), **guarded(Permission.KYC_REVIEW))
async def staff_document(
    document_id: IdPath, request: Request, principal: CurrentPrincipal
) -> s.StaffDocumentDetailOut:
    """A document's metadata, checks and the fields the provider read."""
    services = documents(request)
    async with unit_of_work(services.sessions) as session:
        row = await services.documents.any(session, document_id)
        return s.StaffDocumentDetailOut.model_validate(
            _staff_fields(row) | {"fields_read": services.documents.fields_read(row)}
        )


@staff_router.post(
    "/{document_id}/review",
    responses=problems(404, 409, 422),
    **guarded(Permission.KYC_REVIEW),
)
async def review_document(
    document_id: IdPath, body: s.ReviewIn, request: Request, principal: CurrentPrincipal
) -> s.StaffDocumentOut:
    """Accept (verified) or reject (failed) a document in review, with a reason."""
    services = documents(request)
    async with unit_of_work(services.sessions) as session:
        row = await services.documents.review(
            session,
            document_id=document_id,
            decision=body.decision,
            reason=body.reason,
            reviewer_id=principal.user_id,
            actor=Party("user", principal.user_id),
            request_id=request_id_var.get(),
        )
        return staff_document_out(row)


@staff_router.post(
    "/{document_id}/download",
    response_class=Response,
    responses=FILE_RESPONSE | problems(404, 422),
    **guarded(Permission.KYC_REVIEW),
)
async def staff_download(
    document_id: IdPath, body: s.DownloadIn, request: Request, principal: CurrentPrincipal
) -> Response:
    """The file, as an attachment; the stated reason is recorded in the ledger first."""
    services = documents(request)
    async with unit_of_work(services.sessions) as session:
        row, content = await services.documents.staff_download(
            session,
            document_id=document_id,
            reason=body.reason,
            actor=Party("user", principal.user_id),
            request_id=request_id_var.get(),
        )
    return attachment(row, content)
