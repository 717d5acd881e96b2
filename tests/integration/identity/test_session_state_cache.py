"""The session-state cache on the request path (identity/guard.py): when an entry expires, the
requests of a session that miss it together read the database once, outside the writers'
turn, and a read under way when the session is dropped (revoked) is never cached."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest
from fastapi import APIRouter
from sqlalchemy import event

from tests.support.api import Api, bearer, login, register_verified
from tradeguard.access.domain import Role
from tradeguard.core.clock import FrozenClock
from tradeguard.db.engine import write_gate
from tradeguard.identity.guard import CurrentPrincipal, SessionStateCache, public_route
from tradeguard.identity.sessions import SessionState


async def _signed_in(api: Api, username: str) -> tuple[dict[str, str], str]:
    async with api.client() as client:
        await register_verified(api, client, username)
        token = str((await login(client, username))["access_token"])
    return bearer(token), api.services.verifier.verify(token).session_id


class TestMissesReadOnce:
    async def test_requests_that_miss_together_read_the_session_once(self, api: Api) -> None:
        headers, session_id = await _signed_in(api, "mia")
        reads: list[str] = []

        def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            if "WHERE auth_sessions.id = " in statement:  # the state's read, by session id
                reads.append(statement)

        api.app.state.session_cache.drop(session_id)  # the entry expired
        event.listen(api.engine.sync_engine, "before_cursor_execute", note)
        try:
            async with api.client() as client:
                answers = await asyncio.gather(
                    *(client.get("/api/v1/auth/sessions", headers=headers) for _ in range(12))
                )
        finally:
            event.remove(api.engine.sync_engine, "before_cursor_execute", note)
        assert [a.status_code for a in answers] == [200] * 12
        assert len(reads) == 1

    async def test_a_miss_is_read_while_a_writer_holds_the_sqlite_turn(self, api: Api) -> None:
        if api.engine.dialect.name != "sqlite":
            pytest.skip("SQLite's writer turn: PostgreSQL readers never wait for writers")
        headers, session_id = await _signed_in(api, "noa")
        router = APIRouter()

        @router.get("/test/principal", **public_route())
        async def principal_only(principal: CurrentPrincipal) -> dict[str, str]:
            return {"user": principal.user_id}  # authentication alone: it writes nothing

        api.app.include_router(router)
        api.app.state.session_cache.drop(session_id)
        held, release = asyncio.Event(), asyncio.Event()

        async def writer() -> None:
            async with write_gate(api.engine):  # a long write transaction of this process
                held.set()
                await release.wait()

        holder = asyncio.create_task(writer())
        await held.wait()
        try:
            async with api.client() as client:
                answer = await asyncio.wait_for(client.get("/test/principal", headers=headers), 20)
        finally:
            release.set()
            await holder
        assert answer.status_code == 200


def _state(session_id: str) -> SessionState:
    return SessionState(
        session_id=session_id,
        user_id="u1",
        role=Role.TRADER,
        active=True,
        last_seen_ns=0,
        idle_ns=1,
        mfa_verified_ns=None,
        created_ns=0,
        device_authorized=False,
        ip_allowlist=(),
        level=None,
    )


class TestARevocationDuringARead:
    async def test_the_read_is_answered_to_its_waiters_but_never_cached(self) -> None:
        cache = SessionStateCache(FrozenClock())
        started, finish = asyncio.Event(), asyncio.Event()

        async def read() -> SessionState | None:
            started.set()
            await finish.wait()
            return _state("s1")  # read before the revocation committed

        waiting = asyncio.create_task(cache.load("s1", read))
        await started.wait()
        cache.drop("s1")  # revoked in this process meanwhile
        finish.set()
        assert (await waiting) is not None
        assert cache.get("s1") is None  # the next request reads again

    async def test_a_request_after_the_revocation_reads_again_instead_of_joining(self) -> None:
        cache = SessionStateCache(FrozenClock())
        started, finish = asyncio.Event(), asyncio.Event()
        revoked = False

        async def read() -> SessionState | None:
            if revoked:  # the database as a read begun after the revocation finds it
                return None
            started.set()
            await finish.wait()
            return _state("s3")  # read before the revocation committed

        before = asyncio.create_task(cache.load("s3", read))
        await started.wait()
        revoked = True
        cache.drop("s3")  # the revocation committed in this process
        after = asyncio.create_task(cache.load("s3", read))
        await asyncio.sleep(0)
        finish.set()
        assert (await before) is not None  # it came before the revocation
        assert (await after) is None  # it came after: never the state read before
        assert cache.get("s3") is None

    async def test_a_permissions_change_detaches_the_reads_under_way(self) -> None:
        cache = SessionStateCache(FrozenClock())
        started, finish = asyncio.Event(), asyncio.Event()
        reads = 0

        async def read() -> SessionState | None:
            nonlocal reads
            reads += 1
            if reads == 1:
                started.set()
                await finish.wait()
                return _state("s4")  # permissions version 0: read before the change
            return replace(_state("s4"), permissions_version=1)

        before = asyncio.create_task(cache.load("s4", read))
        await started.wait()
        cache.invalidate_user("u1", 1)  # a grant revoked: version 1
        after = await cache.load("s4", read)
        finish.set()
        await before
        assert reads == 2
        assert after is not None
        assert after.permissions_version == 1
        cached = cache.get("s4")
        assert cached is not None
        assert cached.permissions_version == 1

    async def test_a_failed_read_is_not_cached_and_the_next_miss_reads_again(self) -> None:
        cache = SessionStateCache(FrozenClock())
        reads = 0

        async def read() -> SessionState | None:
            nonlocal reads
            reads += 1
            if reads == 1:
                raise ConnectionError("database down")
            return _state("s5")

        with pytest.raises(ConnectionError):
            await cache.load("s5", read)
        assert cache.get("s5") is None
        assert await cache.load("s5", read) is not None
        assert reads == 2

    async def test_a_caller_that_goes_away_leaves_the_read_to_the_others(self) -> None:
        cache = SessionStateCache(FrozenClock())
        finish = asyncio.Event()
        reads = 0

        async def read() -> SessionState | None:
            nonlocal reads
            reads += 1
            await finish.wait()
            return _state("s2")

        first = asyncio.create_task(cache.load("s2", read))
        second = asyncio.create_task(cache.load("s2", read))
        await asyncio.sleep(0)
        first.cancel()
        finish.set()
        assert (await second) is not None
        assert reads == 1
        assert cache.get("s2") is not None
