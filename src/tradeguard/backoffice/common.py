"""What the back-office services share: who is acting, and the keyed digests they use."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.access.domain import Permission, Role, permissions_for
from tradeguard.backoffice.domain import staff_pseudonym
from tradeguard.core.clock import Clock
from tradeguard.core.errors import Forbidden
from tradeguard.core.ids import IdGenerator
from tradeguard.crypto.keyring import LocalKeyring
from tradeguard.ledger.domain import LedgerEvent, Party
from tradeguard.ledger.service import Ledger

PSEUDONYM_PURPOSE = "backoffice.staff_pseudonym"
QUERY_DIGEST_PURPOSE = "backoffice.search_query"
OPERATOR_ROLE = "OPERATOR"


@dataclass(frozen=True, slots=True)
class Actor:
    """A staff member signed in through the API, or an operator at the command line.

    `permissions` are what the session may use now (the guard's narrowed set), so the
    services can check them again themselves (RBAC-5, defence in depth).
    """

    party: Party
    role: str
    permissions: frozenset[str]
    user_id: str | None = None
    request_id: str | None = None
    ip: str | None = None

    @classmethod
    def staff(
        cls,
        *,
        user_id: str,
        role: Role,
        permissions: frozenset[str],
        request_id: str | None = None,
        ip: str | None = None,
    ) -> Actor:
        return cls(Party("staff", user_id), role.value, permissions, user_id, request_id, ip)

    @classmethod
    def operator(cls, name: str) -> Actor:
        """The command line runs on the server with the database's credentials: it may do
        what an admin may, and is audited under the operating-system user who ran it."""
        return cls(Party("operator", name), OPERATOR_ROLE, frozenset(permissions_for(Role.ADMIN)))

    @property
    def label(self) -> str:
        """How the actor is stored: `staff:<user id>` or `operator:<name>`."""
        return f"{self.party.kind}:{self.party.id}"

    def require(self, permission: Permission) -> None:
        """Refuse unless the actor holds `permission` (checked again below the route)."""
        if permission.value not in self.permissions:
            raise Forbidden(f"this action needs the {permission.value} permission")


@dataclass(frozen=True, slots=True)
class BackofficeDeps:
    clock: Clock
    ids: IdGenerator
    ledger: Ledger
    keyring: LocalKeyring

    def pseudonym(self, actor: Actor) -> str:
        return staff_pseudonym(self.keyring.derive_secret(PSEUDONYM_PURPOSE), actor.label)

    def query_digest(self, query: str) -> str:
        """A keyed digest of a search query: investigators can test "was X searched?"
        without the ledger holding the addresses people searched for."""
        key = self.keyring.derive_secret(QUERY_DIGEST_PURPOSE)
        return hmac.new(key, query.encode(), hashlib.sha256).hexdigest()

    async def audit(
        self,
        session: AsyncSession,
        event_type: str,
        *,
        actor: Actor,
        subject: Party | None,
        data: Mapping[str, Any],
    ) -> None:
        payload = dict(data)
        if actor.ip:
            payload.setdefault("ip", actor.ip)
        payload.setdefault("actor_role", actor.role)
        await self.ledger.append(
            session,
            LedgerEvent(
                type=event_type,
                actor=actor.party,
                subject=subject,
                data=payload,
                request_id=actor.request_id,
            ),
        )
