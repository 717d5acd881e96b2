"""Builds the identity services from settings, once per process (app, CLI command, test)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tradeguard.access.usage import PermissionUseTracker
from tradeguard.config import Settings
from tradeguard.core.clock import Clock
from tradeguard.core.ids import IdGenerator
from tradeguard.crypto.service import KeyManagement
from tradeguard.crypto.tasks import key_policy_from, keyring_from, open_keyring
from tradeguard.db.engine import reading, unit_of_work
from tradeguard.identity.breach_provider import http_range_fetcher
from tradeguard.identity.breached_passwords import KAnonymityBreachChecker
from tradeguard.identity.common import IdentityDeps
from tradeguard.identity.confirmations import ActionConfirmations
from tradeguard.identity.factors import FactorService
from tradeguard.identity.keystore import load_or_create_ring
from tradeguard.identity.password_hashing import Argon2Parameters, PasswordHasher
from tradeguard.identity.policy import IdentityPolicy
from tradeguard.identity.service import AccountService
from tradeguard.identity.sessions import AuthService
from tradeguard.identity.signing_keys import SigningKeyRing
from tradeguard.identity.tokens import AccessTokenIssuer, AccessTokenVerifier
from tradeguard.ledger.personal.keys import SubjectKeys
from tradeguard.ledger.service import Ledger
from tradeguard.notify.service import Notifier


def policy_from(settings: Settings) -> IdentityPolicy:
    return IdentityPolicy(
        origin=settings.public_origin,
        rp_id=settings.webauthn_rp_id,
        rp_name=settings.webauthn_rp_name,
        audience=settings.jwt_audience,
        trader_idle_seconds=settings.trader_idle_timeout_seconds,
        staff_idle_seconds=settings.staff_idle_timeout_seconds,
        step_up_seconds=settings.step_up_window_seconds,
        max_failures=settings.login_max_failures,
        lockout_seconds=settings.login_lockout_seconds,
        ip_max_failures=settings.ip_max_failures,
        refresh_grace_seconds=settings.refresh_grace_seconds,
        signup_max_per_network=settings.signup_max_per_network,
        verify_resend_max_per_address=settings.verify_resend_max_per_address,
        verify_resend_max_per_network=settings.verify_resend_max_per_network,
        sms_max_per_user=settings.sms_max_per_user,
        sms_max_per_number=settings.sms_max_per_number,
        sms_max_per_network=settings.sms_max_per_network,
        max_pending_factors=settings.max_pending_factors,
        pending_factor_seconds=settings.pending_factor_seconds,
        device_recognition_seconds=settings.device_recognition_seconds,
        sms_enabled=settings.sms_provider != "disabled",
    )


@dataclass(frozen=True, slots=True)
class IdentityServices:
    deps: IdentityDeps
    sessions: async_sessionmaker[AsyncSession]
    keys: SigningKeyRing
    verifier: AccessTokenVerifier
    hasher: PasswordHasher
    auth: AuthService
    accounts: AccountService
    factors: FactorService
    # Email + SMS codes confirming one sensitive action, such as a withdrawal (ACCT-2).
    confirmations: ActionConfirmations
    # Field-encryption keys: creation, rotation, rewrap (crypto/service.py).
    key_management: KeyManagement
    # When staff last used each permission: recorded by the route guard (IAC-4 reviews).
    permission_use: PermissionUseTracker = field(default_factory=PermissionUseTracker)
    _keyring_lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @property
    def clock(self) -> Clock:
        return self.deps.clock

    async def load_keyring(self) -> None:
        """Read the keyring's keys (making the first ones if need be); once per process."""
        async with self._keyring_lock:
            if not self.key_management.keyring.loaded:
                await open_keyring(self.key_management, self.sessions)

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[AsyncSession]:
        async with unit_of_work(self.sessions) as session:
            yield session

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        """A session that only reads (db/engine.py `reading`)."""
        async with reading(self.sessions) as session:
            yield session


def build_identity(
    settings: Settings,
    *,
    clock: Clock,
    ids: IdGenerator,
    sessions: async_sessionmaker[AsyncSession],
    argon2: Argon2Parameters | None = None,
) -> IdentityServices:
    keyring = keyring_from(settings, clock=clock)
    keys = load_or_create_ring(settings.keys_dir / "jwt")
    policy = policy_from(settings)
    ledger = Ledger(clock=clock, ids=ids, subject_keys=SubjectKeys(keyring, clock=clock, ids=ids))
    deps = IdentityDeps(
        clock=clock,
        ids=ids,
        ledger=ledger,
        keyring=keyring,
        notifier=Notifier(clock=clock, ids=ids, keyring=keyring),
        policy=policy,
    )
    hasher = PasswordHasher(argon2)
    issuer = AccessTokenIssuer(
        keys=keys, clock=clock, issuer=policy.issuer, audience=policy.audience
    )
    verifier = AccessTokenVerifier(
        keys=keys, clock=clock, issuer=policy.issuer, audience=policy.audience
    )
    auth = AuthService(deps, hasher=hasher, issuer=issuer)
    return IdentityServices(
        deps=deps,
        sessions=sessions,
        keys=keys,
        verifier=verifier,
        hasher=hasher,
        auth=auth,
        accounts=AccountService(
            deps,
            hasher=hasher,
            auth=auth,
            breach_checker=(
                KAnonymityBreachChecker(http_range_fetcher(settings.breached_password_api_url))
                if settings.breached_password_api_url
                else None
            ),
            breach_fail_closed=settings.breached_password_fail_closed,
        ),
        factors=FactorService(deps, auth=auth),
        confirmations=ActionConfirmations(deps, auth),
        key_management=KeyManagement(keyring, ledger=ledger, policy=key_policy_from(settings)),
    )


async def start_identity(
    settings: Settings,
    *,
    clock: Clock,
    ids: IdGenerator,
    sessions: async_sessionmaker[AsyncSession],
    argon2: Argon2Parameters | None = None,
) -> IdentityServices:
    """`build_identity`, with the keyring's keys read (and, the first time, made): what a
    command or a test that encrypts needs before its first unit of work."""
    identity = build_identity(settings, clock=clock, ids=ids, sessions=sessions, argon2=argon2)
    await identity.load_keyring()
    return identity
