"""Per-request context carried across awaits (contextvars), readable from any layer."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

request_id_var: ContextVar[str | None] = ContextVar("tradeguard_request_id", default=None)


@dataclass(slots=True)
class DatabaseActivity:
    """What one request has done with the database so far (noted by the engine's hooks)."""

    connected: bool = False
    commit_attempted: bool = False


database_activity_var: ContextVar[DatabaseActivity | None] = ContextVar(
    "tradeguard_database_activity", default=None
)
