"""Cost of a permission decision with its ledger event (RBAC-6), against the same request with
the check disabled, in one run. Prints one JSON object.

    python bench/authz.py [--requests N] [--rounds N] [--postgres URL]

The real app runs in process (httpx over ASGI, every middleware) on a scratch SQLite file
(and, with --postgres, a scratch PostgreSQL schema). A trader signs in; two pairs of routes
are added that differ only in the permission check:

- standalone: `guarded(account:view)` (the decision, and its audit event committed in a
  transaction of its own) against the same handler behind authentication only;
- in_transaction: `guarded(account:view, audit_in_transaction=True)`, the order path's form,
  where the route's own transaction (one audited change) carries the check's event too,
  against the same route and transaction without it.

Rounds interleave checked and unchecked batches so machine load shifts both alike; each
figure is the median over rounds of the mean microseconds per request. `decision_only_us` is
the pure part (effective permissions with three live grants, the decision, the event value)
without any I/O.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from fastapi import APIRouter, Request
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info
from tradeguard.access.domain import (
    AccessLevel,
    GrantKind,
    GrantTarget,
    LiveGrant,
    Permission,
    Role,
    effective_with_grants,
)
from tradeguard.config import Settings
from tradeguard.core.clock import SystemClock
from tradeguard.db.engine import create_engine, unit_of_work
from tradeguard.db.migrate import upgrade
from tradeguard.identity.guard import (
    CurrentPrincipal,
    Principal,
    _granted,
    _permission_event,
    audit_committed,
    guarded,
    pending_audit,
)
from tradeguard.identity.password_hashing import Argon2Parameters
from tradeguard.identity.sessions import (
    SessionState,
    effective_permission_set,
    effective_permissions,
)
from tradeguard.ledger.domain import LedgerEvent, Party
from tradeguard.web.app import create_app

PASSWORD = "violet tractor juggles quietly"  # noqa: S105 - a benchmark input, not a secret
CHEAP_ARGON2 = Argon2Parameters(time_cost=1, memory_cost_kib=1024, parallelism=1)


def bench_routes() -> APIRouter:
    router = APIRouter(prefix="/bench")

    @router.get("/standalone/checked", **guarded(Permission.ACCOUNT_VIEW))
    async def standalone_checked(principal: CurrentPrincipal) -> dict[str, str]:
        return {"user": principal.user_id}

    @router.get("/standalone/unchecked")
    async def standalone_unchecked(principal: CurrentPrincipal) -> dict[str, str]:
        return {"user": principal.user_id}

    async def audited_change(request: Request, principal: Any, audit: list[LedgerEvent]) -> None:
        """One audited change in one transaction, standing in for an order placement."""
        identity = request.app.state.identity
        async with unit_of_work(identity.sessions) as session:
            for event in audit:
                await identity.deps.ledger.append(session, event)
            await identity.deps.ledger.append(
                session,
                LedgerEvent(type="bench:change:made", actor=Party("user", principal.user_id)),
            )

    @router.post(
        "/in-transaction/checked",
        **guarded(Permission.ACCOUNT_VIEW, audit_in_transaction=True),
    )
    async def in_transaction_checked(
        request: Request, principal: CurrentPrincipal
    ) -> dict[str, str]:
        await audited_change(request, principal, pending_audit(request))
        audit_committed(request)
        return {"user": principal.user_id}

    @router.post("/in-transaction/unchecked")
    async def in_transaction_unchecked(
        request: Request, principal: CurrentPrincipal
    ) -> dict[str, str]:
        await audited_change(request, principal, [])
        return {"user": principal.user_id}

    return router


async def timed_batch(call: Callable[[], Awaitable[httpx.Response]], requests: int) -> float:
    started = time.perf_counter_ns()
    for _ in range(requests):
        response = await call()
        if response.status_code != 200:
            raise SystemExit(f"unexpected {response.status_code}: {response.text}")
    return (time.perf_counter_ns() - started) / requests / 1000


async def run_app(settings: Settings, engine: Any, *, requests: int, rounds: int) -> dict[str, Any]:
    await upgrade(engine)
    app = create_app(
        settings, clock=SystemClock(), engine=engine, argon2=CHEAP_ARGON2, run_workers=False
    )
    app.include_router(bench_routes())
    async with app.router.lifespan_context(app):
        identity = app.state.identity
        async with identity.unit_of_work() as session:
            await identity.accounts.create_user(
                session,
                username="bench",
                email="bench@example.com",
                password=PASSWORD,
                role=Role.TRADER,
                email_verified=True,
            )
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 1))
        async with httpx.AsyncClient(transport=transport, base_url="https://bench") as client:
            login = await client.post(
                "/api/v1/auth/login", json={"login": "bench", "password": PASSWORD}
            )
            headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
            pairs: dict[str, tuple[Callable[[], Awaitable[httpx.Response]], ...]] = {
                "standalone": (
                    lambda: client.get("/bench/standalone/checked", headers=headers),
                    lambda: client.get("/bench/standalone/unchecked", headers=headers),
                ),
                "in_transaction": (
                    lambda: client.post("/bench/in-transaction/checked", headers=headers),
                    lambda: client.post("/bench/in-transaction/unchecked", headers=headers),
                ),
            }
            result: dict[str, Any] = {}
            for name, (checked, unchecked) in pairs.items():
                await timed_batch(checked, 50)  # warm up
                await timed_batch(unchecked, 50)
                with_check, without = [], []
                for _ in range(rounds):
                    with_check.append(await timed_batch(checked, requests))
                    without.append(await timed_batch(unchecked, requests))
                deltas = [a - b for a, b in zip(with_check, without, strict=True)]
                result[name] = {
                    "checked_us": round(statistics.median(with_check), 1),
                    "unchecked_us": round(statistics.median(without), 1),
                    "check_cost_us": round(statistics.median(deltas), 1),
                    "check_cost_us_min": round(min(deltas), 1),
                    "requests_per_round": requests,
                    "rounds": rounds,
                }
    return result


def decision_only_us(calls: int = 20_000) -> float:
    """The pure decision of one check: permissions from role, level and three live grants,
    the decision, and the audit event value (no database)."""
    grants = tuple(
        LiveGrant(f"g{i}", GrantTarget(permission=p), 2**62, GrantKind.REQUEST, "approver")
        for i, p in enumerate(
            (Permission.ADMIN_CONFIG, Permission.ADMIN_USERS, Permission.ACCESS_APPROVE)
        )
    )
    amr = ["pwd", "hwk", "mfa"]
    claims = frozenset(effective_permissions(Role.ADMIN, amr, False, level=AccessLevel.ADMIN))
    state = SessionState(
        session_id="session",
        user_id="user",
        role=Role.ADMIN,
        active=True,
        last_seen_ns=0,
        idle_ns=900 * 10**9,
        mfa_verified_ns=0,
        created_ns=0,
        device_authorized=False,
        ip_allowlist=(),
        level=AccessLevel.OPERATOR,
        grants=grants,
    )
    started = time.perf_counter_ns()
    for _ in range(calls):
        standing = claims & effective_permission_set(
            state.role, tuple(amr), False, level=state.level
        )
        held, via = effective_with_grants(standing, state.role, state.grants, 1)
        principal = Principal(
            user_id=state.user_id,
            session_id=state.session_id,
            role=state.role,
            permissions=held,
            amr=tuple(amr),
            state=state,
            via_grant=via,
        )
        granted = _granted(principal, "admin:config")
        _permission_event(principal, "admin:config", granted, route="/r", method="GET")
    return round((time.perf_counter_ns() - started) / calls / 1000, 2)


async def sqlite_run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(data_dir=Path(scratch), _env_file=None)  # type: ignore[call-arg]
        engine = create_engine(settings.main_database_url)
        try:
            return await run_app(settings, engine, requests=args.requests, rounds=args.rounds)
        finally:
            await engine.dispose()


async def postgres_run(args: argparse.Namespace) -> dict[str, Any]:
    schema = "bench_" + secrets.token_hex(4)
    admin = create_engine(args.postgres, pool_size=1)
    async with admin.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        with tempfile.TemporaryDirectory() as scratch:
            settings = Settings(data_dir=Path(scratch), _env_file=None)  # type: ignore[call-arg]
            engine = create_engine(args.postgres, pg_schema=schema)
            try:
                return await run_app(settings, engine, requests=args.requests, rounds=args.rounds)
            finally:
                await engine.dispose()
    finally:
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per batch")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved batch pairs")
    parser.add_argument("--postgres", help="also run on PostgreSQL at this URL")
    args = parser.parse_args()
    result = {
        "benchmark": "authz",
        "decision_only_us": decision_only_us(),
        "sqlite": await sqlite_run(args),
        "postgresql": await postgres_run(args) if args.postgres else None,
        "database_notes": "SQLite: synchronous=FULL, one file; PostgreSQL: local server",
        "machine": {**machine_info(), "load_average_1m_at_start": round(os.getloadavg()[0], 2)},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
