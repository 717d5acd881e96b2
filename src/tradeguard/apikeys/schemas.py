"""API request and response bodies for API keys (pydantic v2, extra fields refused). A
secret appears in one response only: the one that creates it (create, rotate)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Cidrs = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=64)]],
    Field(max_length=50, description="IPv4/IPv6 CIDR blocks, e.g. 203.0.113.0/24"),
]
ScopeName = Literal["read", "trade"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateKeyIn(Strict):
    name: Annotated[str, Field(min_length=1, max_length=60)]
    scope: ScopeName
    ip_allowlist: Cidrs = []


class ChangeKeyIn(Strict):
    scope: ScopeName | None = None
    ip_allowlist: Cidrs | None = None


class KeyOut(BaseModel):
    id: str
    user_id: str
    name: str
    scope: str
    ip_allowlist: list[str]
    status: Literal["active", "expired", "revoked"]
    created_at: str
    expires_at: str
    last_used_at: str | None
    revoked_at: str | None
    revoked_reason: str | None
    rotated_to: str | None


class NewKeyOut(BaseModel):
    key: KeyOut
    secret: str = Field(description="Shown once: store it now; it is never shown again.")


class LeakIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    token: Annotated[str, Field(max_length=200)]
    type: Annotated[str, Field(max_length=100)] = ""
    url: Annotated[str, Field(max_length=2000)] = ""
    source: Annotated[str, Field(max_length=100)] = ""


class LeakOut(BaseModel):
    token_hash: str
    token_type: str
    label: Literal["true_positive", "false_positive"]
