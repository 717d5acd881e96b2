"""Ledger event values (pure: no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tradeguard.core.errors import InvalidInput
from tradeguard.core.events import is_valid_event_type

EVENT_FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Party:
    """Who acted or was acted upon: a kind (user, staff, system, api_key, account) and an id."""

    kind: str
    id: str

    def as_json(self) -> dict[str, str]:
        return {"kind": self.kind, "id": self.id}


SYSTEM = Party("system", "tradeguard")


@dataclass(frozen=True, slots=True)
class LedgerEvent:
    """An auditable fact, before it is given an id, a timestamp and a place in the chain."""

    type: str
    data: Mapping[str, Any] = field(default_factory=dict)
    actor: Party = SYSTEM
    subject: Party | None = None
    request_id: str | None = None

    def __post_init__(self) -> None:
        if not is_valid_event_type(self.type):
            raise InvalidInput(f"event type {self.type!r} is not shaped source:subject:action")

    def envelope(self, *, event_id: str, occurred_ns: int) -> dict[str, Any]:
        """The JSON document that is canonicalized, hashed and stored."""
        document: dict[str, Any] = {
            "v": EVENT_FORMAT_VERSION,
            "id": event_id,
            "type": self.type,
            # Nanoseconds exceed 2^53, so they travel as a decimal string (RFC 8785 3.2.2.3).
            "ts": str(occurred_ns),
            "actor": self.actor.as_json(),
            "subject": self.subject.as_json() if self.subject else None,
            "data": dict(self.data),
        }
        if self.request_id is not None:
            document["request_id"] = self.request_id
        return document


@dataclass(frozen=True, slots=True)
class AppendedEvent:
    """An event as stored: its primary key and id; its chain position comes later."""

    pk: int
    event_id: str
    occurred_ns: int
    body: bytes


@dataclass(frozen=True, slots=True)
class SequencerState:
    """Where the sequencer stands: the last chained position and its ordering cursor."""

    last_seq: int
    last_chain_hash: bytes
    cursor_txid: int
    cursor_pk: int
