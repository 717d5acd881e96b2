"""Sanctions API input and output (pydantic v2; inputs forbid unknown fields)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VersionOut(BaseModel):
    id: str
    list_name: str
    sha256: str
    file_hashes: dict[str, str]
    source: str
    entries: int
    names: int
    aliases: int
    addresses: int
    loaded_at: str
    loaded_by: str
    current: bool


class LoadIn(Strict):
    """Load the list from the server's configured source (never a path or URL from the
    client). Re-screening starts when a new version is stored, unless asked not to."""

    rescreen: bool = True
    # A list with many fewer entries than the current one (or a strict subset of it) is
    # refused (409) unless allowed here, with a reason (audited).
    allow_shrink: bool = False
    reason: Annotated[str, Field(min_length=3, max_length=1000)] | None = None


class LoadOut(BaseModel):
    version: VersionOut
    created: bool
    rescreen_id: str | None = None


class ScreenIn(Strict):
    name: Annotated[str, Field(min_length=1, max_length=300)]
    birth_date: date | None = None
    nationality: Annotated[str | None, Field(pattern=r"^[A-Za-z]{2}$")] = None
    entities: bool = Field(
        default=True, description="Screen against entities, vessels and aircraft too"
    )
    limit: Annotated[int, Field(ge=1, le=50)] = 10


class MatchOut(BaseModel):
    entry_id: str
    entry_kind: str
    entry_name: str
    matched_name: str
    name_kind: str
    score: float
    decision: str
    programs: list[str]
    linked_to: list[str]
    reasons: list[str]


class ScreenOut(BaseModel):
    list_version: str
    decision: str
    matches: list[MatchOut]


class HitOut(BaseModel):
    id: str
    subject_kind: str
    subject_ref: str
    user_id: str
    list_name: str
    list_version: str
    entry_id: str
    matched_name: str
    score: float
    decision: str
    status: str
    reasons: list[str]
    created_at: str
    reviewed_by: str | None
    reviewed_at: str | None
    review_note: str | None


class ReviewIn(Strict):
    reason: Annotated[str, Field(min_length=3, max_length=1000)]


class RescreenOut(BaseModel):
    id: str
    list_version: str
    status: Literal["running", "done", "failed"] | str
    subjects: int
    new_hits: int
    started_at: str
    finished_at: str | None
