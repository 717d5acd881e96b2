"""API keys over HTTP: the owner's keys under /api/v1/apikeys, staff listing and revocation
under /api/v1/admin/apikeys, and the secret-scanning partners' leak report. Thin: parse,
authorize (the guard), call the service, shape. Another user's key ids answer 404."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from pydantic import TypeAdapter, ValidationError

from tradeguard.access.domain import Permission
from tradeguard.apikeys import schemas as s
from tradeguard.apikeys.container import ApiKeyServices
from tradeguard.apikeys.leaks import SIGNATURE_HEADER, verify_report
from tradeguard.apikeys.service import KeyView, Scope
from tradeguard.core.clock import ns_to_iso
from tradeguard.core.errors import InvalidInput
from tradeguard.db.engine import unit_of_work
from tradeguard.identity.guard import (
    AUTHENTICATED,
    CurrentPrincipal,
    guarded,
    problems,
    public_route,
)
from tradeguard.ledger.domain import Party

router = APIRouter(prefix="/api/v1/apikeys", tags=["api keys"])
staff_router = APIRouter(prefix="/api/v1/admin/apikeys", tags=["api keys (staff)"])

KeyIdPath = Annotated[str, Path(min_length=31, max_length=31, pattern=r"^tgk_id_[0-9a-f]{24}$")]
MAX_LEAK_REPORTS = 1000
_REPORTS = TypeAdapter(list[s.LeakIn])


def apikeys(request: Request) -> ApiKeyServices:
    services: ApiKeyServices = request.app.state.apikeys
    return services


def key_out(key: KeyView, now_ns: int) -> s.KeyOut:
    return s.KeyOut(
        id=key.key_id,
        user_id=key.user_id,
        name=key.name,
        scope=key.scope,
        ip_allowlist=key.ip_allowlist,
        status=key.status(now_ns),
        created_at=ns_to_iso(key.created_ns),
        expires_at=ns_to_iso(key.expires_ns),
        last_used_at=ns_to_iso(key.last_used_ns) if key.last_used_ns is not None else None,
        revoked_at=ns_to_iso(key.revoked_ns) if key.revoked_ns is not None else None,
        revoked_reason=key.revoked_reason,
        rotated_to=key.rotated_to,
    )


@router.post("", status_code=201, responses=problems(409), **guarded(AUTHENTICATED))
async def create_key(
    body: s.CreateKeyIn, request: Request, principal: CurrentPrincipal
) -> s.NewKeyOut:
    """Create an API key (needs a fresh second factor). The secret is in this response only.
    A `trade` key must carry an IP allowlist."""
    services = apikeys(request).keys
    async with unit_of_work(services.sessions) as session:
        key, secret = await services.create(
            session,
            principal,
            name=body.name,
            scope=Scope(body.scope),
            ip_allowlist=body.ip_allowlist,
        )
    return s.NewKeyOut(key=key_out(key, services.clock.now_ns()), secret=secret)


@router.get("", **guarded(AUTHENTICATED))
async def list_keys(request: Request, principal: CurrentPrincipal) -> list[s.KeyOut]:
    """Your API keys, with when each was last used and when it expires (never a secret)."""
    services = apikeys(request).keys
    async with services.identity.reading() as session:
        keys = await services.list_keys(session, principal.user_id)
    now = services.clock.now_ns()
    return [key_out(k, now) for k in keys]


@router.post("/{key_id}/rotate", status_code=201, responses=problems(409), **guarded(AUTHENTICATED))
async def rotate_key(
    key_id: KeyIdPath, request: Request, principal: CurrentPrincipal
) -> s.NewKeyOut:
    """Replace a key (needs a fresh second factor): a new key with the same scope and
    allowlist; the old one keeps working for the overlap period."""
    services = apikeys(request).keys
    async with unit_of_work(services.sessions) as session:
        key, secret = await services.rotate(session, principal, key_id)
    return s.NewKeyOut(key=key_out(key, services.clock.now_ns()), secret=secret)


@router.patch("/{key_id}", responses=problems(409), **guarded(AUTHENTICATED))
async def change_key(
    key_id: KeyIdPath, body: s.ChangeKeyIn, request: Request, principal: CurrentPrincipal
) -> s.KeyOut:
    """Change a key's scope or IP allowlist (needs a fresh second factor)."""
    services = apikeys(request).keys
    async with unit_of_work(services.sessions) as session:
        key = await services.change(
            session,
            principal,
            key_id,
            scope=Scope(body.scope) if body.scope else None,
            ip_allowlist=body.ip_allowlist,
        )
    return key_out(key, services.clock.now_ns())


@router.delete("/{key_id}", **guarded(AUTHENTICATED))
async def revoke_key(key_id: KeyIdPath, request: Request, principal: CurrentPrincipal) -> s.KeyOut:
    """Revoke one of your keys at once."""
    services = apikeys(request).keys
    async with unit_of_work(services.sessions) as session:
        key = await services.revoke(
            session,
            key_id,
            actor=Party("user", principal.user_id),
            reason="owner",
            owner_id=principal.user_id,
        )
    return key_out(key, services.clock.now_ns())


@router.post("/leaked", responses=problems(401), **public_route())
async def report_leaks(request: Request) -> list[s.LeakOut]:
    """Secret-scanning partners (GitHub) report leaked tokens here, signed with their key
    (docs/api-keys.md). Each of our secrets is revoked and its owner emailed; every other
    token is answered `false_positive`."""
    services = apikeys(request)
    raw = await request.body()
    verify_report(services.leak_key, raw, request.headers.get(SIGNATURE_HEADER, ""))
    try:
        reports = _REPORTS.validate_python(json.loads(raw))
    except (ValueError, ValidationError):
        raise InvalidInput("the body must be a JSON list of {token, type, url, source}") from None
    if len(reports) > MAX_LEAK_REPORTS:
        raise InvalidInput(f"at most {MAX_LEAK_REPORTS} tokens per report")
    async with unit_of_work(services.keys.sessions) as session:
        answers = await services.keys.report_leaks(session, [r.model_dump() for r in reports])
    return [
        s.LeakOut(token_hash=a.token_hash, token_type=a.token_type, label=a.label) for a in answers
    ]


@staff_router.get("", **guarded(Permission.ADMIN_USERS))
async def staff_list_keys(
    request: Request,
    user_id: Annotated[str | None, Query(min_length=36, max_length=36)] = None,
) -> list[s.KeyOut]:
    """Every API key (or one user's), never a secret."""
    services = apikeys(request).keys
    async with services.identity.reading() as session:
        keys = await services.list_keys(session, user_id)
    now = services.clock.now_ns()
    return [key_out(k, now) for k in keys]


@staff_router.delete("/{key_id}", **guarded(Permission.ADMIN_USERS))
async def staff_revoke_key(
    key_id: KeyIdPath, request: Request, principal: CurrentPrincipal
) -> s.KeyOut:
    """Revoke any API key at once (a compromise, a closed account)."""
    services = apikeys(request).keys
    async with unit_of_work(services.sessions) as session:
        key = await services.revoke(
            session, key_id, actor=Party("user", principal.user_id), reason="staff"
        )
    return key_out(key, services.clock.now_ns())
