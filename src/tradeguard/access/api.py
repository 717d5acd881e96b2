"""Staff access API under /api/v1/access: the catalogue, just-in-time grants, break-glass and
its reviews, standing levels, and the access review (IAC-1, IAC-2, IAC-4).

Each route declares its permission (checked and audited by the guard); the services check
the actor's authority again from the database (RBAC-5). A change to someone's access drops
their cached session states in this process at once; other processes see it within the
session-state cache's second.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.access import schemas as s
from tradeguard.access.common import Actor, effective_status
from tradeguard.access.container import AccessServices
from tradeguard.access.domain import (
    CATALOGUE,
    LEVEL_CAP_MINUTES,
    LEVEL_DESCRIPTIONS,
    LEVEL_KINDS,
    LEVEL_ORDER,
    ROLE_PERMISSIONS,
    GrantStatus,
    Kind,
    Permission,
)
from tradeguard.access.levels import LevelChange
from tradeguard.access.models import AccessGrant, BreakGlassReview
from tradeguard.core.clock import ns_to_iso
from tradeguard.core.context import request_id_var
from tradeguard.core.errors import InvalidInput
from tradeguard.identity import staff
from tradeguard.identity.guard import CurrentPrincipal, Principal, guarded, problems, state_cache

router = APIRouter(prefix="/api/v1/access", tags=["access"])

IdPath = Annotated[str, Path(min_length=36, max_length=36, pattern=r"^[0-9a-f-]{36}$")]
CSV_MEDIA_TYPE = "text/csv"


def access(request: Request) -> AccessServices:
    services: AccessServices = request.app.state.access
    return services


def actor_of(principal: Principal) -> Actor:
    return Actor(principal.user_id, request_id=request_id_var.get())


def _iso(ns: int | None) -> str | None:
    return None if ns is None else ns_to_iso(ns)


async def _names(session: AsyncSession, user_ids: Iterable[str | None]) -> dict[str, str]:
    names: dict[str, str] = {}
    for user_id in {u for u in user_ids if u}:
        member = await staff.member(session, user_id)
        if member is not None:
            names[user_id] = member.username
    return names


def grant_out(row: AccessGrant, names: dict[str, str], now_ns: int) -> s.GrantOut:
    return s.GrantOut(
        id=row.id,
        user_id=row.user_id,
        username=names.get(row.user_id),
        kind=row.kind,
        permission=row.permission,
        level=row.level,
        reason=row.reason,
        customers=list(row.customers or []),
        minutes=row.duration_seconds // 60,
        status=effective_status(row, now_ns).value,
        requested_at=ns_to_iso(row.requested_ns),
        decide_by=_iso(row.decide_by_ns) if row.kind == "request" else None,
        decided_by=row.decided_by,
        decided_by_username=names.get(row.decided_by or ""),
        decided_at=_iso(row.decided_ns),
        decision_note=row.decision_note,
        starts_at=_iso(row.starts_ns),
        expires_at=_iso(row.expires_ns),
        ended_at=_iso(row.ended_ns),
        ended_by=row.ended_by,
        end_note=row.end_note,
    )


async def _grants_out(
    services: AccessServices, session: AsyncSession, rows: Sequence[AccessGrant]
) -> list[s.GrantOut]:
    names = await _names(session, [u for r in rows for u in (r.user_id, r.decided_by)])
    now = services.deps.clock.now_ns()
    return [grant_out(r, names, now) for r in rows]


def _invalidate(request: Request, user_id: str, version: int) -> None:
    if version:
        state_cache(request).invalidate_user(user_id, version)


# The catalogue -----------------------------------------------------------------------------------


def catalogue_out() -> s.CatalogueOut:
    return s.CatalogueOut(
        permissions=[
            s.CatalogueEntryOut(
                permission=entry.permission.value,
                kind=entry.kind.value,
                description=entry.description,
                max_grant_minutes=entry.max_grant_minutes,
                roles=sorted(
                    r.value for r, held in ROLE_PERMISSIONS.items() if entry.permission in held
                ),
            )
            for entry in CATALOGUE.values()
        ],
        levels=[
            s.LevelOut(
                level=level.value,
                kinds=[k.value for k in Kind if k in LEVEL_KINDS[level]],
                description=LEVEL_DESCRIPTIONS[level],
                max_grant_minutes=LEVEL_CAP_MINUTES[level],
            )
            for level in LEVEL_ORDER
        ],
    )


@router.get("/catalogue", **guarded(Permission.ACCESS_REQUEST))
async def catalogue() -> s.CatalogueOut:
    """Every permission with its kind, description, grant cap and roles; the levels."""
    return catalogue_out()


# Just-in-time grants -----------------------------------------------------------------------------


@router.post(
    "/requests",
    status_code=201,
    responses=problems(409),
    **guarded(Permission.ACCESS_REQUEST),
)
async def request_access(
    body: s.GrantRequestIn, request: Request, principal: CurrentPrincipal
) -> s.GrantOut:
    """Ask for a permission or a level of your role for a while; another admin decides."""
    services = access(request)

    async def work(session: AsyncSession) -> s.GrantOut:
        change = await services.grants.request(
            session,
            actor=actor_of(principal),
            permission=body.permission,
            level=body.level,
            reason=body.reason,
            minutes=body.minutes,
            customers=body.customers,
        )
        return (await _grants_out(services, session, [change.grant]))[0]

    return await services.run(work)


@router.get("/requests/mine", **guarded(Permission.ACCESS_REQUEST))
async def my_requests(request: Request, principal: CurrentPrincipal) -> list[s.GrantOut]:
    """Your requests and grants, newest first."""
    services = access(request)

    async def work(session: AsyncSession) -> list[s.GrantOut]:
        rows = await services.grants.mine(session, actor=actor_of(principal))
        return await _grants_out(services, session, rows)

    return await services.run(work)


@router.get("/requests/pending", **guarded(Permission.ACCESS_APPROVE))
async def pending_requests(request: Request, principal: CurrentPrincipal) -> list[s.GrantOut]:
    """Other staff members' requests waiting for a decision."""
    services = access(request)

    async def work(session: AsyncSession) -> list[s.GrantOut]:
        rows = await services.grants.pending_for(session, actor=actor_of(principal))
        return await _grants_out(services, session, rows)

    return await services.run(work)


@router.get("/requests", **guarded(Permission.ACCESS_REVIEW))
async def all_requests(
    request: Request,
    principal: CurrentPrincipal,
    status: Annotated[GrantStatus | None, Query()] = None,
) -> list[s.GrantOut]:
    """Every request and grant (newest first, at most 500), optionally in one status."""
    services = access(request)

    async def work(session: AsyncSession) -> list[s.GrantOut]:
        rows = await services.grants.all(session, actor=actor_of(principal), status=status)
        return await _grants_out(services, session, rows)

    return await services.run(work)


@router.post(
    "/requests/{grant_id}/approve", responses=problems(409), **guarded(Permission.ACCESS_APPROVE)
)
async def approve_request(
    grant_id: IdPath, body: s.ApproveIn, request: Request, principal: CurrentPrincipal
) -> s.GrantOut:
    """Approve another staff member's pending request (never your own); it runs from now."""
    services = access(request)

    async def work(session: AsyncSession) -> tuple[s.GrantOut, str, int]:
        change = await services.grants.approve(
            session, actor=actor_of(principal), grant_id=grant_id, note=body.note
        )
        out = (await _grants_out(services, session, [change.grant]))[0]
        return out, change.user_id, change.permissions_version

    out, user_id, version = await services.run(work)
    _invalidate(request, user_id, version)
    return out


@router.post(
    "/requests/{grant_id}/refuse", responses=problems(409), **guarded(Permission.ACCESS_APPROVE)
)
async def refuse_request(
    grant_id: IdPath, body: s.ReasonIn, request: Request, principal: CurrentPrincipal
) -> s.GrantOut:
    """Refuse another staff member's pending request, with a reason they are told."""
    services = access(request)

    async def work(session: AsyncSession) -> s.GrantOut:
        change = await services.grants.refuse(
            session, actor=actor_of(principal), grant_id=grant_id, reason=body.reason
        )
        return (await _grants_out(services, session, [change.grant]))[0]

    return await services.run(work)


@router.post(
    "/requests/{grant_id}/withdraw", responses=problems(409), **guarded(Permission.ACCESS_REQUEST)
)
async def withdraw_request(
    grant_id: IdPath, request: Request, principal: CurrentPrincipal
) -> s.GrantOut:
    """Withdraw your pending request, or give up your live grant early."""
    services = access(request)

    async def work(session: AsyncSession) -> tuple[s.GrantOut, str, int]:
        change = await services.grants.withdraw(
            session, actor=actor_of(principal), grant_id=grant_id
        )
        out = (await _grants_out(services, session, [change.grant]))[0]
        return out, change.user_id, change.permissions_version

    out, user_id, version = await services.run(work)
    _invalidate(request, user_id, version)
    return out


@router.post(
    "/requests/{grant_id}/revoke", responses=problems(409), **guarded(Permission.ACCESS_APPROVE)
)
async def revoke_grant(
    grant_id: IdPath, body: s.ReasonIn, request: Request, principal: CurrentPrincipal
) -> s.GrantOut:
    """End someone's live grant (approved or break-glass) now, with a reason."""
    services = access(request)

    async def work(session: AsyncSession) -> tuple[s.GrantOut, str, int]:
        change = await services.grants.revoke(
            session, actor=actor_of(principal), grant_id=grant_id, reason=body.reason
        )
        out = (await _grants_out(services, session, [change.grant]))[0]
        return out, change.user_id, change.permissions_version

    out, user_id, version = await services.run(work)
    _invalidate(request, user_id, version)
    return out


# Break-glass -------------------------------------------------------------------------------------


def review_item_out(
    review: BreakGlassReview, grant: AccessGrant, names: dict[str, str], now_ns: int
) -> s.ReviewItemOut:
    return s.ReviewItemOut(
        id=review.id,
        open=review.closed_ns is None,
        taker_id=review.taker_id,
        taker_username=names.get(review.taker_id),
        opened_at=ns_to_iso(review.opened_ns),
        closed_at=_iso(review.closed_ns),
        closed_by=review.closed_by,
        note=review.note,
        grant=grant_out(grant, names, now_ns),
    )


@router.post(
    "/break-glass",
    status_code=201,
    responses=problems(409),
    **guarded(Permission.ACCESS_BREAKGLASS),
)
async def break_glass(
    body: s.GrantRequestIn, request: Request, principal: CurrentPrincipal
) -> s.BreakGlassOut:
    """Take emergency access to a permission or level of your role, without approval.

    Short (capped by `TRADEGUARD_ACCESS_BREAKGLASS_MAX_MINUTES`); every other admin and every
    compliance user is alerted at once; a review item stays open until someone else closes it.
    """
    services = access(request)
    if body.customers:
        raise InvalidInput("break-glass takes no customer scope; ask for a scoped grant instead")

    async def work(session: AsyncSession) -> tuple[s.BreakGlassOut, str, int]:
        change, review = await services.breakglass.take(
            session,
            actor=actor_of(principal),
            permission=body.permission,
            level=body.level,
            reason=body.reason,
            minutes=body.minutes,
        )
        grant = (await _grants_out(services, session, [change.grant]))[0]
        return (
            s.BreakGlassOut(grant=grant, review_id=review.id),
            change.user_id,
            change.permissions_version,
        )

    out, user_id, version = await services.run(work)
    _invalidate(request, user_id, version)
    return out


@router.get("/break-glass/reviews", **guarded(Permission.ACCESS_REVIEW))
async def break_glass_reviews(
    request: Request,
    principal: CurrentPrincipal,
    state: Annotated[Literal["open", "all"], Query()] = "open",
) -> list[s.ReviewItemOut]:
    """Break-glass review items, newest first (`state=all` includes closed ones)."""
    services = access(request)

    async def work(session: AsyncSession) -> list[s.ReviewItemOut]:
        items = await services.breakglass.reviews(
            session, actor=actor_of(principal), open_only=state == "open"
        )
        names = await _names(
            session, [u for r, g in items for u in (r.taker_id, r.closed_by, g.user_id)]
        )
        now = services.deps.clock.now_ns()
        return [review_item_out(r, g, names, now) for r, g in items]

    return await services.run(work)


@router.post(
    "/break-glass/reviews/{review_id}/close",
    responses=problems(409),
    **guarded(Permission.ACCESS_ATTEST),
)
async def close_break_glass_review(
    review_id: IdPath, body: s.NoteIn, request: Request, principal: CurrentPrincipal
) -> s.ReviewItemOut:
    """Close another admin's break-glass review item with a note."""
    services = access(request)

    async def work(session: AsyncSession) -> s.ReviewItemOut:
        review, grant = await services.breakglass.close(
            session, actor=actor_of(principal), review_id=review_id, note=body.note
        )
        names = await _names(session, [review.taker_id, review.closed_by, grant.user_id])
        return review_item_out(review, grant, names, services.deps.clock.now_ns())

    return await services.run(work)


# Levels and the review ---------------------------------------------------------------------------


@router.put("/staff/{user_id}/level", responses=problems(409), **guarded(Permission.ADMIN_USERS))
async def set_level(
    user_id: IdPath, body: s.LevelIn, request: Request, principal: CurrentPrincipal
) -> s.LevelChangeOut:
    """Set another staff member's standing access level (never your own)."""
    services = access(request)

    async def work(session: AsyncSession) -> LevelChange:
        return await services.levels.set_level(
            session, actor=actor_of(principal), user=user_id, level=body.level, reason=body.reason
        )

    change = await services.run(work)
    _invalidate(request, change.member.user_id, change.permissions_version)
    return s.LevelChangeOut(
        user_id=change.member.user_id,
        username=change.member.username,
        previous=change.previous.value if change.previous else None,
        level=change.level.value,
    )


@router.get(
    "/review",
    responses={
        200: {
            "description": "The access review: JSON, or CSV with `format=csv` or "
            "`Accept: text/csv` (one row per permission held).",
            "content": {CSV_MEDIA_TYPE: {"schema": {"type": "string"}}},
        }
    },
    response_model=s.AccessReviewOut,
    **guarded(Permission.ACCESS_REVIEW),
)
async def access_review(
    request: Request,
    principal: CurrentPrincipal,
    output: Annotated[Literal["json", "csv"] | None, Query(alias="format")] = None,
    unused_days: Annotated[int | None, Query(ge=1, le=3650)] = None,
) -> Response:
    """Every staff member: role, level, live grants and who granted them, each permission's
    last use; permissions unused for `unused_days` (default from settings) are flagged."""
    services = access(request)
    accept = request.headers.get("accept", "")
    wanted = output or ("csv" if CSV_MEDIA_TYPE in accept and "json" not in accept else "json")

    async def work(session: AsyncSession) -> Response:
        report = await services.review.produce(
            session, actor=actor_of(principal), unused_days=unused_days, output=wanted
        )
        if wanted == "csv":
            return Response(
                report.as_csv(),
                media_type=CSV_MEDIA_TYPE,
                headers={"Content-Disposition": 'attachment; filename="access-review.csv"'},
            )
        return Response(
            s.AccessReviewOut.of(report.as_json()).model_dump_json(),
            media_type="application/json",
        )

    return await services.run(work)
