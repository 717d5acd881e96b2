"""What the identity API's errors tell a client: Bearer challenges, Retry-After, expiry."""

from __future__ import annotations

import json

import httpx
import pyotp
import pytest

from tests.support.api import (
    PASSWORD,
    Api,
    bearer,
    is_problem,
    login,
    register_verified,
    user_with_totp,
)

BARE_CHALLENGE = 'Bearer realm="tradeguard"'


def challenge(response: httpx.Response) -> str:
    assert response.status_code == 401, response.text
    return response.headers["www-authenticate"]


def comparable(response: httpx.Response) -> tuple[int, str]:
    """Status and body without the members that differ per request."""
    body = {k: v for k, v in response.json().items() if k not in {"request_id", "instance"}}
    return response.status_code, json.dumps(body, sort_keys=True)


def assert_retry_after(response: httpx.Response) -> int:
    seconds = int(response.headers["retry-after"])
    assert seconds >= 1
    assert response.json()["retry_after_seconds"] == seconds
    return seconds


class TestBearerChallenge:
    async def test_a_request_without_a_token_gets_a_challenge_without_an_error_code(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            missing = await client.get("/api/v1/auth/sessions")
            basic = await client.get(
                "/api/v1/auth/sessions", headers={"Authorization": "Basic YTpi"}
            )
        # RFC 6750 section 3.1: no credentials (or another scheme) means no error code.
        assert challenge(missing) == BARE_CHALLENGE
        assert challenge(basic) == BARE_CHALLENGE

    async def test_a_malformed_bearer_header_is_an_invalid_request(self, api: Api) -> None:
        async with api.client() as client:
            for header in ("Bearer", "Bearer ", "Bearer two parts"):
                response = await client.get(
                    "/api/v1/auth/sessions", headers={"Authorization": header}
                )
                assert challenge(response).startswith(
                    BARE_CHALLENGE + ', error="invalid_request"'
                ), header

    async def test_a_bad_expired_or_revoked_token_is_an_invalid_token(self, api: Api) -> None:
        async with api.client() as client:
            await register_verified(api, client)
            revoked = (await login(client))["access_token"]
            await client.post("/api/v1/auth/logout", headers=bearer(revoked))
            expiring = (await login(client))["access_token"]
            garbage = await client.get("/api/v1/auth/sessions", headers=bearer("not.a.token"))
            after_logout = await client.get("/api/v1/auth/sessions", headers=bearer(revoked))
            api.clock.advance(seconds=16 * 60)  # access tokens live 15 minutes (SESS-1)
            expired = await client.get("/api/v1/auth/sessions", headers=bearer(expiring))
        for response in (garbage, after_logout, expired):
            assert challenge(response).startswith(BARE_CHALLENGE + ', error="invalid_token"')
            assert revoked not in response.headers["www-authenticate"]
            assert expiring not in response.headers["www-authenticate"]

    async def test_a_refused_password_carries_the_bare_challenge(self, api: Api) -> None:
        async with api.client() as client:
            await register_verified(api, client)
            wrong = await client.post(
                "/api/v1/auth/login", json={"login": "alice", "password": "wrong password 1"}
            )
        # RFC 9110 section 15.5.2: every 401 carries a challenge; the token was not the problem.
        assert challenge(wrong) == BARE_CHALLENGE


class TestRetryAfter:
    async def test_a_throttled_login_says_when_to_retry_and_is_the_same_for_unknown_names(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            await register_verified(api, client)
        answers: dict[str, list[httpx.Response]] = {}
        # From two networks: the per-address throttle must not mix into the comparison.
        for name, ip in (("alice", "203.0.113.10"), ("nobody", "203.0.113.20")):
            async with api.client(ip=ip) as client:
                answers[name] = [
                    await client.post(
                        "/api/v1/auth/login", json={"login": name, "password": "wrong guess 1"}
                    )
                    for _ in range(4)
                ]
        statuses = {name: [r.status_code for r in rs] for name, rs in answers.items()}
        assert statuses["alice"] == statuses["nobody"] == [401, 401, 401, 429]
        for responses in answers.values():
            throttled = responses[-1]
            assert is_problem(throttled, 429, "too-many-requests")
            assert assert_retry_after(throttled) == 1  # the first back-off step
            assert "locked" not in throttled.text
        assert comparable(answers["alice"][-1]) == comparable(answers["nobody"][-1])

    @pytest.mark.spec("ATO-2")
    async def test_second_factor_lockout_is_said_past_the_password_but_not_at_login(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            access, totp = await user_with_totp(api, client)
            await guess_second_factor_until_locked(api, client, totp)
            step_up = await client.post(
                "/api/v1/auth/mfa/step-up",
                json={"method": "totp", "code": totp.at(api.clock.now_ns() // 10**9)},
                headers=bearer(access),
            )
            right_password = await client.post(
                "/api/v1/auth/login", json={"login": "alice", "password": PASSWORD}
            )
            wrong_password = await client.post(
                "/api/v1/auth/login", json={"login": "alice", "password": "wrong guess 1"}
            )
        # The session holder is past the password: it is told, and for how long.
        assert is_problem(step_up, 429, "account-locked")
        assert "temporarily locked" in step_up.json()["detail"]
        assert 800 < assert_retry_after(step_up) <= 900  # TRADEGUARD_LOGIN_LOCKOUT_SECONDS
        # The password step still cannot tell a locked account from a wrong password.
        assert right_password.status_code == 401
        assert comparable(right_password) == comparable(wrong_password)


async def guess_second_factor_until_locked(
    api: Api, client: httpx.AsyncClient, totp: pyotp.TOTP
) -> None:
    """Ten wrong TOTP codes at sign-in (the lock limit), waiting out each Retry-After."""
    ticket: str | None = None
    wrong_codes = 0
    while wrong_codes < 10:
        if ticket is None:
            ticket = (await login(client))["ticket"]
        right = totp.at(api.clock.now_ns() // 10**9)
        response = await client.post(
            "/api/v1/auth/mfa/verify",
            json={"ticket": ticket, "method": "totp", "code": f"{(int(right) + 1) % 10**6:06d}"},
        )
        if response.status_code == 429:
            assert is_problem(response, 429, "too-many-requests")  # back-off, not the lock yet
            api.clock.advance(seconds=assert_retry_after(response))
        elif "ticket" in response.json()["detail"]:
            ticket = None  # its five guesses are spent
        else:
            assert is_problem(response, 401, "unauthorized"), response.text
            wrong_codes += 1


class TestExpiredCodes:
    async def test_an_expired_sign_in_ticket_says_sign_in_again(self, api: Api) -> None:
        async with api.client() as client:
            _, totp = await user_with_totp(api, client)
            challenge_body = await login(client)
            api.clock.advance(seconds=6 * 60)  # tickets live 5 minutes
            expired = await client.post(
                "/api/v1/auth/mfa/verify",
                json={
                    "ticket": challenge_body["ticket"],
                    "method": "totp",
                    "code": totp.at(api.clock.now_ns() // 10**9),
                },
            )
            unknown = await client.post(
                "/api/v1/auth/mfa/verify",
                json={"ticket": "t" * 43, "method": "totp", "code": "123456"},
            )
        assert is_problem(expired, 401, "code-expired")
        assert "sign in again" in expired.json()["detail"]
        assert is_problem(unknown, 401, "unauthorized")

    @pytest.mark.spec("AUTH-5")
    async def test_an_expired_email_proof_code_says_expired_and_a_wrong_one_does_not(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            await register_verified(api, client)
            access = (await login(client))["access_token"]
            sent = await client.post("/api/v1/auth/email/proof", headers=bearer(access))
            assert sent.status_code == 202
            code = await mailed_code(api, "email_proof")
            wrong = await client.post(
                "/api/v1/auth/email/proof/verify",
                json={"code": f"{(int(code) + 1) % 10**6:06d}"},
                headers=bearer(access),
            )
            api.clock.advance(seconds=6 * 60)  # codes live 5 minutes
            expired = await client.post(
                "/api/v1/auth/email/proof/verify", json={"code": code}, headers=bearer(access)
            )
        assert is_problem(wrong, 401, "unauthorized")
        assert is_problem(expired, 401, "code-expired")
        assert code not in expired.text

    @pytest.mark.spec("AUTH-5")
    async def test_an_expired_verification_link_says_expired(self, api: Api) -> None:
        async with api.client() as client:
            registered = await client.post(
                "/api/v1/auth/register",
                json={"username": "alice", "email": "alice@example.com", "password": PASSWORD},
            )
            assert registered.status_code == 201
            token = await api.last_token_in_mail("alice@example.com", "verify_email")
            api.clock.advance(seconds=25 * 3600)  # links live 24 hours
            expired = await client.post("/api/v1/auth/email/verify", json={"token": token})
            unknown = await client.post("/api/v1/auth/email/verify", json={"token": "u" * 43})
        assert is_problem(expired, 401, "code-expired")
        assert "request a new one" in expired.json()["detail"]
        assert is_problem(unknown, 401, "unauthorized")
        assert token not in expired.text

    @pytest.mark.spec("ATO-3")
    async def test_an_expired_reset_link_says_expired(self, api: Api) -> None:
        async with api.client() as client:
            await register_verified(api, client)
            asked = await client.post(
                "/api/v1/auth/password/reset", json={"email": "alice@example.com"}
            )
            assert asked.status_code == 202
            token = await api.last_token_in_mail("alice@example.com", "password_reset")
            api.clock.advance(seconds=31 * 60)  # reset links live 30 minutes
            expired = await client.post(
                "/api/v1/auth/password/reset/confirm",
                json={"token": token, "new_password": "violet kestrel under the copper bridge"},
            )
        assert is_problem(expired, 401, "code-expired")
        assert "ask for a new one" in expired.json()["detail"]


async def mailed_code(api: Api, template: str) -> str:
    mails = [m for m in await api.outbox() if m["template"] == template]
    code = "".join(ch for ch in mails[-1]["body"].split("Your code is ", 1)[1][:6])
    assert code.isdigit()
    return code
