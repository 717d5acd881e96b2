"""Password and email changes from inside a session: step-up, audit, notification."""

from __future__ import annotations

import pytest

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

NEW_PASSWORD = "amber lighthouse quietly hums 58"


class TestPasswordChange:
    @pytest.mark.spec("ATO-1", "GDPR-4")
    async def test_change_needs_step_up_and_ends_other_sessions(self, api: Api) -> None:
        async with api.client() as client:
            _, totp = await user_with_totp(api, client)
            other = await login_with_totp(api, client, totp)
            current = await login_with_totp(api, client, totp)
            api.clock.advance(seconds=11 * 60)
            stale = await client.put(
                "/api/v1/auth/password",
                json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
                headers=bearer(current["access_token"]),
            )
            await step_up(api, client, current["access_token"], totp)
            wrong = await client.put(
                "/api/v1/auth/password",
                json={"current_password": "not my password at all", "new_password": NEW_PASSWORD},
                headers=bearer(current["access_token"]),
            )
            changed = await client.put(
                "/api/v1/auth/password",
                json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
                headers=bearer(current["access_token"]),
            )
            other_after = await client.get(
                "/api/v1/auth/sessions", headers=bearer(other["access_token"])
            )
            current_after = await client.get(
                "/api/v1/auth/sessions", headers=bearer(current["access_token"])
            )
            old_login = await client.post(
                "/api/v1/auth/login", json={"login": "alice", "password": PASSWORD}
            )
            new_login = await client.post(
                "/api/v1/auth/login", json={"login": "alice", "password": NEW_PASSWORD}
            )
        assert is_problem(stale, 403, "step-up-required")
        assert wrong.status_code == 401
        assert "not my password" not in wrong.text
        assert changed.status_code == 200
        assert other_after.status_code == 401
        assert current_after.status_code == 200
        assert old_login.status_code == 401
        assert new_login.json()["status"] == "mfa_required"
        assert [
            m
            for m in await api.outbox(to="alice@example.com")
            if m["template"] == "password_changed"
        ]
        assert await audit_events(api, "identity:password:changed")

    async def test_weak_new_password_changes_nothing(self, api: Api) -> None:
        async with api.client() as client:
            _, totp = await user_with_totp(api, client)
            tokens = await login_with_totp(api, client, totp)
            response = await client.put(
                "/api/v1/auth/password",
                json={"current_password": PASSWORD, "new_password": "password123456"},
                headers=bearer(tokens["access_token"]),
            )
            still = await client.post(
                "/api/v1/auth/login", json={"login": "alice", "password": PASSWORD}
            )
        assert response.status_code == 422
        assert "password123456" not in response.text
        assert still.status_code == 200


class TestEmailChange:
    @pytest.mark.spec("GDPR-4", "ATO-1")
    async def test_new_address_must_confirm_and_the_old_one_is_told(self, api: Api) -> None:
        async with api.client() as client:
            _, totp = await user_with_totp(api, client)
            tokens = await login_with_totp(api, client, totp)
            requested = await client.put(
                "/api/v1/auth/email",
                json={"new_email": "alice.new@example.com"},
                headers=bearer(tokens["access_token"]),
            )
            token = await api.last_token_in_mail("alice.new@example.com", "confirm_email_change")
            confirmed = await client.post(
                "/api/v1/auth/email/change/confirm", json={"token": token}
            )
            replay = await client.post("/api/v1/auth/email/change/confirm", json={"token": token})
            by_new = await login(client, "alice.new@example.com")
        old_mail = [m["template"] for m in await api.outbox(to="alice@example.com")]
        assert requested.status_code == 202
        assert confirmed.status_code == 200
        assert replay.status_code == 401
        assert by_new["status"] == "mfa_required"
        assert "email_change_requested" in old_mail
        assert "email_changed" in old_mail
        assert await audit_events(api, "identity:email:changed")

    async def test_taken_address_answers_the_same_and_never_confirms(self, api: Api) -> None:
        async with api.client() as client:
            await register_verified(api, client, "bob")
            _, totp = await user_with_totp(api, client)
            tokens = await login_with_totp(api, client, totp)
            response = await client.put(
                "/api/v1/auth/email",
                json={"new_email": "bob@example.com"},
                headers=bearer(tokens["access_token"]),
            )
        assert response.status_code == 202
        assert not [
            m
            for m in await api.outbox(to="bob@example.com")
            if m["template"] == "confirm_email_change"
        ]

    @pytest.mark.parametrize("new_email", ["not-an-address", "alice@example.com"])
    async def test_bad_or_unchanged_address_is_refused(self, api: Api, new_email: str) -> None:
        async with api.client() as client:
            _, totp = await user_with_totp(api, client)
            tokens = await login_with_totp(api, client, totp)
            response = await client.put(
                "/api/v1/auth/email",
                json={"new_email": new_email},
                headers=bearer(tokens["access_token"]),
            )
        assert response.status_code == 422
