"""Authentication and permission checks for routes (RBAC-4, RBAC-6, SESS-4, SESS-5).

Every protected route declares its permission with `guarded(...)`: the declaration is
visible to the route-table audit (deny by default) and installs the check. Each check,
allowed or denied, is a ledger event; a denial commits its own event before the error.
The access token's signature proves who; the session state (read per request, cached for a
second) proves the session still stands, so a revocation takes effect at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Annotated, Any, Final, Protocol

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from tradeguard.access import repository as access_repository
from tradeguard.access.domain import STAFF_ROLES, Role, effective_with_grants
from tradeguard.core.clock import Clock
from tradeguard.core.context import request_id_var
from tradeguard.core.errors import Forbidden, Unauthorized
from tradeguard.identity.common import RequestInfo
from tradeguard.identity.container import IdentityServices
from tradeguard.identity.events import IdentityEvent
from tradeguard.identity.ip_allowlist import allowed
from tradeguard.identity.sessions import SessionState, effective_permission_set, staff_factor
from tradeguard.ledger.domain import LedgerEvent, Party, PersonalData

PERMISSION_EXTENSION = "x-permission"
AUTHENTICATED = "authenticated"
PERMISSION_CHECKED = "access:permission:checked"
STATE_CACHE_NS = 1_000_000_000
SEND_A_TOKEN: Final = "send an access token: Authorization: Bearer <token>"  # noqa: S105 - advice
# RFC 6750 section 3.1 error codes.
INVALID_REQUEST: Final = "invalid_request"
INVALID_TOKEN: Final = "invalid_token"  # noqa: S105 - an RFC 6750 error code
# Writing last-seen on every request would turn reads into writes; a minute of slack on a
# 15-minute inactivity limit is immaterial.
TOUCH_INTERVAL_NS = 60 * 1_000_000_000
# Request parameters (path or query) that name a customer record. A staff member's check
# records them, and the client address, so that access anomaly detection (IAC-4) can tell
# how many customers one staff member reads and from where; traders' checks (the order
# path) carry neither.
CUSTOMER_PARAMETERS: Final = ("user_id", "customer_id", "account_id")
MAX_PARAMETER_CHARS: Final = 64


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    session_id: str
    role: Role
    permissions: frozenset[str]
    amr: tuple[str, ...]
    state: SessionState
    # Permissions held only through a live grant, each with that grant's id (IAC-1).
    via_grant: Mapping[str, str] = field(default_factory=dict)
    # Set for a signed request made with an API key (apikeys/): its key id, named in every
    # permission check's event, and the routes open to any signed-in user that a key may
    # use too (deny by default: the others are the user's own security settings).
    api_key_id: str | None = None
    key_routes: frozenset[str] = frozenset()


class KeyAuthenticator(Protocol):
    """Checks a signed API-key request (apikeys/service.py, installed on the app's state as
    `api_key_authenticator` by whoever builds the app: identity imports nothing of it)."""

    async def authenticate(self, request: Request) -> Principal: ...


API_KEY_HEADER: Final = "tg-api-key"


class SessionStateCache:
    """Per-process cache of session states; revocations in this process drop entries at once
    (and, through `on_drop`, the verified-token cache's entries of those sessions).

    A change to what a user may do (a grant approved, revoked or taken, a level changed)
    bumps their permissions version; `invalidate_user` makes this process refuse every cached
    state read at an older version, including one a concurrent request reads from before
    the change committed and puts afterwards. Other processes read the new version within
    the cache's second.
    """

    def __init__(
        self, clock: Clock, on_drop: Callable[[tuple[str, ...]], None] | None = None
    ) -> None:
        self._clock = clock
        self._entries: dict[str, tuple[int, SessionState]] = {}
        self._min_version: dict[str, int] = {}
        # Reads under way, shared by every request of the session that misses meanwhile. A
        # drop (a revocation in this process) or a permissions change detaches the reads it
        # may make stale: they are answered to the requests already waiting for them, which
        # came before the change, but never cached, and a request after the change starts a
        # read of its own instead of joining one (`load`).
        self._loading: dict[str, asyncio.Future[SessionState | None]] = {}
        self.on_drop = on_drop

    async def load(
        self, session_id: str, read: Callable[[], Awaitable[SessionState | None]]
    ) -> SessionState | None:
        """The session's state, read once for every request that misses it at the same time.

        When an entry expires, every request of a busy session misses it together (sixteen
        at once under load, each a database read through the writers' turn); here the first
        reads and the others wait for its answer. The read runs as a task of its own, so a
        request that goes away does not cancel it for the others.
        """
        pending = self._loading.get(session_id)
        if pending is None:
            pending = asyncio.ensure_future(read())
            self._loading[session_id] = pending

            def done(future: asyncio.Future[SessionState | None]) -> None:
                if self._loading.get(session_id) is not future:
                    return  # detached by a drop or a permissions change: never cached
                del self._loading[session_id]
                if future.cancelled() or future.exception() is not None:
                    return
                state = future.result()
                if state is not None:
                    self.put(state)

            pending.add_done_callback(done)
        return await asyncio.shield(pending)

    def get(self, session_id: str) -> SessionState | None:
        entry = self._entries.get(session_id)
        if entry is None or entry[0] < self._clock.monotonic_ns():
            return None
        state = entry[1]
        if state.permissions_version < self._min_version.get(state.user_id, 0):
            return None
        return state

    def put(self, state: SessionState) -> None:
        if len(self._entries) > 50_000:
            self._entries.clear()
        if state.permissions_version < self._min_version.get(state.user_id, 0):
            return
        expires = self._clock.monotonic_ns() + STATE_CACHE_NS
        self._entries[state.session_id] = (expires, state)

    def invalidate_user(self, user_id: str, version: int) -> None:
        """Never serve `user_id` a state read before their permissions version `version`."""
        if len(self._min_version) > 50_000:
            # Forgetting floors is safe only together with every entry they guard.
            self._min_version.clear()
            self._entries.clear()
        self._min_version[user_id] = max(version, self._min_version.get(user_id, 0))
        # A read under way may be of this user's session, from before the change (which
        # session it is, is known only once it is read): every one is detached.
        self._loading.clear()

    def drop(self, *session_ids: str) -> None:
        for session_id in session_ids:
            self._entries.pop(session_id, None)
            self._loading.pop(session_id, None)
        if self.on_drop is not None:
            self.on_drop(session_ids)


async def identity_services(request: Request) -> IdentityServices:
    services: IdentityServices = request.app.state.identity
    if not services.key_management.keyring.loaded:
        # The database was down when the server started: try to read the keys now. Failing,
        # the route goes on: one that needs the database or the keys answers 503 as it
        # would anyway, one that needs neither is not held up by the outage.
        with contextlib.suppress(Exception):
            await services.load_keyring()
    return services


def state_cache(request: HTTPConnection) -> SessionStateCache:
    cache: SessionStateCache = request.app.state.session_cache
    return cache


Services = Annotated[IdentityServices, Depends(identity_services)]


def request_info(request: HTTPConnection, **extra: Any) -> RequestInfo:
    client = request.client
    return RequestInfo(
        ip=client.host if client else None,
        user_agent=(request.headers.get("user-agent") or "")[:256] or None,
        request_id=request_id_var.get(),
        **extra,
    )


async def _audit_alone(services: IdentityServices, event: LedgerEvent) -> None:
    """Commit an audit event on its own, for outcomes whose request will fail."""
    async with services.unit_of_work() as session:
        await services.deps.ledger.append(session, event)


def _bearer_token(request: Request) -> str:
    """The access token of `Authorization: Bearer <token>` (RFC 6750 section 2.1)."""
    header = request.headers.get("authorization")
    scheme, _, token = (header or "").partition(" ")
    if header is None or scheme.lower() != "bearer":
        # No credentials, or another scheme: RFC 6750 section 3.1 says the challenge then
        # carries no error code, only the scheme and realm.
        raise Unauthorized(SEND_A_TOKEN)
    token = token.strip(" ")
    if not token or " " in token:
        raise Unauthorized(
            "the Authorization header must be: Bearer <token>", bearer_error=INVALID_REQUEST
        )
    return token


async def authenticated(request: Request, services: Services) -> Principal:
    if API_KEY_HEADER in request.headers:
        keys: KeyAuthenticator | None = getattr(request.app.state, "api_key_authenticator", None)
        if keys is None or "authorization" in request.headers:
            raise Unauthorized(
                "send either a signed API key request or an access token, not both",
                bearer_error=INVALID_REQUEST,
            )
        return await keys.authenticate(request)
    return await authenticate_token(request, services, _bearer_token(request))


async def authenticate_token(
    request: HTTPConnection, services: IdentityServices, token: str
) -> Principal:
    """The principal behind an access token, if its session still stands (HTTP and WSS)."""
    claims = services.verifier.verify(token)
    cache = state_cache(request)
    state = cache.get(claims.session_id)
    if state is None:

        async def read() -> SessionState | None:
            # A read-only transaction: on SQLite it waits for no writer's turn.
            async with services.reading() as session:
                return await services.auth.session_state(session, claims.session_id)

        state = await cache.load(claims.session_id, read)
    if state is None or not state.active or state.user_id != claims.subject:
        raise Unauthorized("the session has ended; sign in again", bearer_error=INVALID_TOKEN)
    info = request_info(request)
    now = services.clock.now_ns()
    if now - state.last_seen_ns > state.idle_ns:
        async with services.unit_of_work() as session:
            await services.auth.revoke(
                session,
                user_id=state.user_id,
                session_id=state.session_id,
                request=info,
                reason="inactivity",
            )
        cache.drop(state.session_id)
        raise Unauthorized("signed out after inactivity; sign in again", bearer_error=INVALID_TOKEN)
    if not allowed(state.ip_allowlist, info.ip):
        await _audit_alone(
            services,
            LedgerEvent(
                type=IdentityEvent.IP_REFUSED,
                actor=Party("user", state.user_id),
                subject=Party("user", state.user_id),
                request_id=info.request_id,
                personal=PersonalData.of(Party("user", state.user_id), ip=info.ip),
            ),
        )
        raise Forbidden("this address is not on your IP allowlist")
    if now - state.last_seen_ns > TOUCH_INTERVAL_NS:
        async with services.unit_of_work() as session:
            await services.auth.touch(session, state.session_id)
        cache.drop(state.session_id)
    # The token's claims, narrowed to what the session may use now: a demotion, a lowered
    # level, a removed factor or a revoked device takes effect at once, not when the token
    # expires.
    standing = frozenset(claims.permissions) & effective_permission_set(
        state.role, claims.amr, state.device_authorized, level=state.level
    )
    via_grant: Mapping[str, str] = {}
    if state.grants and state.role in STAFF_ROLES and staff_factor(claims.amr):
        # Grants are not in the token: they take effect and end with the session state
        # (IAC-1), and each is checked against this request's clock.
        standing, via_grant = effective_with_grants(standing, state.role, state.grants, now)
    return Principal(
        user_id=state.user_id,
        session_id=state.session_id,
        role=state.role,
        permissions=standing,
        amr=claims.amr,
        state=state,
        via_grant=via_grant,
    )


CurrentPrincipal = Annotated[Principal, Depends(authenticated)]


def _permission_event(
    principal: Principal,
    permission: str,
    granted: bool,
    *,
    route: str,
    method: str,
    context: dict[str, Any] | None = None,
) -> LedgerEvent:
    data: dict[str, Any] = {
        "permission": permission,
        "allowed": granted,
        "route": route,
        "method": method,
    }
    personal = None
    if context:
        fields = dict(context)
        # The client address is the staff member's personal data: sealed under their key.
        personal = PersonalData.of(Party("user", principal.user_id), ip=fields.pop("ip", None))
        data.update(fields)
    if principal.api_key_id is not None:
        data["api_key_id"] = principal.api_key_id
    grant_id = principal.via_grant.get(permission) if granted else None
    if grant_id is not None:
        data["grant_id"] = grant_id  # allowed only through this time-limited grant
        scope = _grant_scope(principal, grant_id)
        if scope:
            # The customers the grant is for, so the anomaly rules (IAC-4) judge a use
            # from this event alone.
            data["grant_scope"] = scope
    return LedgerEvent(
        type=PERMISSION_CHECKED,
        actor=Party("user", principal.user_id),
        subject=Party("session", principal.session_id),
        data=data,
        request_id=request_id_var.get(),
        personal=personal,
    )


def _grant_scope(principal: Principal, grant_id: str) -> list[str]:
    """The customer scope of the live grant `grant_id` (sorted; empty: not limited)."""
    for grant in principal.state.grants:
        if grant.grant_id == grant_id:
            return sorted(grant.customers)
    return []


def _bounded(value: object) -> str:
    # Valid UTF-8 only (a lone surrogate would make the event unserializable), bounded.
    return str(value)[:MAX_PARAMETER_CHARS].encode("utf-8", "replace").decode("utf-8")


def staff_context(request: HTTPConnection, principal: Principal) -> dict[str, Any] | None:
    """For a staff principal: the client address and the customer-naming parameters of the
    request (path first, then query), for the permission check's audit event."""
    if principal.role not in STAFF_ROLES:
        return None
    context: dict[str, Any] = {"ip": request.client.host if request.client else None}
    params: dict[str, str] = {}
    for name in CUSTOMER_PARAMETERS:
        value = request.path_params.get(name, request.query_params.get(name))
        if value is not None:
            params[name] = _bounded(value)
    if params:
        context["params"] = params
    return context


def _use_to_record(
    services: IdentityServices, principal: Principal, permission: str, granted: bool
) -> bool:
    """Whether this allowed staff check should also record the permission's last use."""
    return (
        granted
        and permission != AUTHENTICATED
        and principal.role in STAFF_ROLES
        and services.permission_use.due(principal.user_id, permission, services.clock.now_ns())
    )


async def _audit_check(
    services: IdentityServices,
    principal: Principal,
    event: LedgerEvent,
    *,
    permission: str,
    granted: bool,
) -> None:
    """Commit a check's audit event on its own, with the staff member's last use (IAC-4)."""
    record_use = _use_to_record(services, principal, permission, granted)
    try:
        async with services.unit_of_work() as session:
            await services.deps.ledger.append(session, event)
            if record_use:
                await access_repository.record_use(
                    session, principal.user_id, permission, services.clock.now_ns()
                )
    except BaseException:
        if record_use:
            services.permission_use.forget(principal.user_id, permission)
        raise


def _granted(principal: Principal, permission: str, route: str) -> bool:
    if permission == AUTHENTICATED:
        # An API key reaches only the signed-in routes it is made for (market data).
        return principal.api_key_id is None or route in principal.key_routes
    return permission in principal.permissions


async def check_permission(
    services: IdentityServices,
    principal: Principal,
    permission: str,
    *,
    route: str,
    method: str,
    context: dict[str, Any] | None = None,
) -> None:
    """Decide and audit one permission check (RBAC-6); raise Forbidden when denied."""
    granted = _granted(principal, permission, route)
    event = _permission_event(
        principal, permission, granted, route=route, method=method, context=context
    )
    await _audit_check(services, principal, event, permission=permission, granted=granted)
    if not granted:
        raise Forbidden(f"this action needs the {permission} permission")


@dataclass(slots=True)
class PendingAudit:
    """An allowed check whose audit event rides in the route's own transaction."""

    event: LedgerEvent
    written: bool = False


PENDING_AUDIT = "pending_audit"


def pending_audit(request: Request) -> list[LedgerEvent]:
    """Events the route must append in its transaction (then call `audit_committed`)."""
    pending: PendingAudit | None = getattr(request.state, PENDING_AUDIT, None)
    return [pending.event] if pending is not None and not pending.written else []


def audit_committed(request: Request) -> None:
    pending: PendingAudit | None = getattr(request.state, PENDING_AUDIT, None)
    if pending is not None:
        pending.written = True


def _route_of(request: Request) -> str:
    return str(getattr(request.scope.get("route"), "path", request.url.path))


def _permission_check(permission: str) -> Any:
    async def check(request: Request, services: Services, principal: CurrentPrincipal) -> None:
        await check_permission(
            services,
            principal,
            permission,
            route=_route_of(request),
            method=request.method,
            context=staff_context(request, principal),
        )

    # Lets the route-table audit prove the check is installed, not just declared.
    check.enforced_permission = permission  # type: ignore[attr-defined]
    return check


def _permission_check_in_transaction(permission: str) -> Any:
    async def check(
        request: Request, services: Services, principal: CurrentPrincipal
    ) -> AsyncIterator[None]:
        route = _route_of(request)
        granted = _granted(principal, permission, route)
        event = _permission_event(
            principal,
            permission,
            granted,
            route=route,
            method=request.method,
            context=staff_context(request, principal),
        )
        if not granted:
            await _audit_alone(services, event)
            raise Forbidden(f"this action needs the {permission} permission")
        if _use_to_record(services, principal, permission, granted):
            # Staff hold no permission of the order path today; should one ever use such a
            # route, its last use is recorded on its own (rare, at most hourly).
            async with services.unit_of_work() as session:
                await access_repository.record_use(
                    session, principal.user_id, permission, services.clock.now_ns()
                )
        pending = PendingAudit(event)
        setattr(request.state, PENDING_AUDIT, pending)
        try:
            yield
        finally:
            # The route did not commit it (it failed before, or never took it): record the
            # check on its own, so every check is in the ledger whatever the outcome.
            if not pending.written:
                await _audit_alone(services, event)

    check.enforced_permission = permission  # type: ignore[attr-defined]
    return check


def guarded(permission: str, *, audit_in_transaction: bool = False) -> dict[str, Any]:
    """Route keyword arguments: declare the permission and enforce it.

    With `audit_in_transaction` an allowed check's audit event is handed to the route
    (`pending_audit`) to append in its own transaction, saving a commit on hot paths such as
    order placement; if the route does not commit it, it is written on its own after the
    route ran. A denied check is always committed on its own at once.
    """
    if audit_in_transaction:
        dependency = Depends(_permission_check_in_transaction(permission), scope="function")
    else:
        dependency = Depends(_permission_check(permission))
    return {
        "dependencies": [dependency],
        "openapi_extra": {PERMISSION_EXTENSION: permission},
    }


WEBSOCKET_PERMISSION_ATTRIBUTE = "declared_permission"


def guarded_websocket(permission: str) -> Callable[[Any], Any]:
    """Declare a WebSocket endpoint's permission where the route-table audit reads it (a
    WebSocket route has no OpenAPI entry); the endpoint itself must enforce it on connect
    with `check_permission`."""

    def declare(endpoint: Any) -> Any:
        setattr(endpoint, WEBSOCKET_PERMISSION_ATTRIBUTE, permission)
        return endpoint

    return declare


def public_route() -> dict[str, Any]:
    return {"openapi_extra": {PERMISSION_EXTENSION: "public"}}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Route `responses` for error statuses particular to a route (409, 429, ...).

    The web layer documents each as problem+json, and adds by itself what every route of a
    kind answers: 401/403 when guarded, 404 with path parameters, 422 and the body errors.
    """
    return {status: {"description": HTTPStatus(status).phrase} for status in statuses}
