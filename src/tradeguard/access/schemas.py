"""API request and response bodies for staff access control (pydantic v2, extra fields refused).

Bounds here only keep absurd input out; the services check the rest (the same checks serve
the CLI), so a refusal reads the same from either.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

PermissionName = Annotated[
    str,
    Field(max_length=40, description="A permission of the catalogue.", examples=["admin:users"]),
]
LevelName = Annotated[
    str,
    Field(
        max_length=20,
        description="An access level: read-only, operator, engineer or admin.",
        examples=["operator"],
    ),
]
Text = Annotated[str, Field(max_length=4000)]
CustomerId = Annotated[str, Field(max_length=64, description="A customer's user id.")]
Minutes = Annotated[
    int,
    Field(
        strict=True,
        le=100_000,
        description="How long, in minutes; at most the permission's or level's cap (default: "
        "the cap).",
        examples=[30],
    ),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GrantRequestIn(Strict):
    """Name exactly one of `permission` and `level`."""

    permission: PermissionName | None = None
    level: LevelName | None = None
    reason: Text = Field(description="Why (at least 3 characters; audited, shown to approvers).")
    minutes: Minutes | None = None
    customers: list[CustomerId] | None = Field(
        default=None,
        max_length=100,
        description="Only for these customers (user ids of existing non-staff users, at most "
        "20): a use of the grant naming another customer raises an access alert. Requests "
        "only; break-glass takes no scope.",
    )


class ApproveIn(Strict):
    note: Text | None = None


class ReasonIn(Strict):
    reason: Text


class NoteIn(Strict):
    note: Text


class LevelIn(Strict):
    level: LevelName
    reason: Text


class GrantOut(BaseModel):
    id: str
    user_id: str
    username: str | None
    kind: Literal["request", "breakglass"]
    permission: str | None
    level: str | None
    reason: str
    customers: list[str] = Field(
        description="The customers the grant is for; empty: not limited to customers."
    )
    minutes: int
    status: Literal["pending", "approved", "refused", "withdrawn", "revoked", "expired"]
    requested_at: str
    decide_by: str | None
    decided_by: str | None
    decided_by_username: str | None
    decided_at: str | None
    decision_note: str | None
    starts_at: str | None
    expires_at: str | None
    ended_at: str | None
    ended_by: str | None
    end_note: str | None


class BreakGlassOut(BaseModel):
    grant: GrantOut
    review_id: str


class ReviewItemOut(BaseModel):
    id: str
    open: bool
    taker_id: str
    taker_username: str | None
    opened_at: str
    closed_at: str | None
    closed_by: str | None
    note: str | None
    grant: GrantOut


class CatalogueEntryOut(BaseModel):
    permission: str
    kind: str
    description: str
    max_grant_minutes: int
    roles: list[str]


class LevelOut(BaseModel):
    level: str
    kinds: list[str]
    description: str
    max_grant_minutes: int


class CatalogueOut(BaseModel):
    permissions: list[CatalogueEntryOut]
    levels: list[LevelOut]


class LevelChangeOut(BaseModel):
    user_id: str
    username: str
    previous: str | None
    level: str


# The access review is free-form JSON (`AccessReport.as_json`), described here for OpenAPI.
class ReviewPermissionOut(BaseModel):
    permission: str
    kind: str
    source: Literal["standing", "grant"]
    grant_id: str | None
    last_used_at: str | None
    days_unused: int
    flag_for_removal: bool


class ReviewGrantOut(BaseModel):
    grant_id: str
    kind: str
    permission: str | None
    level: str | None
    reason: str
    customers: list[str]
    granted_by: str | None
    granted_by_username: str | None
    granted_at: str
    expires_at: str


class ReviewStaffOut(BaseModel):
    user_id: str
    username: str
    role: str
    level: str | None
    active: bool
    grants: list[ReviewGrantOut]
    permissions: list[ReviewPermissionOut]


class AccessReviewOut(BaseModel):
    generated_at: str
    unused_days: int
    staff: list[ReviewStaffOut]

    @classmethod
    def of(cls, document: dict[str, Any]) -> AccessReviewOut:
        return cls.model_validate(document)
