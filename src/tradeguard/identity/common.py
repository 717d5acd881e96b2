"""What the identity services share: request context, secret tokens, audit helper."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.core.clock import Clock
from tradeguard.core.ids import IdGenerator
from tradeguard.crypto import peppers
from tradeguard.crypto.keyring import Keyring
from tradeguard.identity.policy import IdentityPolicy
from tradeguard.ledger.domain import LedgerEvent, Party, PersonalData
from tradeguard.ledger.personal.subjects import visitors
from tradeguard.ledger.service import Ledger
from tradeguard.notify.service import Notifier

# Who acts when nobody is signed in. The client address is personal data: it goes in the
# event's sealed personal section, never in the actor (stored in the clear and indexed).
ANONYMOUS = Party("anonymous", "-")


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """Who is asking, as far as the transport can tell (never trusted for authorization)."""

    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None
    device_token: str | None = field(default=None, repr=False)
    device_attributes: Mapping[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SignIn:
    """A session that just started, as told to whoever watches sign-ins (the takeover
    defence, tradeguard/fraud): identity does not know what they do with it."""

    user_id: str
    session_id: str
    device_id: str | None
    role: str
    at_ns: int
    request: RequestInfo


class SignInObserver(Protocol):
    async def __call__(self, session: AsyncSession, sign_in: SignIn) -> None:
        """Called in the sign-in's own transaction, after the session row and its event."""


def new_secret_token() -> tuple[str, bytes]:
    """A 256-bit URL-safe secret and its SHA-256 (what is stored and looked up)."""
    token = secrets.token_urlsafe(32)
    return token, hash_secret_token(token)


def hash_secret_token(token: str) -> bytes:
    # High-entropy random tokens need no slow hash: a fast digest is enough to make a leaked
    # table useless, and allows lookup by value.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True, slots=True)
class IdentityDeps:
    """The collaborators every identity service uses."""

    clock: Clock
    ids: IdGenerator
    ledger: Ledger
    keyring: Keyring
    notifier: Notifier
    policy: IdentityPolicy

    async def audit(
        self,
        session: AsyncSession,
        event_type: str,
        *,
        user_id: str | None,
        request: RequestInfo | None = None,
        actor: Party | None = None,
        data: Mapping[str, Any] | None = None,
        personal: Mapping[str, Any] | None = None,
    ) -> None:
        """Append an identity event; the client address and any `personal` fields go in its
        sealed personal section, owned by the user it is about (or, with none, by this
        month's visitors: ledger/personal/subjects.py)."""
        fields = dict(personal or {})
        if request is not None and request.ip:
            fields.setdefault("ip", request.ip)
        subject = Party("user", user_id) if user_id else None
        await self.ledger.append(
            session,
            LedgerEvent(
                type=event_type,
                actor=actor or subject or ANONYMOUS,
                subject=subject,
                data=dict(data or {}),
                request_id=request.request_id if request else None,
                personal=PersonalData.of(subject or visitors(self.clock.now_ns()), **fields),
            ),
        )

    async def warm_visitors_key(self, session: AsyncSession) -> None:
        """Give this month's visitors a data key in the caller's own transaction (see
        `kept_if`): otherwise the path without an account, whose events are theirs, would
        create that key in a savepoint and roll it back on every request, and take longer
        than the path with one."""
        if self.ledger.subject_keys is not None:
            await self.ledger.subject_keys.ensure(session, visitors(self.clock.now_ns()))

    def pepper(self, purpose: str) -> bytes:
        return self.keyring.derive_secret(purpose)

    def counter_key(self, kind: str, value: str) -> str:
        """A throttle key for personal data (an address, a phone number) without storing it.

        Keyed (HMAC), so the throttle table cannot be reversed by hashing a list of addresses.
        """
        digest = hmac.new(self.pepper(COUNTER_KEY_PEPPER), value.encode(), hashlib.sha256)
        return f"{kind}:{digest.hexdigest()}"


COUNTER_KEY_PEPPER = peppers.COUNTER_KEY_PEPPER


@asynccontextmanager
async def kept_if(session: AsyncSession, keep: bool) -> AsyncIterator[None]:
    """Run a block's statements in a SAVEPOINT, then keep them or roll them back.

    The database counterpart of the dummy password verification: a path that must not reveal
    whether an account exists runs the same statements either way and throws them away when
    there is no account, so its timing (and its cost) does not depend on the answer. A
    block that records an event for a visitor when there is no account calls
    `IdentityDeps.warm_visitors_key` first, so that both paths find their data key ready.
    """
    savepoint = await session.begin_nested()
    try:
        yield
        await session.flush()
    except BaseException:
        await savepoint.rollback()
        raise
    if keep:
        await savepoint.commit()
    else:
        await savepoint.rollback()
