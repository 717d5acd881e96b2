"""Ledger event values (pure: no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tradeguard.core.errors import InvalidInput
from tradeguard.core.events import is_valid_event_type
from tradeguard.core.sensitive import scrub_value

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
class PersonalData:
    """Personal data an event records about one person (its owner): sealed under the
    owner's own key before the event is hashed, so destroying that key erases it while the
    chain still verifies (ledger/personal/)."""

    owner: Party
    fields: Mapping[str, Any]

    @property
    def subject(self) -> str:
        """The owner as the subject keys name it: `kind:id`."""
        return f"{self.owner.kind}:{self.owner.id}"

    @classmethod
    def of(cls, owner: Party, **fields: Any) -> PersonalData | None:
        """The fields that have a value, or None when none has (nothing to seal)."""
        present = {name: value for name, value in fields.items() if value is not None}
        return cls(owner, present) if present else None


@dataclass(frozen=True, slots=True)
class LedgerEvent:
    """An auditable fact, before it is given an id, a timestamp and a place in the chain."""

    type: str
    data: Mapping[str, Any] = field(default_factory=dict)
    actor: Party = SYSTEM
    subject: Party | None = None
    request_id: str | None = None
    personal: PersonalData | None = None

    def __post_init__(self) -> None:
        if not is_valid_event_type(self.type):
            raise InvalidInput(f"event type {self.type!r} is not shaped source:subject:action")

    def envelope(
        self, *, event_id: str, occurred_ns: int, sealed: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The JSON document that is canonicalized, hashed and stored; `sealed` is the
        personal section as ciphertext (the plaintext never enters the document)."""
        if self.personal is not None and self.personal.fields and sealed is None:
            raise ValueError("an event's personal data must be sealed before it is stored")
        document: dict[str, Any] = {
            "v": EVENT_FORMAT_VERSION,
            "id": event_id,
            "type": self.type,
            # Nanoseconds exceed 2^53, so they travel as a decimal string (RFC 8785 3.2.2.3).
            "ts": str(occurred_ns),
            "actor": self.actor.as_json(),
            "subject": self.subject.as_json() if self.subject else None,
            # Free text in the data (a reason, a note) may hold a card number or a tax id
            # someone typed there: masked, since the ledger can never be edited afterwards
            # (PCI DSS 3.5.1). Personal data belongs in the sealed `personal` section.
            "data": scrubbed_data(self.data),
        }
        if self.request_id is not None:
            document["request_id"] = self.request_id
        if sealed is not None:
            document["personal"] = dict(sealed)
        return document


def scrubbed_data(data: Mapping[str, Any]) -> dict[str, Any]:
    return {key: scrub_value(value) for key, value in data.items()}


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


@dataclass(frozen=True, slots=True)
class StagedEvent:
    """An event stamped and serialized but not yet inserted (`Ledger.stage`): its
    `audit_event` row and the (kind, value) search references it names."""

    row: dict[str, Any]
    references: tuple[tuple[str, str], ...]
