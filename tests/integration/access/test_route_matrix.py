"""The route matrix (IAC-2, RBAC-4, RBAC-6): every route of the live app x every role x every
access level, allowed or denied exactly as the catalogue says, proven against the real app.

The rows are generated from the app's route table, so a new route is in the matrix the
moment it exists; a route without a declared permission, or whose permission is not in the
catalogue, fails the test (it has no row the catalogue can fill). Each route is called with
no body and well-formed path parameters: the guard decides before the body or the path is
validated, and the decision is read from the route's own permission-check ledger event
(found by the request id we send), so a route that answers 404 or 422 after an allowed check
still proves the check. The WebSocket stream is driven over raw ASGI.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.support.access import staff
from tests.support.api import Api
from tests.support.trading import Trader, signed_in_trader
from tradeguard.access.domain import (
    CATALOGUE,
    LEVEL_ORDER,
    STAFF_ROLES,
    AccessLevel,
    Permission,
    Role,
    standing_permissions,
)
from tradeguard.identity.guard import AUTHENTICATED, PERMISSION_CHECKED
from tradeguard.ledger.models import AuditEventRow
from tradeguard.web.docs import DOCS_PATHS
from tradeguard.web.route_policy import PUBLIC, route_permissions

DEV_DOCS = frozenset({"/docs/oauth2-redirect", "/openapi.json", "/redoc", *DOCS_PATHS})
SAMPLE_ID = "0190a3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b"
# Well-formed values for path parameters that are not ids.
PATH_VALUES = {"symbol": "ACME"}
WEBSOCKET = "WEBSOCKET"


@dataclass(frozen=True)
class Row:
    method: str
    template: str
    permission: str

    @property
    def path(self) -> str:
        return re.sub(
            r"\{([^}]+)\}", lambda m: PATH_VALUES.get(m.group(1), SAMPLE_ID), self.template
        )


@dataclass
class Principal:
    role: Role
    level: AccessLevel | None
    member: Trader

    @property
    def name(self) -> str:
        return f"{self.role.value}/{self.level.value if self.level else '-'}"


def expected(role: Role, level: AccessLevel | None, permission: str) -> bool:
    """What the catalogue says: the role's permissions of the kinds its level holds."""
    return permission == AUTHENTICATED or permission in standing_permissions(role, level)


def matrix_rows(api: Api) -> tuple[list[Row], list[str]]:
    """Every guarded route with its permission; the problems that leave a route without a row."""
    rows, problems = [], []
    known = {p.value for p in CATALOGUE} | {AUTHENTICATED}
    for route in route_permissions(api.app):
        if route.permission is None:
            if route.path not in DEV_DOCS:
                problems.append(f"{route.path}: declares no permission")
            continue
        if route.permission == PUBLIC:
            continue
        if route.permission not in known:
            problems.append(f"{route.path}: {route.permission} is not in the catalogue")
            continue
        methods = route.methods - {"HEAD", "OPTIONS"} or {WEBSOCKET}
        rows.extend(Row(method, route.path, route.permission) for method in sorted(methods))
    return sorted(rows, key=lambda r: (r.template, r.method)), problems


async def websocket_decision(api: Api, token: str) -> str:
    """Open the stream over raw ASGI with a bearer token: "accepted" (hello) or "closed"."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "websocket.connect"})
    outcome: list[str] = []

    async def receive() -> dict[str, Any]:
        return await inbox.get()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "websocket.send" and not outcome:
            outcome.append("accepted" if json.loads(message["text"])["type"] == "hello" else "?")
            await inbox.put({"type": "websocket.disconnect", "code": 1000})
        elif message["type"] == "websocket.close" and not outcome:
            outcome.append("closed")
            await inbox.put({"type": "websocket.disconnect", "code": 1000})

    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "wss",
        "http_version": "1.1",
        "path": "/api/v1/stream",
        "raw_path": b"/api/v1/stream",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"authorization", f"Bearer {token}".encode())],
        "client": ("203.0.113.7", 40000),
        "server": ("testserver", 443),
        "subprotocols": [],
    }
    await asyncio.wait_for(api.app(scope, receive, send), timeout=20)
    return outcome[0] if outcome else "none"


async def principals(api: Api, client: httpx.AsyncClient) -> list[Principal]:
    """One signed-in principal per role and level (traders have no level)."""
    found = [Principal(Role.TRADER, None, await signed_in_trader(api, client, "trader"))]
    for role in sorted(STAFF_ROLES):
        for level in LEVEL_ORDER:
            name = f"{role.value.lower()}-{level.value.replace('-', '')}"
            found.append(Principal(role, level, await staff(api, client, name, role, level)))
    return found


async def checks_by_request(api: Api) -> dict[str, list[dict[str, Any]]]:
    async with api.services.unit_of_work() as session:
        bodies = (
            await session.execute(
                select(AuditEventRow.body)
                .where(AuditEventRow.event_type == PERMISSION_CHECKED)
                .order_by(AuditEventRow.pk)
            )
        ).scalars()
        events = [json.loads(body) for body in bodies]
    grouped: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        grouped.setdefault(event.get("request_id") or "", []).append(event)
    return grouped


Sent = tuple[Principal, Row, str, int]

_HEX_TO_LETTERS = str.maketrans("0123456789", "ghijklmnop")


async def exercise(
    api: Api, client: httpx.AsyncClient, people: list[Principal], rows: list[Row]
) -> tuple[list[Sent], dict[str, str]]:
    """Call every row as every principal; the request ids sent and the stream's outcomes."""
    sent: list[Sent] = []
    sockets: dict[str, str] = {}
    for who in people:
        for row in rows:
            if row.method == WEBSOCKET:
                sockets[who.name] = await websocket_decision(api, who.member.access)
                continue
            for _attempt in range(2):
                # Letters only: an id with a card-number-like digit run is replaced by the
                # server's own (web/middleware.py), and this test looks its events up by id.
                request_id = "matrix-" + uuid.uuid4().hex.translate(_HEX_TO_LETTERS)
                response = await client.request(
                    row.method, row.path, headers={**who.member.headers, "X-Request-ID": request_id}
                )
                if response.status_code != 401:
                    break
                # An earlier route ended this session (sign-out): sign in again.
                await who.member.sign_in_again()
            sent.append((who, row, request_id, response.status_code))
    return sent, sockets


def mismatches(
    sent: list[Sent], checks: dict[str, list[dict[str, Any]]], sockets: dict[str, str]
) -> list[str]:
    wrong = []
    for who, row, request_id, status in sent:
        want = expected(who.role, who.level, row.permission)
        decided = [
            e["data"]["allowed"]
            for e in checks.get(request_id, [])
            if e["data"]["route"] == row.template and e["data"]["permission"] == row.permission
        ]
        where = f"{who.name} {row.method} {row.template}"
        if decided != [want]:
            wrong.append(f"{where}: audited {decided}, want {want}")
        elif (want and status in {401, 403}) or (not want and status != 403):
            wrong.append(f"{where}: answered {status}, want allowed={want}")
    for name, got in sockets.items():
        who = next(w for w, *_ in sent if w.name == name)
        want = expected(who.role, who.level, Permission.ACCOUNT_VIEW)
        if got != ("accepted" if want else "closed"):
            wrong.append(f"{name} WEBSOCKET /api/v1/stream: {got}, want allowed={want}")
    return wrong


class TestRouteMatrix:
    @pytest.mark.spec("IAC-2", "RBAC-4", "RBAC-6")
    async def test_every_route_allows_exactly_what_the_catalogue_says_for_every_role_and_level(
        self, api: Api
    ) -> None:
        rows, problems = matrix_rows(api)
        assert problems == [], "routes without a matrix row:\n" + "\n".join(problems)
        assert len(rows) >= 60
        assert {r.permission for r in rows} >= {Permission.ACCESS_APPROVE, Permission.ADMIN_USERS}
        async with api.client() as client:
            people = await principals(api, client)
            sent, sockets = await exercise(api, client, people, rows)
        wrong = mismatches(sent, await checks_by_request(api), sockets)
        assert wrong == [], "\n".join(wrong)
        http_rows = [r for r in rows if r.method != WEBSOCKET]
        assert len(sent) == len(people) * len(http_rows)
        assert len(sockets) == len(people) * (len(rows) - len(http_rows))

    async def test_a_route_whose_permission_is_not_in_the_catalogue_has_no_row(
        self, api: Api
    ) -> None:
        from fastapi import APIRouter  # noqa: PLC0415 - a route added for this test only

        from tradeguard.identity.guard import guarded  # noqa: PLC0415

        extra = APIRouter()

        @extra.get("/api/v1/uncatalogued", **guarded("reports:export"))
        async def uncatalogued() -> dict[str, str]:
            return {}

        api.app.include_router(extra)
        _, problems = matrix_rows(api)
        assert problems == ["/api/v1/uncatalogued: reports:export is not in the catalogue"]
