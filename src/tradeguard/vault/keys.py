"""The card vault's key operations recorded in its own access log (PCI-4, PCI DSS 3.6/3.7).

The vault's keys are managed by the platform's key service (crypto/service.py KeyManagement,
scoped to the vault's classes): rotation, usage counts, rewrap, retirement, and the re-wrap
under a new key-encrypting key. The platform's ledger lives in the main database, which the
vault process cannot reach (PCI-3), so each of those events is written instead to the
vault's own append-only access log, in the same transaction as the change: its type as the
operation (`crypto:key:rotated`), the actor as role and party, its data as JSON. Key
material never appears there, only class, kind, version and KEK ids.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.core.clock import Clock
from tradeguard.core.ids import IdGenerator
from tradeguard.vault import repository

KEY_OPERATION_DONE: Final = "done"
MAX_ROLE_CHARS: Final = 16
MAX_PARTY_CHARS: Final = 120
# Operator actions on the vault that are not key operations, in the same log (no key
# material, no card data: serials, reasons, backup ids and hashes).
CERTIFICATE_REVOKED: Final = "vault:certificate:revoked"
BACKUP_CREATED: Final = "vault:backup:created"
BACKUP_RESTORED: Final = "vault:backup:restored"


class _Actor(Protocol):
    @property
    def kind(self) -> str: ...

    @property
    def id(self) -> str: ...


class KeyEventRecord(Protocol):
    """What the key service hands its audit (a ledger event; the vault reads only this of
    it, and imports nothing of the platform's ledger)."""

    @property
    def type(self) -> str: ...

    @property
    def data(self) -> Mapping[str, Any]: ...

    @property
    def actor(self) -> _Actor: ...

    @property
    def request_id(self) -> str | None: ...


class VaultKeyAudit:
    """crypto/service.py KeyAudit on the vault's access log."""

    def __init__(self, *, clock: Clock, ids: IdGenerator) -> None:
        self._clock = clock
        self._ids = ids

    async def append(self, session: AsyncSession, event: KeyEventRecord) -> str:
        entry_id = self._ids.new_str()
        await repository.log_access(
            session,
            {
                "id": entry_id,
                "occurred_ns": self._clock.now_ns(),
                "operation": event.type,
                # Who did it: an operator at the command line, or the vault's own scheduled
                # check (`system`); never a vault client role.
                "role": event.actor.kind[:MAX_ROLE_CHARS],
                "on_behalf_of": f"{event.actor.kind}:{event.actor.id}"[:MAX_PARTY_CHARS],
                "token": None,
                "outcome": KEY_OPERATION_DONE,
                "request_id": event.request_id,
                "detail": json.dumps(dict(event.data), sort_keys=True, separators=(",", ":")),
            },
        )
        return entry_id


@dataclass(frozen=True, slots=True)
class OperatorEvent:
    """An operator's action on the vault, for `VaultKeyAudit.append`."""

    type: str
    actor: _Actor
    data: Mapping[str, Any] = field(default_factory=dict)
    request_id: str | None = None
