"""Attacks found in review, each reproduced through the API and refused."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import APIRouter

from tests.integration.identity.test_factors import enrol_email_factor
from tests.support.api import (
    PASSWORD,
    Api,
    audit_events,
    bearer,
    is_problem,
    login,
    login_with_totp,
    register_verified,
    step_up,
    user_with_totp,
)
from tradeguard.access.domain import Permission
from tradeguard.identity import repository
from tradeguard.identity.guard import guarded


async def wrong_totp(api: Api, client: object, ticket: str) -> int:
    response = await client.post(  # type: ignore[attr-defined]
        "/api/v1/auth/mfa/verify", json={"ticket": ticket, "method": "totp", "code": "000000"}
    )
    return int(response.status_code)


class TestSecondFactorGuessing:
    @pytest.mark.spec("ATO-2", "AUTH-6")
    async def test_new_logins_do_not_buy_fresh_guesses_and_the_account_locks(
        self, api: Api
    ) -> None:
        statuses: list[int] = []
        async with api.client() as client:
            await user_with_totp(api, client)
            for _ in range(4):  # a new ticket each time: the password is known
                ticket = (await login(client))["ticket"]
                for _ in range(3):
                    statuses.append(await wrong_totp(api, client, ticket))
                    api.clock.advance(seconds=70)
            locked_out = await client.post(
                "/api/v1/auth/login", json={"login": "alice", "password": PASSWORD}
            )
        assert statuses == [401] * 10 + [429, 429]
        assert locked_out.status_code == 401
        assert await audit_events(api, "identity:account:locked")
        assert [
            m for m in await api.outbox(to="alice@example.com") if m["template"] == "account_locked"
        ]

    @pytest.mark.spec("ATO-2")
    async def test_step_up_guessing_backs_off(self, api: Api) -> None:
        async with api.client() as client:
            access, _ = await user_with_totp(api, client)
            statuses = [
                (
                    await client.post(
                        "/api/v1/auth/mfa/step-up",
                        json={"method": "totp", "code": "000000"},
                        headers=bearer(access),
                    )
                ).status_code
                for _ in range(6)
            ]
        assert statuses[:3] == [401, 401, 401]
        assert 429 in statuses[3:]

    @pytest.mark.spec("ATO-2")
    async def test_parallel_guesses_cannot_share_one_ticket(self, api: Api) -> None:
        async with api.client() as client:
            await user_with_totp(api, client)
            ticket = (await login(client))["ticket"]
            await asyncio.gather(*(wrong_totp(api, client, ticket) for _ in range(12)))
        failures = await audit_events(api, "identity:mfa:failed")
        # Each checked guess is audited; a ticket allows at most five however they arrive.
        assert len(failures) <= 5


class TestOracles:
    async def test_taken_username_answers_the_same_whether_or_not_the_email_exists(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            await register_verified(api, client)
            await register_verified(api, client, "bob")
            known_email = await client.post(
                "/api/v1/auth/register",
                json={"username": "alice", "email": "bob@example.com", "password": PASSWORD},
            )
            new_email = await client.post(
                "/api/v1/auth/register",
                json={"username": "alice", "email": "zed@example.com", "password": PASSWORD},
            )
        assert known_email.status_code == new_email.status_code == 409

    @pytest.mark.spec("SESS-4", "ATO-1")
    async def test_right_password_from_outside_the_allowlist_backs_off_like_a_wrong_one(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            _, totp = await user_with_totp(api, client)
            tokens = await login_with_totp(api, client, totp)
            await step_up(api, client, tokens["access_token"], totp)
            await client.put(
                "/api/v1/auth/ip-allowlist",
                json={"cidrs": ["203.0.113.0/24"]},
                headers=bearer(tokens["access_token"]),
            )
        async with api.client(ip="198.51.100.9") as outsider:
            right, wrong = [], []
            for _ in range(3):
                wrong.append(
                    (
                        await outsider.post(
                            "/api/v1/auth/login",
                            json={"login": "alice", "password": "nope nope nope"},
                        )
                    ).status_code
                )
            api.clock.advance(seconds=3600)
            for _ in range(3):
                right.append(
                    (
                        await outsider.post(
                            "/api/v1/auth/login", json={"login": "alice", "password": PASSWORD}
                        )
                    ).status_code
                )
        assert wrong == right


class TestFreshPermissions:
    @pytest.mark.spec("ACCT-4", "RBAC-4", "RBAC-5")
    async def test_unauthorizing_the_device_removes_trading_from_a_live_token_at_once(
        self, api: Api
    ) -> None:
        router = APIRouter()

        @router.post("/test/orders", **guarded(Permission.ORDER_PLACE))
        async def place_order() -> dict[str, str]:
            return {"status": "accepted"}

        api.app.include_router(router)
        async with api.client() as client:
            _, totp = await user_with_totp(api, client)
            tokens = await login_with_totp(api, client, totp)
            allowed = await client.post("/test/orders", headers=bearer(tokens["access_token"]))
            async with api.services.unit_of_work() as session:
                auth = await repository.auth_session(session, tokens["session_id"])
                assert auth is not None
                device = await repository.device_of(session, auth.user_id, auth.device_id or "")
                assert device is not None
                device.authorized_ns = None
            api.app.state.session_cache.drop(tokens["session_id"])
            refused = await client.post("/test/orders", headers=bearer(tokens["access_token"]))
        assert allowed.status_code == 200
        assert is_problem(refused, 403, "forbidden")
        checks = [e["data"] for e in await audit_events(api, "access:permission:checked")]
        assert [c["allowed"] for c in checks if c["permission"] == "order:place"] == [True, False]


class TestEmailChangeMovesCodes:
    @pytest.mark.spec("GDPR-4", "ATO-1")
    async def test_login_codes_follow_the_new_address(self, api: Api) -> None:
        async with api.client() as client:
            await register_verified(api, client)
            first = await login(client)
            await enrol_email_factor(api, client, first["access_token"])
            challenge = await login(client)
            await client.post(
                "/api/v1/auth/mfa/send", json={"ticket": challenge["ticket"], "method": "email"}
            )
            code = await api.last_code_in_mail("alice@example.com")
            tokens = (
                await client.post(
                    "/api/v1/auth/mfa/verify",
                    json={"ticket": challenge["ticket"], "method": "email", "code": code},
                )
            ).json()
            requested = await client.put(
                "/api/v1/auth/email",
                json={"new_email": "alice.new@example.com"},
                headers=bearer(tokens["access_token"]),
            )
            token = await api.last_token_in_mail("alice.new@example.com", "confirm_email_change")
            await client.post("/api/v1/auth/email/change/confirm", json={"token": token})
            before = len(
                [m for m in await api.outbox(to="alice@example.com") if m["template"] == "otp_code"]
            )
            again = await login(client, "alice.new@example.com")
            sent = await client.post(
                "/api/v1/auth/mfa/send", json={"ticket": again["ticket"], "method": "email"}
            )
            after_old = len(
                [m for m in await api.outbox(to="alice@example.com") if m["template"] == "otp_code"]
            )
            to_new = [
                m
                for m in await api.outbox(to="alice.new@example.com")
                if m["template"] == "otp_code"
            ]
        assert requested.status_code == 202
        assert sent.status_code == 200
        assert after_old == before
        assert len(to_new) == 1


class TestQuotas:
    @pytest.mark.spec("API-2")
    async def test_one_ipv6_network_cannot_register_without_limit(self, api: Api) -> None:
        statuses = []
        for n in range(22):
            # A different address of the same /64 each time.
            async with api.client(ip=f"2001:db8:1:2::{n + 1:x}") as client:
                response = await client.post(
                    "/api/v1/auth/register",
                    json={
                        "username": f"user{n}",
                        "email": f"user{n}@example.com",
                        "password": PASSWORD,
                    },
                )
                statuses.append(response.status_code)
        assert statuses[:20] == [201] * 20
        assert statuses[20:] == [429, 429]

    @pytest.mark.spec("ATO-3")
    async def test_reset_mails_to_one_address_are_capped_silently(self, api: Api) -> None:
        async with api.client() as client:
            await register_verified(api, client)
            statuses = [
                (
                    await client.post(
                        "/api/v1/auth/password/reset", json={"email": "alice@example.com"}
                    )
                ).status_code
                for _ in range(6)
            ]
        sent = [
            m for m in await api.outbox(to="alice@example.com") if m["template"] == "password_reset"
        ]
        assert statuses == [202] * 6
        assert len(sent) == 3
