"""Per-request context carried across awaits (contextvars), readable from any layer."""

from __future__ import annotations

from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("tradeguard_request_id", default=None)
