"""Registration, login, MFA, sessions and refresh tokens through the HTTP API."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.api import (
    PASSWORD,
    Api,
    bearer,
    enrol_totp,
    login,
    login_with_totp,
    register_verified,
    running_api,
)
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.identity import repository
from tradeguard.ledger.models import AuditEventRow


def comparable(response_json: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in response_json.items() if k not in {"request_id", "instance"}}


async def event_types(api: Api) -> list[str]:
    async with api.services.unit_of_work() as session:
        return list(
            (
                await session.execute(select(AuditEventRow.event_type).order_by(AuditEventRow.pk))
            ).scalars()
        )


class TestRegistration:
    @pytest.mark.spec("AUTH-1", "AUTH-5")
    async def test_register_sends_verification_email_and_token_verifies_once(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            email = await register_verified(api, client)
            token = await api.last_token_in_mail(email, "verify_email")
            again = await client.post("/api/v1/auth/email/verify", json={"token": token})
        assert again.status_code == 401
        assert "identity:email:verified" in await event_types(api)

    @pytest.mark.spec("AUTH-1")
    async def test_weak_password_is_refused_without_echoing_it(self, api: Api) -> None:
        async with api.client() as client:
            response = await client.post(
                "/api/v1/auth/register",
                json={"username": "bob", "email": "bob@example.com", "password": "password123456"},
            )
        assert response.status_code == 422
        assert response.headers["content-type"].startswith("application/problem+json")
        assert "password123456" not in response.text
        assert await api.outbox() == []

    async def test_taken_email_looks_like_success_and_warns_the_owner(self, api: Api) -> None:
        async with api.client() as client:
            await register_verified(api, client)
            response = await client.post(
                "/api/v1/auth/register",
                json={"username": "mallory", "email": "alice@example.com", "password": PASSWORD},
            )
        assert response.status_code == 201
        templates = [m["template"] for m in await api.outbox(to="alice@example.com")]
        assert templates[-1] == "register_existing"

    @pytest.mark.parametrize(
        "body",
        [
            {"username": "a", "email": "x@example.com", "password": PASSWORD},
            {"username": "bad name!", "email": "x@example.com", "password": PASSWORD},
            {"username": "carol", "email": "not-an-email", "password": PASSWORD},
            {"username": "carol", "email": "c@example.com", "password": PASSWORD, "role": "ADMIN"},
            {"username": "carol", "email": "c@example.com", "password": "x" * 2000},
        ],
    )
    async def test_bad_registration_input_is_refused_and_changes_nothing(
        self, api: Api, body: dict[str, str]
    ) -> None:
        before = await event_types(api)  # the keyring's own keys, made at start-up
        async with api.client() as client:
            response = await client.post("/api/v1/auth/register", json=body)
        assert response.status_code == 422
        assert "x" * 50 not in response.text
        assert await event_types(api) == before


class TestLogin:
    @pytest.mark.spec("AUTH-1", "SESS-1", "RBAC-3")
    async def test_password_only_session_can_only_view_until_a_factor_is_enrolled(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            await register_verified(api, client)
            tokens = await login(client)
        claims = api.services.verifier.verify(tokens["access_token"])
        assert tokens["status"] == "authenticated"
        assert claims.amr == ("pwd",)
        assert claims.permissions == ("account:view",)
        assert claims.role == "TRADER"
        assert claims.expires_at - claims.issued_at == 900

    @pytest.mark.spec("AUTH-6", "ACCT-1", "ACCT-4")
    async def test_totp_login_gives_trading_permissions_on_the_authorized_device(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            await register_verified(api, client)
            first = await login(client)
            totp = await enrol_totp(api, client, first["access_token"])
            tokens = await login_with_totp(api, client, totp)
        claims = api.services.verifier.verify(tokens["access_token"])
        assert "order:place" in claims.permissions
        assert "account:withdraw" in claims.permissions
        assert set(claims.amr) >= {"pwd", "otp", "mfa"}
        mails = [m["template"] for m in await api.outbox(to="alice@example.com")]
        assert "new_device" in mails
        assert "factor_changed" in mails

    @pytest.mark.spec("AUTH-6")
    async def test_enrolment_code_cannot_be_replayed_at_login(self, api: Api) -> None:
        async with api.client() as client:
            await register_verified(api, client)
            first = await login(client)
            totp = await enrol_totp(api, client, first["access_token"])
            challenge = await login(client)
            code = totp.at(api.clock.now_ns() // 10**9)  # same step as the enrolment code
            replay = await client.post(
                "/api/v1/auth/mfa/verify",
                json={"ticket": challenge["ticket"], "method": "totp", "code": code},
            )
        assert replay.status_code == 401

    @pytest.mark.spec("AUTH-1", "ATO-2")
    async def test_unknown_user_wrong_password_and_locked_account_look_identical(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            await register_verified(api, client)
            unknown = await client.post(
                "/api/v1/auth/login", json={"login": "nobody", "password": PASSWORD}
            )
            wrong = await client.post(
                "/api/v1/auth/login", json={"login": "alice", "password": "wrong password here"}
            )
            api.clock.advance(seconds=3600)
            async with api.services.unit_of_work() as session:
                user = await repository.user_by_login(session, "alice")
                assert user is not None
                user.locked_until_ns = api.clock.now_ns() + 10**12
            locked = await client.post(
                "/api/v1/auth/login", json={"login": "alice", "password": PASSWORD}
            )
        assert unknown.status_code == wrong.status_code == locked.status_code == 401
        assert comparable(unknown.json()) == comparable(wrong.json()) == comparable(locked.json())

    @pytest.mark.spec("ATO-2", "API-2")
    async def test_repeated_failures_back_off_then_lock_and_notify(self, api: Api) -> None:
        statuses = []
        async with api.client() as client:
            await register_verified(api, client)
            for _ in range(6):
                response = await client.post(
                    "/api/v1/auth/login", json={"login": "alice", "password": "not it at all"}
                )
                statuses.append(response.status_code)
                api.clock.advance(seconds=20)
            right_password = await client.post(
                "/api/v1/auth/login", json={"login": "alice", "password": PASSWORD}
            )
        assert statuses[:5] == [401] * 5
        assert statuses[5] == 429
        assert right_password.status_code == 429
        assert "retry_after_seconds" in right_password.json()
        assert "identity:account:locked" in await event_types(api)
        assert [
            m for m in await api.outbox(to="alice@example.com") if m["template"] == "account_locked"
        ]

    async def test_malformed_login_bodies_get_problem_json(self, api: Api) -> None:
        async with api.client() as client:
            not_json = await client.post(
                "/api/v1/auth/login", content=b"{oops", headers={"content-type": "application/json"}
            )
            missing = await client.post("/api/v1/auth/login", json={"login": "alice"})
            extra = await client.post(
                "/api/v1/auth/login", json={"login": "a", "password": "b", "admin": True}
            )
        assert not_json.status_code == 400
        for response in (missing, extra):
            assert response.status_code == 422
        for response in (not_json, missing, extra):
            assert response.headers["content-type"].startswith("application/problem+json")


class TestSessions:
    @pytest.mark.spec("SESS-2")
    async def test_refresh_rotates_and_reuse_after_grace_revokes_the_session(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            await register_verified(api, client)
            tokens = await login(client)
            first = await client.post(
                "/api/v1/auth/token/refresh", json={"refresh_token": tokens["refresh_token"]}
            )
            assert first.status_code == 200
            api.clock.advance(seconds=60)
            reuse = await client.post(
                "/api/v1/auth/token/refresh", json={"refresh_token": tokens["refresh_token"]}
            )
            newest = await client.post(
                "/api/v1/auth/token/refresh", json={"refresh_token": first.json()["refresh_token"]}
            )
            access = await client.get(
                "/api/v1/auth/sessions", headers=bearer(first.json()["access_token"])
            )
        assert first.json()["refresh_token"] != tokens["refresh_token"]
        assert reuse.status_code == 401
        assert newest.status_code == 401  # the whole session family is gone
        assert access.status_code == 401  # and its access tokens at once
        assert "identity:session:refresh_reuse_detected" in await event_types(api)

    @pytest.mark.spec("SESS-2")
    async def test_parallel_refreshes_of_one_token_within_grace_all_succeed(self, api: Api) -> None:
        async with api.client() as client:
            await register_verified(api, client)
            tokens = await login(client)
            responses = await asyncio.gather(
                *(
                    client.post(
                        "/api/v1/auth/token/refresh",
                        json={"refresh_token": tokens["refresh_token"]},
                    )
                    for _ in range(3)
                )
            )
            follow_up = await client.post(
                "/api/v1/auth/token/refresh",
                json={"refresh_token": responses[0].json()["refresh_token"]},
            )
        assert [r.status_code for r in responses] == [200, 200, 200]
        assert follow_up.status_code == 200

    @pytest.mark.spec("SESS-2")
    async def test_session_ends_after_24_hours_whatever_the_refreshes(self, api: Api) -> None:
        async with api.client() as client:
            await register_verified(api, client)
            refresh = (await login(client))["refresh_token"]
            refreshed = 0
            for _ in range(80):  # an active user: a request and a refresh every 20 minutes
                api.clock.advance(seconds=20 * 60)
                response = await client.post(
                    "/api/v1/auth/token/refresh", json={"refresh_token": refresh}
                )
                if response.status_code != 200:
                    break
                refreshed += 1
                refresh = response.json()["refresh_token"]
                active = await client.get(
                    "/api/v1/auth/sessions", headers=bearer(response.json()["access_token"])
                )
                assert active.status_code == 200
        assert response.status_code == 401
        assert refreshed == 71  # 72 x 20 minutes = 24 hours
        assert "inactivity" not in response.json()["detail"]

    @pytest.mark.spec("SESS-5")
    async def test_logout_and_inactivity_end_the_session_at_once(self, api: Api) -> None:
        async with api.client() as client:
            await register_verified(api, client)
            a = await login(client)
            b = await login(client)
            ok = await client.get("/api/v1/auth/sessions", headers=bearer(a["access_token"]))
            out = await client.post("/api/v1/auth/logout", headers=bearer(a["access_token"]))
            after = await client.get("/api/v1/auth/sessions", headers=bearer(a["access_token"]))
            api.clock.advance(seconds=31 * 60)
            idle = await client.post(
                "/api/v1/auth/token/refresh", json={"refresh_token": b["refresh_token"]}
            )
        assert ok.status_code == 200
        assert {s["current"] for s in ok.json()} == {True, False}
        assert a["session_id"] != b["session_id"]
        assert out.status_code == 204
        assert after.status_code == 401
        assert idle.status_code == 401
        assert "inactivity" in idle.json()["detail"]

    async def test_user_lists_and_revokes_other_sessions_but_not_strangers(self, api: Api) -> None:
        async with api.client() as client:
            await register_verified(api, client)
            await register_verified(api, client, "bob")
            alice_1 = await login(client)
            alice_2 = await login(client)
            bob = await login(client, "bob")
            stranger = await client.delete(
                f"/api/v1/auth/sessions/{bob['session_id']}",
                headers=bearer(alice_1["access_token"]),
            )
            own = await client.delete(
                f"/api/v1/auth/sessions/{alice_2['session_id']}",
                headers=bearer(alice_1["access_token"]),
            )
            revoked = await client.get(
                "/api/v1/auth/sessions", headers=bearer(alice_2["access_token"])
            )
            bob_still = await client.get(
                "/api/v1/auth/sessions", headers=bearer(bob["access_token"])
            )
        assert stranger.status_code == 404
        assert own.status_code == 204
        assert revoked.status_code == 401
        assert bob_still.status_code == 200

    @pytest.mark.spec("RBAC-6", "RBAC-4")
    async def test_every_permission_check_is_audited_allowed_or_denied(self, api: Api) -> None:
        async with api.client() as client:
            await register_verified(api, client)
            tokens = await login(client)
            await client.get("/api/v1/auth/sessions", headers=bearer(tokens["access_token"]))
        async with api.services.unit_of_work() as session:
            bodies = (
                (
                    await session.execute(
                        select(AuditEventRow.body).where(
                            AuditEventRow.event_type == "access:permission:checked"
                        )
                    )
                )
                .scalars()
                .all()
            )
        checks = [json.loads(b)["data"] for b in bodies]
        assert {
            "permission": "authenticated",
            "allowed": True,
            "route": "/api/v1/auth/sessions",
            "method": "GET",
        } in checks


class TestInactivity:
    @pytest.mark.spec("SESS-5", "IAC-3")
    async def test_idle_session_is_refused_even_with_a_live_access_token(
        self, settings: Settings, engine: AsyncEngine, clock: FrozenClock
    ) -> None:
        short = settings.model_copy(update={"trader_idle_timeout_seconds": 300})
        async with running_api(short, engine, clock) as api, api.client() as client:
            await register_verified(api, client)
            tokens = await login(client)
            api.clock.advance(seconds=240)
            active = await client.get(
                "/api/v1/auth/sessions", headers=bearer(tokens["access_token"])
            )
            api.clock.advance(seconds=240)
            still = await client.get(
                "/api/v1/auth/sessions", headers=bearer(tokens["access_token"])
            )
            api.clock.advance(seconds=301)
            idle = await client.get("/api/v1/auth/sessions", headers=bearer(tokens["access_token"]))
        assert active.status_code == still.status_code == 200
        assert idle.status_code == 401
        assert "inactivity" in idle.json()["detail"]


class TestJwks:
    @pytest.mark.spec("SESS-1")
    async def test_jwks_publishes_the_verification_key_only(self, api: Api) -> None:
        async with api.client() as client:
            response = await client.get("/.well-known/jwks.json")
        keys = response.json()["keys"]
        assert response.status_code == 200
        assert keys[0]["kid"] == api.services.keys.active.kid
        assert all("d" not in key for key in keys)
