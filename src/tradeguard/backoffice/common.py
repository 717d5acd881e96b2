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
from tradeguard.core.errors import PermissionMissing
from tradeguard.core.ids import IdGenerator
from tradeguard.crypto import peppers
from tradeguard.crypto.keyring import FieldKeyring
from tradeguard.ledger.domain import LedgerEvent, Party, PersonalData
from tradeguard.ledger.service import Ledger

PSEUDONYM_PURPOSE = peppers.STAFF_PSEUDONYM_PEPPER
QUERY_DIGEST_PURPOSE = peppers.QUERY_DIGEST_PEPPER
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
    # A staff member named at the command line (`--as`) who proved it there with a console
    # code from their hardware-key session: the operating-system user who ran the command
    # (audited next to them), and the session that issued the code.
    console_operator: str | None = None
    console_session_id: str | None = None

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
    def console_staff(
        cls,
        *,
        user_id: str,
        role: Role,
        permissions: frozenset[str],
        operator: str,
        session_id: str | None = None,
    ) -> Actor:
        """A staff member at the command line, verified there by a console code that their
        hardware-key session issued: they act
        with their own authority (their standing level and live grants, as over the API),
        so four-eyes rules compare staff members, not operating-system accounts."""
        return cls(
            Party("staff", user_id),
            role.value,
            permissions,
            user_id,
            console_operator=operator,
            console_session_id=session_id,
        )

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
            raise PermissionMissing(
                f"this action needs the {permission.value} permission",
                permission=permission.value,
            )


@dataclass(frozen=True, slots=True)
class BackofficeDeps:
    clock: Clock
    ids: IdGenerator
    ledger: Ledger
    keyring: FieldKeyring

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
        payload.setdefault("actor_role", actor.role)
        if actor.console_operator is not None:
            payload.setdefault("via", "cli")
            payload.setdefault("operator", actor.console_operator)
            payload.setdefault("staff_verified_by", "hardware_key_session")
            if actor.console_session_id is not None:
                payload.setdefault("staff_code_session_id", actor.console_session_id)
        # The staff member's client address is their personal data: sealed under their key
        # (an operator at the command line has none).
        owner = Party("user", actor.user_id) if actor.user_id else None
        await self.ledger.append(
            session,
            LedgerEvent(
                type=event_type,
                actor=actor.party,
                subject=subject,
                data=payload,
                request_id=actor.request_id,
                personal=PersonalData.of(owner, ip=actor.ip) if owner else None,
            ),
        )
