"""Back-office HTTP API under /api/v1/backoffice (staff), and the customer's own access log
at /api/v1/me/access-log. Thin: parse, authorize (the guard), call the service, shape."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from tradeguard.access.domain import Permission, Role
from tradeguard.backoffice import schemas as s
from tradeguard.backoffice.access_log import AccessLogItem
from tradeguard.backoffice.common import Actor
from tradeguard.backoffice.container import BackofficeServices
from tradeguard.backoffice.customers import CustomerHit, CustomerProfile, MaskedValue
from tradeguard.backoffice.users import FactorResetView, UserSummary
from tradeguard.core.clock import ns_to_iso
from tradeguard.core.context import request_id_var
from tradeguard.core.errors import TooManyRequests
from tradeguard.identity.guard import (
    AUTHENTICATED,
    CurrentPrincipal,
    Principal,
    guarded,
    problems,
    request_info,
    state_cache,
)

router = APIRouter(prefix="/api/v1/backoffice", tags=["backoffice"])
me_router = APIRouter(prefix="/api/v1/me", tags=["identity"])

IdPath = Annotated[str, Path(min_length=36, max_length=36, pattern=r"^[0-9a-f-]{36}$")]
Limit = Annotated[int, Query(ge=1, le=100)]
SearchQuery = Annotated[
    str,
    Query(
        min_length=3,
        max_length=254,
        description="A whole email address (exact match), or the first 3 or more characters "
        "of a username (prefix match). Never a prefix of an email.",
    ),
]
Cursor = Annotated[str | None, Query(max_length=80)]


def backoffice(request: Request) -> BackofficeServices:
    services: BackofficeServices = request.app.state.backoffice
    return services


def staff(request: Request, principal: Principal) -> Actor:
    info = request_info(request)
    return Actor.staff(
        user_id=principal.user_id,
        role=principal.role,
        permissions=principal.permissions,
        request_id=request_id_var.get(),
        ip=info.ip,
    )


def _iso(ns: int | None) -> str | None:
    return None if ns is None else ns_to_iso(ns)


def _masked(value: MaskedValue) -> s.MaskedValueOut:
    return s.MaskedValueOut(field=value.field, masked=value.masked)


def _profile_out(profile: CustomerProfile) -> s.CustomerProfileOut:
    return s.CustomerProfileOut(
        id=profile.id,
        username=profile.username,
        email=_masked(profile.email),
        email_verified=profile.email_verified,
        status=profile.status,
        created_at=ns_to_iso(profile.created_ns),
        phones=[
            s.PhoneOut(factor_id=p.factor_id, label=p.label, number=_masked(p.number))
            for p in profile.phones
        ],
        factors=[
            s.FactorOut(
                id=f.id,
                kind=f.kind,
                label=f.label,
                status=f.status,
                created_at=ns_to_iso(f.created_ns),
                last_used_at=_iso(f.last_used_ns),
            )
            for f in profile.factors
        ],
        accounts=[
            s.AccountOut(
                id=a.id,
                number=_masked(a.number),
                type=a.type,
                status=a.status,
                trading_state=a.trading_state,
                created_at=ns_to_iso(a.created_ns),
            )
            for a in profile.accounts
        ],
        devices=[
            s.DeviceOut(
                id=d.id,
                name=d.name,
                authorized=d.authorized,
                created_at=ns_to_iso(d.created_ns),
                last_seen_at=ns_to_iso(d.last_seen_ns),
                last_ip=_masked(d.last_ip),
            )
            for d in profile.devices
        ],
        recent_sign_ins=[
            s.SignInOut(
                session_id=x.session_id,
                at=ns_to_iso(x.at_ns),
                last_seen_at=ns_to_iso(x.last_seen_ns),
                methods=list(x.methods),
                ip=_masked(x.ip),
                user_agent=x.user_agent,
                active=x.active,
                ended_reason=x.ended_reason,
            )
            for x in profile.recent_sign_ins
        ],
    )


def _hit_out(hit: CustomerHit) -> s.CustomerHitOut:
    return s.CustomerHitOut(
        id=hit.id,
        username=hit.username,
        email=_masked(hit.email),
        status=hit.status,
        created_at=ns_to_iso(hit.created_ns),
    )


def _user_out(user: UserSummary) -> s.UserOut:
    return s.UserOut(
        id=user.id,
        username=user.username,
        email=_masked(user.email),
        role=user.role,
        status=user.status,
        created_at=ns_to_iso(user.created_ns),
    )


def _reset_out(view: FactorResetView) -> s.FactorResetOut:
    return s.FactorResetOut(
        id=view.id,
        user_id=view.user_id,
        requested_by=view.requested_by,
        reason=view.reason,
        status=view.status,
        created_at=ns_to_iso(view.created_ns),
        expires_at=ns_to_iso(view.expires_ns),
        decided_by=view.decided_by,
        decided_at=_iso(view.decided_ns),
        decision_note=view.decision_note,
    )


def _log_entry_out(item: AccessLogItem) -> s.AccessLogEntryOut:
    return s.AccessLogEntryOut(
        id=item.id,
        at=ns_to_iso(item.at_ns),
        staff_role=item.staff_role,
        staff_pseudonym=item.staff_pseudonym,
        action=item.action,
        description=item.description,
        field=item.field,
        field_description=item.field_description,
        reason=item.reason,
    )


# Support view ---------------------------------------------------------------------------------


@router.get(
    "/customers",
    operation_id="backoffice.customers.search",
    responses=problems(429),
    **guarded(Permission.CUSTOMER_READ),
)
async def search_customers(
    q: SearchQuery, request: Request, principal: CurrentPrincipal
) -> list[s.CustomerHitOut]:
    """Find customers by exact email address or username prefix (at most 20, masked)."""
    services, actor = backoffice(request), staff(request, principal)
    # The quota's count commits on its own, so a refused search still counts.
    async with services.unit_of_work() as session:
        wait = await services.customers.search_refused(session, actor=actor)
    if wait:
        raise TooManyRequests(
            "too many customer searches; try again later", retry_after_seconds=wait
        )
    async with services.unit_of_work() as session:
        hits = await services.customers.search(session, query=q, actor=actor)
    return [_hit_out(hit) for hit in hits]


@router.get(
    "/customers/{user_id}",
    operation_id="backoffice.customers.get",
    **guarded(Permission.CUSTOMER_READ),
)
async def get_customer(
    user_id: IdPath, request: Request, principal: CurrentPrincipal
) -> s.CustomerProfileOut:
    """A customer's profile with personal data masked (the view is logged for the customer)."""
    services = backoffice(request)
    async with services.unit_of_work() as session:
        profile = await services.customers.profile(
            session, customer_id=user_id, actor=staff(request, principal)
        )
    return _profile_out(profile)


@router.post(
    "/customers/{user_id}/unmask",
    operation_id="backoffice.customers.unmask",
    **guarded(Permission.CUSTOMER_UNMASK),
)
async def unmask_customer_field(
    user_id: IdPath, body: s.UnmaskIn, request: Request, principal: CurrentPrincipal
) -> s.UnmaskedOut:
    """Reveal one masked field for a stated reason (audited, shown to the customer)."""
    services = backoffice(request)
    async with services.unit_of_work() as session:
        field, value = await services.customers.unmask(
            session,
            customer_id=user_id,
            field=body.field,
            reason=body.reason,
            actor=staff(request, principal),
        )
    return s.UnmaskedOut(field=field, value=value)


# Admin user management ------------------------------------------------------------------------


@router.get("/users", operation_id="backoffice.users.list", **guarded(Permission.ADMIN_USERS))
async def list_users(
    request: Request,
    principal: CurrentPrincipal,
    *,
    q: SearchQuery | None = None,
    role: Role | None = None,
    status: Annotated[str | None, Query(pattern=r"^(active|locked)$")] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> s.UserPageOut:
    """List users in username order, or search them by exact email or username prefix."""
    services = backoffice(request)
    async with services.unit_of_work() as session:
        page = await services.users.list_users(
            session,
            query=q,
            role=role,
            status=status,
            cursor=cursor,
            limit=limit,
            actor=staff(request, principal),
        )
    return s.UserPageOut(items=[_user_out(u) for u in page.items], next_cursor=page.next_cursor)


@router.post(
    "/users/{user_id}/lock",
    operation_id="backoffice.users.lock",
    responses=problems(409),
    **guarded(Permission.ADMIN_USERS),
)
async def lock_user(
    user_id: IdPath, body: s.ReasonIn, request: Request, principal: CurrentPrincipal
) -> s.LockOut:
    """Lock an account: no sign-in until unlocked, and every session ends at once."""
    services = backoffice(request)
    async with services.unit_of_work() as session:
        ended = await services.users.lock(
            session, user_id=user_id, reason=body.reason, actor=staff(request, principal)
        )
    state_cache(request).drop(*ended)
    return s.LockOut(user_id=user_id, status="locked", sessions_ended=len(ended))


@router.post(
    "/users/{user_id}/unlock",
    operation_id="backoffice.users.unlock",
    **guarded(Permission.ADMIN_USERS),
)
async def unlock_user(
    user_id: IdPath, body: s.ReasonIn, request: Request, principal: CurrentPrincipal
) -> s.UnlockOut:
    """Unlock an account: lifts a staff lock, a second-factor lock and sign-in throttles."""
    services = backoffice(request)
    async with services.unit_of_work() as session:
        cleared = await services.users.unlock(
            session, user_id=user_id, reason=body.reason, actor=staff(request, principal)
        )
    return s.UnlockOut(user_id=user_id, status="active", cleared=cleared)


@router.put(
    "/users/{user_id}/role",
    operation_id="backoffice.users.role",
    responses=problems(409),
    **guarded(Permission.ADMIN_USERS),
)
async def set_user_role(
    user_id: IdPath, body: s.RoleIn, request: Request, principal: CurrentPrincipal
) -> s.RoleOut:
    """Change a user's role; every session of theirs ends (the next sign-in carries the new
    role)."""
    services = backoffice(request)
    async with services.unit_of_work() as session:
        change = await services.users.set_role(
            session,
            user_id=user_id,
            role=body.role,
            reason=body.reason,
            actor=staff(request, principal),
        )
    state_cache(request).drop(*change.sessions_ended)
    return s.RoleOut(
        user_id=user_id,
        previous_role=change.previous.value,
        role=change.role.value,
        sessions_ended=len(change.sessions_ended),
        needs_security_key=change.needs_security_key,
    )


@router.post(
    "/users/{user_id}/sign-out",
    operation_id="backoffice.users.sign_out",
    **guarded(Permission.ADMIN_USERS),
)
async def sign_out_user(
    user_id: IdPath, body: s.ReasonIn, request: Request, principal: CurrentPrincipal
) -> s.SignOutOut:
    """End every session of a user at once (their access tokens stop working now)."""
    services = backoffice(request)
    async with services.unit_of_work() as session:
        ended = await services.users.sign_out(
            session, user_id=user_id, reason=body.reason, actor=staff(request, principal)
        )
    state_cache(request).drop(*ended)
    return s.SignOutOut(user_id=user_id, sessions_ended=len(ended))


@router.post(
    "/users/{user_id}/factor-resets",
    status_code=201,
    operation_id="backoffice.users.factor_resets.create",
    responses=problems(409),
    **guarded(Permission.ADMIN_USERS),
)
async def request_factor_reset(
    user_id: IdPath, body: s.ReasonIn, request: Request, principal: CurrentPrincipal
) -> s.FactorResetOut:
    """Ask for a reset of a user's second factors; a different admin must approve it."""
    services = backoffice(request)
    async with services.unit_of_work() as session:
        view = await services.users.request_factor_reset(
            session, user_id=user_id, reason=body.reason, actor=staff(request, principal)
        )
    return _reset_out(view)


@router.get(
    "/factor-resets",
    operation_id="backoffice.factor_resets.list",
    **guarded(Permission.ADMIN_USERS),
)
async def list_factor_resets(
    request: Request,
    principal: CurrentPrincipal,
    pending: bool = True,
    limit: Limit = 50,
) -> list[s.FactorResetOut]:
    """Factor-reset requests, newest first (by default only those waiting for approval)."""
    services = backoffice(request)
    async with services.unit_of_work() as session:
        views = await services.users.factor_resets(
            session, pending_only=pending, limit=limit, actor=staff(request, principal)
        )
    return [_reset_out(v) for v in views]


@router.post(
    "/factor-resets/{request_id}/approve",
    operation_id="backoffice.factor_resets.approve",
    responses=problems(409),
    **guarded(Permission.ADMIN_USERS),
)
async def approve_factor_reset(
    request_id: IdPath, body: s.ApproveIn, request: Request, principal: CurrentPrincipal
) -> s.FactorResetOut:
    """Approve another admin's reset request: the factors go, sessions end, the user is told."""
    services = backoffice(request)
    async with services.unit_of_work() as session:
        view, ended = await services.users.approve_factor_reset(
            session, request_id=request_id, note=body.note, actor=staff(request, principal)
        )
    state_cache(request).drop(*ended)
    return _reset_out(view)


@router.post(
    "/factor-resets/{request_id}/refuse",
    operation_id="backoffice.factor_resets.refuse",
    responses=problems(409),
    **guarded(Permission.ADMIN_USERS),
)
async def refuse_factor_reset(
    request_id: IdPath, body: s.ReasonIn, request: Request, principal: CurrentPrincipal
) -> s.FactorResetOut:
    """Refuse (or, as its requester, withdraw) a reset request; nothing changes."""
    services = backoffice(request)
    async with services.unit_of_work() as session:
        view = await services.users.refuse_factor_reset(
            session, request_id=request_id, reason=body.reason, actor=staff(request, principal)
        )
    return _reset_out(view)


# The customer's own log -------------------------------------------------------------------------


@me_router.get(
    "/access-log",
    operation_id="identity.me.access_log",
    **guarded(AUTHENTICATED),
)
async def my_access_log(
    request: Request,
    principal: CurrentPrincipal,
    query: Annotated[s.AccessLogQuery, Query()],
) -> s.AccessLogOut:
    """Who at the firm accessed your data: when, their role and pseudonym, what, and why."""
    services = backoffice(request)
    async with services.unit_of_work() as session:
        page = await services.access_log.page(
            session, customer_id=principal.user_id, cursor=query.cursor, limit=query.limit
        )
    return s.AccessLogOut(
        items=[_log_entry_out(item) for item in page.items], next_cursor=page.next_cursor
    )
