"""Refresh-token rotation keeps one chain per session, grace window or not (SESS-2, issue #6).

The tester found that a spent token presented again inside the 10 s grace window minted a
second, independent chain; both then lived on and reuse was never detected.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.support.api import Api, audit_events, bearer, login, register_verified
from tradeguard.identity import repository
from tradeguard.identity.common import hash_secret_token
from tradeguard.identity.models import RefreshToken


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/api/v1/auth/token/refresh", json={"refresh_token": token})


async def live_heads(api: Api, session_id: str) -> int:
    async with api.services.unit_of_work() as session:
        return len(await repository.live_refresh_tokens(session, session_id))


async def signed_in(api: Api, client: httpx.AsyncClient) -> dict[str, Any]:
    await register_verified(api, client)
    return await login(client)


class TestGraceWindow:
    @pytest.mark.spec("SESS-2")
    async def test_a_repeat_inside_the_grace_window_gets_the_same_successor(self, api: Api) -> None:
        async with api.client() as client:
            tokens = await signed_in(api, client)
            first = await refresh(client, tokens["refresh_token"])
            api.clock.advance(seconds=5)
            repeat = await refresh(client, tokens["refresh_token"])
            heads = await live_heads(api, tokens["session_id"])
            works = await client.get(
                "/api/v1/auth/sessions", headers=bearer(repeat.json()["access_token"])
            )
        assert first.status_code == repeat.status_code == 200
        assert repeat.json()["refresh_token"] == first.json()["refresh_token"]
        assert heads == 1
        assert works.status_code == 200
        grace = [e["data"]["grace"] for e in await audit_events(api, "identity:session:refreshed")]
        assert grace == [False, True]

    @pytest.mark.spec("SESS-2")
    async def test_parallel_refreshes_share_one_successor(self, api: Api) -> None:
        async with api.client() as client:
            tokens = await signed_in(api, client)
            responses = await asyncio.gather(
                *(refresh(client, tokens["refresh_token"]) for _ in range(4))
            )
            heads = await live_heads(api, tokens["session_id"])
        assert [r.status_code for r in responses] == [200] * 4
        assert len({r.json()["refresh_token"] for r in responses}) == 1
        assert heads == 1

    @pytest.mark.spec("SESS-2")
    async def test_after_a_repeat_any_spent_token_presented_late_ends_the_session(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            tokens = await signed_in(api, client)
            first = (await refresh(client, tokens["refresh_token"])).json()
            await refresh(client, tokens["refresh_token"])  # the grace-window repeat
            api.clock.advance(seconds=30)
            second = (await refresh(client, first["refresh_token"])).json()
            api.clock.advance(seconds=30)
            late = await refresh(client, first["refresh_token"])
            head = await refresh(client, second["refresh_token"])
            access = await client.get(
                "/api/v1/auth/sessions", headers=bearer(second["access_token"])
            )
        assert late.status_code == 401
        assert "already used" in late.json()["detail"]
        assert head.status_code == 401  # the one chain ended with it
        assert access.status_code == 401
        assert await audit_events(api, "identity:session:refresh_reuse_detected")


class TestUpgrade:
    @pytest.mark.spec("SESS-2")
    async def test_a_token_spent_before_successors_were_recorded_starts_no_second_chain(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            tokens = await signed_in(api, client)
            first = (await refresh(client, tokens["refresh_token"])).json()
            async with api.services.unit_of_work() as session:
                row = await session.get(RefreshToken, hash_secret_token(tokens["refresh_token"]))
                assert row is not None
                row.successor_enc = None  # as rows spent before migration 0004 are
            repeat = await refresh(client, tokens["refresh_token"])
            heads = await live_heads(api, tokens["session_id"])
            chain = await refresh(client, first["refresh_token"])
        assert repeat.status_code == 401
        assert heads == 1
        assert chain.status_code == 200  # refused without ending the session
