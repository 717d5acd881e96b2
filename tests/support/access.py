"""Arranging staff-access tests: staff signed in at a level, grants, and what changed."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import func, select

from tests.support.api import Api
from tests.support.trading import Trader, signed_in_staff
from tradeguard.access.common import Actor
from tradeguard.access.container import AccessServices
from tradeguard.access.domain import AccessLevel, Role
from tradeguard.access.models import AccessGrant, BreakGlassReview
from tradeguard.notify.models import OutboxMessage

ACCESS = "/api/v1/access"
OPERATOR = Actor(None, operator="test-setup")


def access_of(api: Api) -> AccessServices:
    services: AccessServices = api.app.state.access
    return services


async def staff(
    api: Api,
    client: httpx.AsyncClient,
    username: str,
    role: Role = Role.ADMIN,
    level: AccessLevel = AccessLevel.ADMIN,
) -> Trader:
    """A staff member signed in with a passkey, at `level` (new staff start at admin)."""
    member = await signed_in_staff(api, client, username, role)
    if level is not AccessLevel.ADMIN:
        await set_level(api, member.user_id, level)
    return member


async def set_level(api: Api, user_id: str, level: AccessLevel) -> None:
    services = access_of(api)
    change = await services.run(
        lambda session: services.levels.set_level(
            session, actor=OPERATOR, user=user_id, level=level.value, reason="test setup"
        )
    )
    api.app.state.session_cache.invalidate_user(user_id, change.permissions_version)


async def ask(
    member: Trader, what: str, *, minutes: int | None = 30, reason: str = "incident 42"
) -> dict[str, Any]:
    """A request for a permission (with a colon) or a level; asserts it was recorded."""
    body: dict[str, Any] = {"reason": reason, "minutes": minutes}
    body["permission" if ":" in what else "level"] = what
    response = await member.post(f"{ACCESS}/requests", body)
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def decide(member: Trader, grant_id: str, verb: str, **body: Any) -> httpx.Response:
    return await member.post(f"{ACCESS}/requests/{grant_id}/{verb}", body)


async def snapshot(api: Api) -> tuple[object, ...]:
    """Every grant and review row, and how many messages are queued: what bad input must
    leave as it was."""
    async with api.services.unit_of_work() as session:
        grants = (
            (await session.execute(select(AccessGrant).order_by(AccessGrant.id))).scalars().all()
        )
        reviews = (
            (await session.execute(select(BreakGlassReview).order_by(BreakGlassReview.id)))
            .scalars()
            .all()
        )
        messages = (
            await session.execute(select(func.count()).select_from(OutboxMessage))
        ).scalar_one()
    return (
        tuple((g.id, g.status, g.decided_by, g.expires_ns, g.ended_ns) for g in grants),
        tuple((r.id, r.closed_ns, r.note) for r in reviews),
        messages,
    )


async def mails(api: Api, member: Trader, template: str) -> list[dict[str, str]]:
    return [
        m
        for m in await api.outbox(to=f"{member.username}@example.com")
        if m["template"] == template
    ]
