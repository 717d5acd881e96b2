"""Identity use cases. Services never commit: the request, job or command owns the transaction."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email
from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.access.domain import Role
from tradeguard.core.clock import Clock
from tradeguard.core.errors import Conflict, InvalidInput
from tradeguard.core.ids import IdGenerator
from tradeguard.identity import repository
from tradeguard.identity.errors import WeakPassword
from tradeguard.identity.events import IdentityEvent
from tradeguard.identity.models import User
from tradeguard.identity.password_hashing import PasswordHasher
from tradeguard.identity.passwords import PasswordPolicy
from tradeguard.ledger.domain import SYSTEM, LedgerEvent, Party
from tradeguard.ledger.service import Ledger

USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{2,31}$")


def normalize_username(raw: str) -> str:
    username = unicodedata.normalize("NFKC", raw).strip().casefold()
    if not USERNAME_PATTERN.fullmatch(username):
        raise InvalidInput(
            "username must be 3-32 characters: letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return username


def normalize_email(raw: str) -> str:
    try:
        result = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError:
        raise InvalidInput("email is not a valid address") from None
    return result.normalized.casefold()


@dataclass(frozen=True, slots=True)
class NewUser:
    id: str
    username: str
    email: str
    role: Role


class IdentityService:
    def __init__(
        self,
        *,
        clock: Clock,
        ids: IdGenerator,
        ledger: Ledger,
        hasher: PasswordHasher,
        policy: PasswordPolicy | None = None,
    ) -> None:
        self.clock = clock
        self.ids = ids
        self.ledger = ledger
        self.hasher = hasher
        self.policy = policy or PasswordPolicy()

    async def create_user(
        self,
        session: AsyncSession,
        *,
        username: str,
        email: str,
        password: str,
        role: Role,
        email_verified: bool = False,
        actor: Party = SYSTEM,
        event: IdentityEvent = IdentityEvent.USER_CREATED,
    ) -> NewUser:
        """Create an account after the password policy passes; the audit event commits with it."""
        name = normalize_username(username)
        address = normalize_email(email)
        verdict = self.policy.check(password, user_inputs=(name, address))
        if not verdict.accepted:
            raise WeakPassword(verdict.message, reason=verdict.reason)
        if await repository.username_or_email_taken(session, name, address):
            raise Conflict("that username or email is already registered")
        now = self.clock.now_ns()
        user = User(
            id=self.ids.new_str(),
            username=name,
            email=address,
            email_verified_ns=now if email_verified else None,
            password_hash=self.hasher.hash(password),
            role=role.value,
            status="active",
            failed_logins=0,
            created_ns=now,
            password_changed_ns=now,
        )
        repository.add(session, user)
        await session.flush()
        await self.ledger.append(
            session,
            LedgerEvent(
                type=event,
                actor=actor,
                subject=Party("user", user.id),
                data={"role": role.value, "email_verified": email_verified},
            ),
        )
        return NewUser(user.id, name, address, role)
