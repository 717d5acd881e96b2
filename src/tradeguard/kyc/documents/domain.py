"""Identity documents (KYC-2): kinds, statuses, upload refusals and their errors.

Pure: enums and the refusals' problem types (RFC 9457 via core.errors); every refusal names
a stable reason code and never echoes the file's content or name.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tradeguard.core.errors import TradeguardError


class DocumentKind(StrEnum):
    PASSPORT = "passport"
    NATIONAL_ID = "national_id"
    DRIVING_LICENCE = "driving_licence"
    PROOF_OF_ADDRESS = "proof_of_address"


IDENTITY_KINDS = frozenset(
    {DocumentKind.PASSPORT, DocumentKind.NATIONAL_ID, DocumentKind.DRIVING_LICENCE}
)
# Documents that carry an ICAO 9303 MRZ (a driving licence mostly does not).
MRZ_KINDS = frozenset({DocumentKind.PASSPORT, DocumentKind.NATIONAL_ID})


class DocumentSide(StrEnum):
    FRONT = "front"
    BACK = "back"


class DetectedType(StrEnum):
    JPEG = "image/jpeg"
    PNG = "image/png"
    PDF = "application/pdf"


# What a client may declare for each detected type (the part's Content-Type), and the file
# name endings that go with it.
DECLARED_TYPES: dict[DetectedType, frozenset[str]] = {
    DetectedType.JPEG: frozenset({"image/jpeg", "image/jpg", "image/pjpeg"}),
    DetectedType.PNG: frozenset({"image/png"}),
    DetectedType.PDF: frozenset({"application/pdf"}),
}
EXTENSIONS: dict[DetectedType, frozenset[str]] = {
    DetectedType.JPEG: frozenset({"jpg", "jpeg", "jpe", "jfif"}),
    DetectedType.PNG: frozenset({"png"}),
    DetectedType.PDF: frozenset({"pdf"}),
}


class DocumentStatus(StrEnum):
    PENDING = "pending"  # stored, checks not finished (the provider was not reached)
    VERIFIED = "verified"
    REVIEW = "review"  # a person must look
    FAILED = "failed"


class ReviewDecision(StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"


class DocumentEvent(StrEnum):
    UPLOADED = "kyc:document:uploaded"
    CHECKED = "kyc:document:checked"
    REVIEWED = "kyc:document:reviewed"
    DOWNLOADED = "kyc:document:downloaded"
    REFUSED = "kyc:document:refused"


class Refusal(StrEnum):
    """Why an upload was refused: stable codes."""

    UNSUPPORTED_TYPE = "UNSUPPORTED_TYPE"
    DECLARED_TYPE_MISMATCH = "DECLARED_TYPE_MISMATCH"
    EXTENSION_MISMATCH = "EXTENSION_MISMATCH"
    FILE_TOO_LARGE = "FILE_TOO_LARGE"
    FILE_EMPTY = "FILE_EMPTY"
    IMAGE_TOO_LARGE = "IMAGE_TOO_LARGE"
    TOO_MANY_PAGES = "TOO_MANY_PAGES"
    COMPRESSED_TOO_LARGE = "COMPRESSED_TOO_LARGE"
    PDF_JAVASCRIPT = "PDF_JAVASCRIPT"
    PDF_LAUNCH_ACTION = "PDF_LAUNCH_ACTION"
    PDF_EMBEDDED_FILE = "PDF_EMBEDDED_FILE"
    PDF_ACTIVE_CONTENT = "PDF_ACTIVE_CONTENT"
    PDF_ENCRYPTED = "PDF_ENCRYPTED"
    UNREADABLE = "UNREADABLE"
    FORM_INVALID = "FORM_INVALID"
    MRZ_UNREADABLE = "MRZ_UNREADABLE"
    UPLOADS_PER_DAY = "UPLOADS_PER_DAY"
    REFUSALS_PER_DAY = "REFUSALS_PER_DAY"
    DOCUMENTS_ON_FILE = "DOCUMENTS_ON_FILE"


class DocumentRefused(TradeguardError):
    """An upload refused: nothing was stored. `reason` is the stable code."""

    status = 422
    slug = "document-refused"
    title = "Document refused"

    def __init__(self, reason: Refusal, detail: str, **extra: Any) -> None:
        super().__init__(detail, reason=reason.value, **extra)
        self.reason = reason


class UnsupportedFileType(DocumentRefused):
    status = 415
    slug = "unsupported-file-type"
    title = "Unsupported file type"


class FileTypeMismatch(DocumentRefused):
    status = 415
    slug = "file-type-mismatch"
    title = "The file's content does not match its declared type"


class FileTooLarge(DocumentRefused):
    status = 413
    slug = "file-too-large"
    title = "File too large"


class ImageTooLarge(DocumentRefused):
    slug = "image-too-large"
    title = "Image too large"


class TooManyPages(DocumentRefused):
    slug = "too-many-pages"
    title = "Too many pages"


class CompressedContentTooLarge(DocumentRefused):
    slug = "compressed-content-too-large"
    title = "Compressed content inflates beyond the limit"


class UnsafeDocument(DocumentRefused):
    slug = "unsafe-document"
    title = "The document has active, embedded or encrypted content"


class UnreadableDocument(DocumentRefused):
    slug = "unreadable-file"
    title = "The file could not be read"


class InvalidUploadForm(DocumentRefused):
    slug = "invalid-upload"
    title = "The upload form is not valid"


class UploadQuotaReached(DocumentRefused):
    status = 429
    slug = "document-quota-reached"
    title = "Document quota reached"

    def __init__(self, reason: Refusal, detail: str, *, retry_after: int = 86400, **extra: Any):
        super().__init__(reason, detail, **extra)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        if self.reason in (Refusal.UPLOADS_PER_DAY, Refusal.REFUSALS_PER_DAY):
            return {"Retry-After": str(self.retry_after)}
        return {}
