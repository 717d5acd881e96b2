"""Query parameters and responses of the audit search API (unknown parameters are refused:
a misspelt filter must not silently widen a compliance query to the whole ledger)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tradeguard.ledger.search.query import (
    DEFAULT_PAGE,
    MAX_CURSOR_CHARS,
    MAX_ID_CHARS,
    MAX_INSTANT_CHARS,
    MAX_PAGE,
    SortOrder,
)

INSTANT = (
    "Nanoseconds since the Unix epoch (digits), or ISO-8601 with an offset "
    "(2026-01-02T09:30:00Z, 2026-01-02T04:30:00.000000001-05:00)."
)


class ExportFormat(StrEnum):
    CSV = "csv"
    JSON = "json"


class EventFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_ID_CHARS,
        description="An event type (trading:order:placed) or a prefix ending in a colon "
        "(trading: or trading:order:).",
    )
    actor_id: str | None = Field(default=None, min_length=1, max_length=MAX_ID_CHARS)
    subject_id: str | None = Field(default=None, min_length=1, max_length=MAX_ID_CHARS)
    account_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_ID_CHARS,
        description="Events naming this account: in their data (account_id, a staff "
        "request's params.account_id) or as their subject or actor.",
    )
    order_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_ID_CHARS,
        description="Events naming this order (order_id, replaces_order_id, closed_by_order, "
        "cancelled_orders).",
    )
    from_: str | None = Field(
        default=None,
        alias="from",
        min_length=1,
        max_length=MAX_INSTANT_CHARS,
        description="Events at or after this instant. " + INSTANT,
    )
    to: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_INSTANT_CHARS,
        description="Events before this instant (exclusive). " + INSTANT,
    )


class EventSearchQuery(EventFilters):
    sort: SortOrder = Field(default=SortOrder.NEWEST, description="Chain order: newest first.")
    limit: int = Field(default=DEFAULT_PAGE, ge=1, le=MAX_PAGE)
    cursor: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_CURSOR_CHARS,
        description="The next_cursor of the previous page (with the same filters and sort).",
    )


class EventExportQuery(EventFilters):
    sort: SortOrder = Field(default=SortOrder.OLDEST, description="Chain order: oldest first.")
    format: ExportFormat | None = Field(
        default=None, description="csv or json; without it, the Accept header decides (json)."
    )


class PartyOut(BaseModel):
    kind: str
    id: str


class AuditEventOut(BaseModel):
    seq: int = Field(description="The event's position in the hash chain (1 is the first).")
    event_id: str
    type: str
    occurred_ns: str = Field(description="Nanoseconds since the Unix epoch (a string: > 2^53).")
    occurred_at: str = Field(description="RFC 3339 UTC with nanoseconds.")
    actor: PartyOut | None
    subject: PartyOut | None
    request_id: str | None
    document: dict[str, Any] = Field(description="The event as stored (canonical JSON).")


class AuditEventPageOut(BaseModel):
    items: list[AuditEventOut]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null: no more.")
