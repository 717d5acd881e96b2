"""Request and response bodies of the identity document API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DocumentOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    kind: str
    side: str | None
    detected_type: str
    size_bytes: int
    sha256: str
    pages: int | None
    width: int | None
    height: int | None
    status: str
    mrz_format: str | None
    reasons: list[str]
    uploaded_at: str
    checked_at: str | None
    reviewed_at: str | None


class StaffDocumentOut(DocumentOut):
    user_id: str
    provider: str | None
    provider_outcome: str | None
    provider_reference: str | None
    review_decision: str | None
    review_reason: str | None
    reviewed_by: str | None


class StaffDocumentDetailOut(StaffDocumentOut):
    # What the provider read from the MRZ (names, number, dates): staff only.
    fields_read: dict[str, str]


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: str = Field(pattern="^(accept|reject)$")
    reason: str = Field(min_length=5, max_length=500)


class DownloadIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=5, max_length=500)
