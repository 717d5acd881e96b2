"""API keys: creation, rotation, revocation, allowlists, reminders, leak reports (API-1,
ACCT-3), and the signed-request check that turns a key into the route guard's principal
(API-3).

A key's permissions are the owner's trading permissions narrowed to its scope's (deny by
default: nothing else, never money movement or security settings). Every allowed use is
audited by the route guard's permission check event, which names the key; every refused
signed request commits an `apikeys:request:refused` event with its stable reason.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request

from tradeguard.access.domain import Permission, Role
from tradeguard.apikeys.models import ApiKey
from tradeguard.apikeys.signing import (
    KEY_HEADER,
    KEY_ID_PATTERN,
    NONCE_HEADER,
    NONCE_PATTERN,
    SIGNATURE_HEADER,
    SIGNATURE_PATTERN,
    TIMESTAMP_HEADER,
    TIMESTAMP_PATTERN,
    NonceStore,
    canonical_request,
    new_key_id,
    new_secret,
    secret_digest,
    signature_matches,
    well_formed_secret,
)
from tradeguard.config import Settings
from tradeguard.core.clock import NS_PER_SECOND, Clock
from tradeguard.core.context import request_id_var
from tradeguard.core.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from tradeguard.crypto.columns import keyring_field
from tradeguard.db.engine import unit_of_work
from tradeguard.identity.container import IdentityServices
from tradeguard.identity.guard import Principal, request_info
from tradeguard.identity.ip_allowlist import allowed, normalize
from tradeguard.identity.sessions import SessionState, effective_permission_set
from tradeguard.ledger.domain import LedgerEvent, Party, PersonalData

NS_PER_MS: Final = 1_000_000
NS_PER_HOUR: Final = 3600 * NS_PER_SECOND
NS_PER_DAY: Final = 86_400 * NS_PER_SECOND
# last_used_ns is written at most this often per key: not a write per request.
TOUCH_INTERVAL_NS: Final = 60 * NS_PER_SECOND
# A key read from the database serves this process this long (a revocation here drops it
# at once; elsewhere it takes effect within this second), as the session state cache does.
CACHE_NS: Final = NS_PER_SECOND
REMINDER_DAYS: Final = (7, 1)
API_KEY_AMR: Final = ("apikey",)


class Scope(StrEnum):
    READ = "read"
    TRADE = "trade"


# What each scope may do; anything else is refused to a key (deny by default).
SCOPE_PERMISSIONS: Final[Mapping[Scope, frozenset[str]]] = {
    Scope.READ: frozenset({Permission.ACCOUNT_VIEW.value}),
    Scope.TRADE: frozenset(
        {
            Permission.ACCOUNT_VIEW.value,
            Permission.ORDER_PLACE.value,
            Permission.ORDER_CANCEL.value,
            Permission.ORDER_MODIFY.value,
        }
    ),
}
# Routes open to any signed-in user that a key may also use: market data only (the others
# of their kind are the user's own security settings: factors, sessions, keys).
KEY_MARKET_DATA_ROUTES: Final = frozenset(
    {"/api/v1/instruments", "/api/v1/instruments/{symbol}", "/api/v1/market/halts"}
)


class ApiKeyEvent(StrEnum):
    CREATED = "apikeys:key:created"
    ROTATED = "apikeys:key:rotated"
    CHANGED = "apikeys:key:changed"
    REVOKED = "apikeys:key:revoked"
    LEAK_REPORTED = "apikeys:key:leak_reported"
    REMINDED = "apikeys:key:expiry_reminded"
    REFUSED = "apikeys:request:refused"


class Reason(StrEnum):
    BAD_SIGNATURE = "bad_signature"
    STALE_TIMESTAMP = "stale_timestamp"
    REPLAYED_NONCE = "replayed_nonce"
    UNKNOWN_KEY = "unknown_key"
    REVOKED_KEY = "revoked_key"
    EXPIRED_KEY = "expired_key"
    IP_NOT_ALLOWED = "ip_not_allowed"


_DETAIL: Final[Mapping[Reason, str]] = {
    Reason.BAD_SIGNATURE: "the request's signature does not verify (docs/api-keys.md)",
    Reason.STALE_TIMESTAMP: "TG-TIMESTAMP is outside the receive window; check your clock",
    Reason.REPLAYED_NONCE: "this TG-NONCE was already used; send a new nonce per request",
    Reason.UNKNOWN_KEY: "no such API key",
    Reason.REVOKED_KEY: "this API key was revoked",
    Reason.EXPIRED_KEY: "this API key has expired; create or rotate a key",
    Reason.IP_NOT_ALLOWED: "this address is not on the API key's IP allowlist",
}


class ApiKeyRefused(Unauthorized):
    """401 for a signed request, with a stable `reason` (never which of key or secret was
    wrong beyond it)."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(_DETAIL[reason], reason=reason.value)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class KeyPolicy:
    expiry_ns: int
    overlap_ns: int
    window_ms: int
    max_per_user: int

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyPolicy:
        return cls(
            expiry_ns=settings.apikeys_expiry_days * NS_PER_DAY,
            overlap_ns=settings.apikeys_rotation_overlap_hours * NS_PER_HOUR,
            window_ms=settings.apikeys_signature_window_ms,
            max_per_user=settings.apikeys_max_per_user,
        )


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What a signed request is checked against (cached for a second)."""

    key_id: str
    user_id: str
    role: Role
    user_active: bool
    scope: Scope
    ip_allowlist: tuple[str, ...]
    secret: bytes = field(repr=False)
    created_ns: int
    expires_ns: int
    revoked_ns: int | None
    last_used_ns: int | None


@dataclass(frozen=True, slots=True)
class KeyView:
    """A key as its owner or staff see it: never the secret."""

    key_id: str
    user_id: str
    name: str
    scope: str
    ip_allowlist: list[str]
    created_ns: int
    expires_ns: int
    revoked_ns: int | None
    revoked_reason: str | None
    last_used_ns: int | None
    rotated_to: str | None

    def status(self, now_ns: int) -> str:
        if self.revoked_ns is not None:
            return "revoked"
        return "expired" if self.expires_ns <= now_ns else "active"


def view(row: ApiKey) -> KeyView:
    return KeyView(
        key_id=row.id,
        user_id=row.user_id,
        name=row.name,
        scope=row.scope,
        ip_allowlist=list(json.loads(row.ip_allowlist)),
        created_ns=row.created_ns,
        expires_ns=row.expires_ns,
        revoked_ns=row.revoked_ns,
        revoked_reason=row.revoked_reason,
        last_used_ns=row.last_used_ns,
        rotated_to=row.rotated_to,
    )


@dataclass(frozen=True, slots=True)
class LeakAnswer:
    token_hash: str
    token_type: str
    label: str


class ApiKeyService:
    def __init__(
        self,
        identity: IdentityServices,
        *,
        policy: KeyPolicy,
        nonces: NonceStore,
        sessions: async_sessionmaker[AsyncSession] | None = None,
    ) -> None:
        self.identity = identity
        self.policy = policy
        self.nonces = nonces
        self.sessions = sessions or identity.sessions
        self._cache: dict[str, tuple[int, KeyRecord]] = {}
        self._touched: dict[str, int] = {}

    @property
    def clock(self) -> Clock:
        return self.identity.clock

    # Owner's use cases ------------------------------------------------------------------

    async def _require_fresh_factor(self, session: AsyncSession, principal: Principal) -> None:
        if principal.api_key_id is not None:
            raise Forbidden("API keys are managed from a signed-in session, not with a key")
        user = await self.identity.accounts.user(session, principal.user_id)
        if user is None:
            raise NotFound("no such user")
        await self.identity.factors.require_fresh_factor(session, user=user, state=principal.state)

    @staticmethod
    def _allowlist(scope: Scope, cidrs: list[str]) -> list[str]:
        blocks = normalize(cidrs)
        if scope is Scope.TRADE and not blocks:
            raise InvalidInput("a trade key must carry an IP allowlist (ACCT-3)")
        return blocks

    async def create(
        self,
        session: AsyncSession,
        principal: Principal,
        *,
        name: str,
        scope: Scope,
        ip_allowlist: list[str],
    ) -> tuple[KeyView, str]:
        """A new key and its secret (shown once). Needs a fresh second factor."""
        if principal.role is not Role.TRADER:
            raise Forbidden("API keys are for customer accounts")
        await self._require_fresh_factor(session, principal)
        blocks = self._allowlist(scope, ip_allowlist)
        now = self.clock.now_ns()
        active = await session.scalar(
            select(func.count())
            .select_from(ApiKey)
            .where(
                ApiKey.user_id == principal.user_id,
                ApiKey.revoked_ns.is_(None),
                ApiKey.expires_ns > now,
            )
        )
        if (active or 0) >= self.policy.max_per_user:
            raise Conflict(f"at most {self.policy.max_per_user} active API keys per user")
        row, secret = self._new_row(principal.user_id, name, scope, blocks, now)
        session.add(row)
        await session.flush()
        await self._audit(
            session,
            ApiKeyEvent.CREATED,
            actor=principal.user_id,
            owner=row.user_id,
            data={"key_id": row.id, "scope": scope.value, "allowlist_blocks": len(blocks)},
        )
        return view(row), secret

    def _new_row(
        self, user_id: str, name: str, scope: Scope, blocks: list[str], now: int
    ) -> tuple[ApiKey, str]:
        key_id, secret = new_key_id(), new_secret()
        row = ApiKey(
            id=key_id,
            user_id=user_id,
            name=name,
            scope=scope.value,
            ip_allowlist=json.dumps(blocks),
            secret_enc=keyring_field(self.identity.deps.keyring, secret, record_id=key_id),
            secret_digest=secret_digest(secret),
            created_ns=now,
            expires_ns=now + self.policy.expiry_ns,
        )
        return row, secret

    async def list_keys(self, session: AsyncSession, user_id: str | None = None) -> list[KeyView]:
        query = select(ApiKey).order_by(ApiKey.created_ns, ApiKey.id)
        if user_id is not None:
            query = query.where(ApiKey.user_id == user_id)
        return [view(row) for row in (await session.scalars(query)).all()]

    async def _owned(self, session: AsyncSession, key_id: str, user_id: str | None) -> ApiKey:
        row = await session.get(ApiKey, key_id, with_for_update=True)
        if row is None or (user_id is not None and row.user_id != user_id):
            raise NotFound("no such API key")
        return row

    async def find(self, session: AsyncSession, key_id: str) -> KeyView | None:
        row = await session.get(ApiKey, key_id)
        return view(row) if row is not None else None

    async def rotate(
        self, session: AsyncSession, principal: Principal, key_id: str
    ) -> tuple[KeyView, str]:
        """A new key with the same name, scope and allowlist; the old one keeps working for
        the overlap period, then ends. Needs a fresh second factor."""
        await self._require_fresh_factor(session, principal)
        old = await self._owned(session, key_id, principal.user_id)
        now = self.clock.now_ns()
        if old.revoked_ns is not None or old.expires_ns <= now or old.rotated_to is not None:
            raise Conflict("only an active key that was not rotated yet can be rotated")
        blocks = list(json.loads(old.ip_allowlist))
        row, secret = self._new_row(old.user_id, old.name, Scope(old.scope), blocks, now)
        session.add(row)
        old.expires_ns = min(old.expires_ns, now + self.policy.overlap_ns)
        old.rotated_to = row.id
        await session.flush()
        await self._audit(
            session,
            ApiKeyEvent.ROTATED,
            actor=principal.user_id,
            owner=old.user_id,
            data={"key_id": old.id, "new_key_id": row.id, "old_expires_ns": old.expires_ns},
        )
        self.forget(old.id)
        return view(row), secret

    async def change(
        self,
        session: AsyncSession,
        principal: Principal,
        key_id: str,
        *,
        scope: Scope | None,
        ip_allowlist: list[str] | None,
    ) -> KeyView:
        """Change a key's scope or allowlist. Needs a fresh second factor."""
        await self._require_fresh_factor(session, principal)
        row = await self._owned(session, key_id, principal.user_id)
        if row.revoked_ns is not None:
            raise Conflict("this key was revoked")
        new_scope = scope or Scope(row.scope)
        blocks = self._allowlist(
            new_scope, ip_allowlist if ip_allowlist is not None else json.loads(row.ip_allowlist)
        )
        changed = {
            "key_id": row.id,
            "scope": new_scope.value,
            "previous_scope": row.scope,
            "allowlist_blocks": len(blocks),
        }
        row.scope = new_scope.value
        row.ip_allowlist = json.dumps(blocks)
        await session.flush()
        await self._audit(
            session, ApiKeyEvent.CHANGED, actor=principal.user_id, owner=row.user_id, data=changed
        )
        self.forget(row.id)
        return view(row)

    async def revoke(
        self,
        session: AsyncSession,
        key_id: str,
        *,
        actor: Party,
        reason: str,
        owner_id: str | None = None,
    ) -> KeyView:
        """Revoke at once (the owner's own keys when `owner_id` is given). Idempotent."""
        row = await self._owned(session, key_id, owner_id)
        if row.revoked_ns is None:
            row.revoked_ns = self.clock.now_ns()
            row.revoked_reason = reason[:20]
            await session.flush()
            await self._audit(
                session,
                ApiKeyEvent.REVOKED,
                actor=actor.id,
                actor_party=actor,
                owner=row.user_id,
                data={"key_id": row.id, "reason": row.revoked_reason},
            )
        self.forget(row.id)
        return view(row)

    def forget(self, key_id: str) -> None:
        self._cache.pop(key_id, None)

    # Leak reports -------------------------------------------------------------------------

    async def report_leaks(
        self, session: AsyncSession, reports: list[dict[str, str]]
    ) -> list[LeakAnswer]:
        """Revoke each reported secret that is one of ours and email its owner; every other
        token is a false positive."""
        answers: list[LeakAnswer] = []
        for report in reports:
            token = report["token"]
            digest = secret_digest(token)
            row = None
            if well_formed_secret(token):
                row = await session.scalar(
                    select(ApiKey).where(ApiKey.secret_digest == digest).with_for_update()
                )
            if row is None:
                answers.append(LeakAnswer(digest, report.get("type", ""), "false_positive"))
                continue
            await self._audit(
                session,
                ApiKeyEvent.LEAK_REPORTED,
                actor="secret-scanning",
                actor_party=Party("system", "secret-scanning"),
                owner=row.user_id,
                # The public URL of the leak goes to the owner's email, not the ledger's
                # plaintext: it may name them.
                data={"key_id": row.id, "source": str(report.get("source", ""))[:40]},
            )
            if row.revoked_ns is None:
                await self.revoke(
                    session, row.id, actor=Party("system", "secret-scanning"), reason="leaked"
                )
                user = await self.identity.accounts.user(session, row.user_id)
                if user is not None:
                    await self.identity.deps.notifier.enqueue_email(
                        session,
                        to=user.email,
                        template="apikey_leaked",
                        subject="One of your tradeguard API keys was revoked",
                        body=(
                            f"Your API key {row.id} ({row.name}) was found in public at "
                            f"{str(report.get('url', ''))[:300]} and has been revoked. "
                            "Create a new key, and remove the old secret from where it was "
                            "published."
                        ),
                    )
            answers.append(LeakAnswer(digest, report.get("type", ""), "true_positive"))
        return answers

    # Expiry reminders ---------------------------------------------------------------------

    async def send_reminders(self, session: AsyncSession) -> int:
        """Email the owner of each active key 7 days and 1 day before it expires, once each."""
        now = self.clock.now_ns()
        sent = 0
        for days in REMINDER_DAYS:
            column = ApiKey.reminded_7d_ns if days == 7 else ApiKey.reminded_1d_ns
            rows = (
                await session.scalars(
                    select(ApiKey)
                    .where(
                        ApiKey.revoked_ns.is_(None),
                        ApiKey.rotated_to.is_(None),
                        ApiKey.expires_ns > now,
                        ApiKey.expires_ns <= now + days * NS_PER_DAY,
                        column.is_(None),
                    )
                    .order_by(ApiKey.id)
                    .with_for_update()
                )
            ).all()
            for row in rows:
                if days == 7:
                    row.reminded_7d_ns = now
                else:
                    row.reminded_1d_ns = now
                    row.reminded_7d_ns = row.reminded_7d_ns or now
                user = await self.identity.accounts.user(session, row.user_id)
                if user is not None:
                    await self.identity.deps.notifier.enqueue_email(
                        session,
                        to=user.email,
                        template="apikey_expiring",
                        subject="A tradeguard API key expires soon",
                        body=(
                            f"Your API key {row.id} ({row.name}) expires in "
                            f"{'1 day' if days == 1 else f'{days} days'}. Rotate it to keep "
                            "your programs working."
                        ),
                    )
                await self._audit(
                    session,
                    ApiKeyEvent.REMINDED,
                    actor="apikeys-reminders",
                    actor_party=Party("system", "apikeys-reminders"),
                    owner=row.user_id,
                    data={"key_id": row.id, "days": days},
                )
                sent += 1
        return sent

    # Signed requests ----------------------------------------------------------------------

    async def _record(self, key_id: str) -> KeyRecord | None:
        now = self.clock.monotonic_ns()
        cached = self._cache.get(key_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        async with self.identity.reading() as session:
            row = await session.get(ApiKey, key_id)
            if row is None:
                return None
            user = await self.identity.accounts.user(session, row.user_id)
            secret = row.secret_enc.reveal(  # type: ignore[union-attr]
                self.identity.deps.keyring, record_id=row.id
            )
            record = KeyRecord(
                key_id=row.id,
                user_id=row.user_id,
                role=Role(user.role) if user is not None else Role.TRADER,
                user_active=user is not None and user.status == "active",
                scope=Scope(row.scope),
                ip_allowlist=tuple(json.loads(row.ip_allowlist)),
                secret=secret.encode(),
                created_ns=row.created_ns,
                expires_ns=row.expires_ns,
                revoked_ns=row.revoked_ns,
                last_used_ns=row.last_used_ns,
            )
        if len(self._cache) > 50_000:
            self._cache.clear()
        self._cache[key_id] = (now + CACHE_NS, record)
        return record

    async def _refuse(
        self, reason: Reason, key_id: str | None, record: KeyRecord | None, ip: str | None
    ) -> ApiKeyRefused:
        """Commit the refusal's audit event on its own; the error to raise."""
        data: dict[str, Any] = {"reason": reason.value}
        if key_id is not None:
            data["key_id"] = key_id
        owner = Party("user", record.user_id) if record is not None else None
        async with unit_of_work(self.sessions) as session:
            await self.identity.deps.ledger.append(
                session,
                LedgerEvent(
                    type=ApiKeyEvent.REFUSED,
                    actor=owner or Party("anonymous", "api-client"),
                    subject=owner,
                    data=data,
                    request_id=request_id_var.get(),
                    personal=PersonalData.of(owner, ip=ip) if owner is not None else None,
                ),
            )
        return ApiKeyRefused(reason)

    async def authenticate(self, request: Request) -> Principal:
        """The principal of a signed request, or ApiKeyRefused (audited)."""
        headers = request.headers
        ip = request_info(request).ip
        key_id = headers.get(KEY_HEADER, "")
        stamp = headers.get(TIMESTAMP_HEADER, "")
        nonce = headers.get(NONCE_HEADER, "")
        presented = headers.get(SIGNATURE_HEADER, "")
        if not KEY_ID_PATTERN.fullmatch(key_id):
            raise await self._refuse(Reason.UNKNOWN_KEY, None, None, None)
        if not (NONCE_PATTERN.fullmatch(nonce) and SIGNATURE_PATTERN.fullmatch(presented)):
            raise await self._refuse(Reason.BAD_SIGNATURE, key_id, None, None)
        now_ms = self.clock.now_ns() // NS_PER_MS
        window = self.policy.window_ms
        if not TIMESTAMP_PATTERN.fullmatch(stamp) or abs(int(stamp) - now_ms) > window:
            raise await self._refuse(Reason.STALE_TIMESTAMP, key_id, None, None)
        record = await self._record(key_id)
        if record is None:
            raise await self._refuse(Reason.UNKNOWN_KEY, key_id, None, None)
        body = await request.body()
        canonical = canonical_request(
            method=request.method,
            path=request.url.path,
            query=request.url.query,
            body=body,
            timestamp_ms=stamp,
            nonce=nonce,
            key_id=key_id,
        )
        if not signature_matches(record.secret, canonical, presented):
            raise await self._refuse(Reason.BAD_SIGNATURE, key_id, record, ip)
        now = self.clock.now_ns()
        if record.revoked_ns is not None or not record.user_active:
            raise await self._refuse(Reason.REVOKED_KEY, key_id, record, ip)
        if record.expires_ns <= now:
            raise await self._refuse(Reason.EXPIRED_KEY, key_id, record, ip)
        # A trade key must carry an allowlist (ACCT-3); a read key's is optional.
        unlisted = record.scope is Scope.TRADE and not record.ip_allowlist
        if unlisted or not allowed(record.ip_allowlist, ip):
            raise await self._refuse(Reason.IP_NOT_ALLOWED, key_id, record, ip)
        # Twice the window: a timestamp up to a window ahead stays acceptable that long.
        if not await self.nonces.claim(key_id, nonce, 2 * window + 1000):
            raise await self._refuse(Reason.REPLAYED_NONCE, key_id, record, ip)
        await self._touch(record, now)
        return self.principal(record, now)

    async def _touch(self, record: KeyRecord, now: int) -> None:
        last = max(self._touched.get(record.key_id, 0), record.last_used_ns or 0)
        if now - last < TOUCH_INTERVAL_NS:
            return
        self._touched[record.key_id] = now
        if len(self._touched) > 50_000:
            self._touched.clear()
        async with unit_of_work(self.sessions) as session:
            await session.execute(
                update(ApiKey).where(ApiKey.id == record.key_id).values(last_used_ns=now)
            )

    @staticmethod
    def principal(record: KeyRecord, now: int) -> Principal:
        standing = effective_permission_set(record.role, ("pwd", "mfa"), True)
        state = SessionState(
            session_id=record.key_id,
            user_id=record.user_id,
            role=record.role,
            active=True,
            last_seen_ns=now,
            idle_ns=0,
            mfa_verified_ns=None,
            created_ns=record.created_ns,
            device_authorized=False,
            ip_allowlist=record.ip_allowlist,
        )
        return Principal(
            user_id=record.user_id,
            session_id=record.key_id,
            role=record.role,
            permissions=standing & SCOPE_PERMISSIONS[record.scope],
            amr=API_KEY_AMR,
            state=state,
            api_key_id=record.key_id,
            key_routes=KEY_MARKET_DATA_ROUTES,
        )

    async def _audit(
        self,
        session: AsyncSession,
        event_type: str,
        *,
        actor: str,
        owner: str,
        data: dict[str, Any],
        actor_party: Party | None = None,
    ) -> None:
        await self.identity.deps.ledger.append(
            session,
            LedgerEvent(
                type=event_type,
                actor=actor_party or Party("user", actor),
                subject=Party("user", owner),
                data=data,
                request_id=request_id_var.get(),
            ),
        )
