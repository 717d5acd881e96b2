"""GET /api/v1/me: the caller's own profile and this session's permissions, nothing secret."""

from __future__ import annotations

from tests.support.api import (
    Api,
    bearer,
    is_problem,
    login,
    login_with_totp,
    register_verified,
    user_with_totp,
)


class TestProfile:
    async def test_a_password_only_session_sees_its_profile_and_view_permission(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            await register_verified(api, client)
            tokens = await login(client)
            response = await client.get("/api/v1/me", headers=bearer(tokens["access_token"]))
        body = response.json()
        assert response.status_code == 200, response.text
        assert set(body) == {
            "id",
            "username",
            "email",
            "role",
            "email_verified",
            "created_ns",
            "factors",
            "session",
        }
        assert (body["username"], body["email"], body["role"]) == (
            "alice",
            "alice@example.com",
            "TRADER",
        )
        assert body["email_verified"] is True
        assert body["factors"] == []
        assert body["session"] == {
            "id": tokens["session_id"],
            "amr": ["pwd"],
            "permissions": ["account:view"],
            "device_authorized": False,
        }

    async def test_a_second_factor_session_lists_its_factor_and_trading_permissions(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            _, totp = await user_with_totp(api, client)
            tokens = await login_with_totp(api, client, totp)
            response = await client.get("/api/v1/me", headers=bearer(tokens["access_token"]))
        body = response.json()
        assert [(f["kind"], f["status"]) for f in body["factors"]] == [("totp", "active")]
        assert set(body["factors"][0]) == {"id", "kind", "label", "status"}
        assert "order:place" in body["session"]["permissions"]
        assert body["session"]["device_authorized"] is True
        assert "mfa" in body["session"]["amr"]
        assert "secret" not in response.text
        assert "password" not in response.text

    async def test_without_a_token_the_profile_is_refused(self, api: Api) -> None:
        async with api.client() as client:
            response = await client.get("/api/v1/me")
        assert is_problem(response, 401, "unauthorized")
