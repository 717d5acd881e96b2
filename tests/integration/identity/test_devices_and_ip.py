"""Devices and per-user IP allowlists through the HTTP API (SESS-3, SESS-4, ACCT-3, ACCT-4)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.api import (
    CLIENT_IP,
    PASSWORD,
    Api,
    audit_events,
    bearer,
    enrol_totp,
    is_problem,
    login,
    login_with_totp,
    register_verified,
    step_up,
    user_with_totp,
)

OUTSIDE_IP = "198.51.100.9"


async def devices(client: httpx.AsyncClient, access: str) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/auth/devices", headers=bearer(access))
    assert response.status_code == 200, response.text
    listed: list[dict[str, Any]] = response.json()
    return listed


async def new_device_mails(api: Api) -> int:
    return len([m for m in await api.outbox() if m["template"] == "new_device"])


async def refreshed(client: httpx.AsyncClient, refresh_token: str) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/auth/token/refresh", json={"refresh_token": refresh_token}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def comparable(response: httpx.Response) -> dict[str, object]:
    return {k: v for k, v in response.json().items() if k not in {"request_id", "instance"}}


class TestDevices:
    @pytest.mark.spec("SESS-3", "ACCT-4", "ATO-1")
    async def test_a_login_presenting_its_device_token_is_recognized(self, api: Api) -> None:
        async with api.client() as client:
            _, totp = await user_with_totp(api, client)
            first = await login_with_totp(api, client, totp)
            known = await devices(client, first["access_token"])
            mails = await new_device_mails(api)
            seen = len(await audit_events(api, "identity:device:seen"))
            again = await login_with_totp(
                api, client, totp, device={"device_token": first["device_token"]}
            )
            after = await devices(client, again["access_token"])
        assert first["device_token"]
        assert again["device_token"] is None  # nothing new to remember
        assert [d["id"] for d in after] == [d["id"] for d in known]
        assert await new_device_mails(api) == mails
        assert len(await audit_events(api, "identity:device:seen")) == seen
        claims = api.services.verifier.verify(again["access_token"])
        assert "order:place" in claims.permissions

    @pytest.mark.spec("SESS-3", "ACCT-4", "ATO-1", "ATO-2")
    async def test_a_login_without_a_device_token_starts_an_unauthorized_device(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            _, totp = await user_with_totp(api, client)
            full = await login_with_totp(api, client, totp)
            before = {d["id"] for d in await devices(client, full["access_token"])}
            mails = await new_device_mails(api)
            challenge = await login(client, device={"platform": "Linux", "language": "en"})
            pending = [
                d for d in await devices(client, full["access_token"]) if d["id"] not in before
            ]
        assert challenge["status"] == "mfa_required"
        assert challenge["device_token"]
        assert len(pending) == 1
        assert pending[0]["authorized"] is False
        assert pending[0]["last_ip"] == CLIENT_IP
        assert await new_device_mails(api) == mails  # only a completed sign-in is announced

    @pytest.mark.spec("ACCT-4", "ACCT-1")
    async def test_authorizing_a_device_needs_step_up(self, api: Api) -> None:
        async with api.client() as client:
            access, totp = await user_with_totp(api, client)
            (device,) = await devices(client, access)
            refused = await client.post(
                f"/api/v1/auth/devices/{device['id']}", headers=bearer(access)
            )
            unchanged = await devices(client, access)
            await step_up(api, client, access, totp)
            accepted = await client.post(
                f"/api/v1/auth/devices/{device['id']}", headers=bearer(access)
            )
            unknown = await client.post(
                "/api/v1/auth/devices/0000aaaa-0000-0000-0000-000000000000", headers=bearer(access)
            )
            authorized = await devices(client, access)
        assert is_problem(refused, 403, "step-up-required")
        assert unchanged[0]["authorized"] is False
        assert accepted.status_code == 200, accepted.text
        assert unknown.status_code == 404
        assert authorized[0]["authorized"] is True
        events = await audit_events(api, "identity:device:authorized")
        assert [e["data"]["by"] for e in events] == ["step_up"]

    @pytest.mark.spec("ACCT-4", "RBAC-3")
    async def test_a_second_factor_on_an_unauthorized_device_does_not_grant_trading(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            await register_verified(api, client)
            first = await login(client)  # password only: its device is not authorized
            access = first["access_token"]
            totp = await enrol_totp(api, client, access)
            await step_up(api, client, access, totp)
            stepped_up = await refreshed(client, first["refresh_token"])
            (device,) = await devices(client, access)
            authorized = await client.post(
                f"/api/v1/auth/devices/{device['id']}", headers=bearer(access)
            )
            trading = await refreshed(client, stepped_up["refresh_token"])
        before = api.services.verifier.verify(stepped_up["access_token"])
        after = api.services.verifier.verify(trading["access_token"])
        assert "mfa" in before.amr
        assert device["authorized"] is False
        assert sorted(before.permissions) == ["account:view", "kyc:apply", "order:cancel"]
        assert authorized.status_code == 200, authorized.text
        assert {"order:place", "order:modify", "account:withdraw"} <= set(after.permissions)

    @pytest.mark.spec("ACCT-4", "SESS-3")
    async def test_revoking_a_device_ends_its_sessions_at_once(self, api: Api) -> None:
        async with api.client() as client:
            _, totp = await user_with_totp(api, client)
            keep = await login_with_totp(api, client, totp)
            # Another client (different attributes): one client signing in twice is one device.
            lose = await login_with_totp(api, client, totp, device={"platform": "Tablet"})
            assert (
                await client.get("/api/v1/auth/sessions", headers=bearer(lose["access_token"]))
            ).status_code == 200  # in use, so its state is cached
            lose_device = next(
                s["device_id"]
                for s in (
                    await client.get("/api/v1/auth/sessions", headers=bearer(keep["access_token"]))
                ).json()
                if s["id"] == lose["session_id"]
            )
            revoked = await client.delete(
                f"/api/v1/auth/devices/{lose_device}", headers=bearer(keep["access_token"])
            )
            access = await client.get("/api/v1/auth/sessions", headers=bearer(lose["access_token"]))
            refresh = await client.post(
                "/api/v1/auth/token/refresh", json={"refresh_token": lose["refresh_token"]}
            )
            kept = await client.get("/api/v1/auth/sessions", headers=bearer(keep["access_token"]))
            listed = {d["id"] for d in await devices(client, keep["access_token"])}
            relogin = await login(client, device={"device_token": lose["device_token"]})
        assert revoked.status_code == 204
        assert access.status_code == 401
        assert refresh.status_code == 401
        assert kept.status_code == 200
        assert lose_device not in listed
        assert relogin["device_token"]  # a revoked device token is not recognized again
        events = await audit_events(api, "identity:device:revoked")
        assert [e["data"]["sessions_revoked"] for e in events] == [1]


async def put_allowlist(client: httpx.AsyncClient, access: str, cidrs: list[str]) -> httpx.Response:
    return await client.put(
        "/api/v1/auth/ip-allowlist", json={"cidrs": cidrs}, headers=bearer(access)
    )


class TestIpAllowlist:
    @pytest.mark.spec("SESS-4", "ACCT-3", "ACCT-1")
    async def test_changing_the_allowlist_needs_step_up(self, api: Api) -> None:
        async with api.client() as client:
            _, totp = await user_with_totp(api, client)
            full = await login_with_totp(api, client, totp)
            api.clock.advance(seconds=11 * 60)
            refused = await put_allowlist(client, full["access_token"], ["203.0.113.0/24"])
            listed = await client.get(
                "/api/v1/auth/ip-allowlist", headers=bearer(full["access_token"])
            )
        assert is_problem(refused, 403, "step-up-required")
        assert listed.json() == {"cidrs": []}
        assert not await audit_events(api, "identity:ip_allowlist:changed")

    @pytest.mark.spec("SESS-4", "ACCT-3")
    async def test_an_invalid_cidr_is_refused(self, api: Api) -> None:
        invalid = ["not-a-network", "203.0.113.7/24", "300.1.2.3/32", "2001:db8::/129", ""]
        async with api.client() as client:
            _, totp = await user_with_totp(api, client)
            full = await login_with_totp(api, client, totp)
            responses = [
                await put_allowlist(client, full["access_token"], [cidr, "203.0.113.0/24"])
                for cidr in invalid
            ]
        for response in responses:
            assert is_problem(response, 422, "invalid-input")
        assert not await audit_events(api, "identity:ip_allowlist:changed")

    @pytest.mark.spec("SESS-4", "ACCT-3")
    async def test_a_list_that_would_lock_out_the_caller_is_refused(self, api: Api) -> None:
        async with api.client() as client:
            _, totp = await user_with_totp(api, client)
            full = await login_with_totp(api, client, totp)
            response = await put_allowlist(client, full["access_token"], ["198.51.100.0/24"])
            still = await client.get("/api/v1/auth/sessions", headers=bearer(full["access_token"]))
        assert is_problem(response, 422, "invalid-input")
        assert "locked out" in response.json()["detail"]
        assert still.status_code == 200

    @pytest.mark.spec("SESS-4", "ACCT-3", "AUD-1")
    async def test_requests_from_outside_the_list_are_refused_and_audited(self, api: Api) -> None:
        async with api.client() as client, api.client(ip=OUTSIDE_IP) as outside:
            _, totp = await user_with_totp(api, client)
            here = await login_with_totp(api, client, totp)
            elsewhere = await login_with_totp(api, outside, totp)
            in_use = await outside.get(
                "/api/v1/auth/sessions", headers=bearer(elsewhere["access_token"])
            )
            changed = await put_allowlist(client, here["access_token"], ["203.0.113.0/24"])
            refused = await outside.get(
                "/api/v1/auth/sessions", headers=bearer(elsewhere["access_token"])
            )
            stolen_token = await outside.get(
                "/api/v1/auth/sessions", headers=bearer(here["access_token"])
            )
            inside = await client.get("/api/v1/auth/sessions", headers=bearer(here["access_token"]))
            outside_refresh = await outside.post(
                "/api/v1/auth/token/refresh", json={"refresh_token": elsewhere["refresh_token"]}
            )
        assert in_use.status_code == 200
        assert changed.status_code == 200, changed.text
        assert changed.json() == {"cidrs": ["203.0.113.0/24"]}
        assert is_problem(refused, 403, "forbidden")
        assert is_problem(stolen_token, 403, "forbidden")
        assert inside.status_code == 200
        assert outside_refresh.status_code == 401
        events = await audit_events(api, "identity:ip_allowlist:refused")
        assert [e["personal"]["ip"] for e in events] == [OUTSIDE_IP, OUTSIDE_IP]
        changes = await audit_events(api, "identity:ip_allowlist:changed")
        assert [e["personal"]["cidrs"] for e in changes] == [["203.0.113.0/24"]]

    @pytest.mark.spec("SESS-4", "ACCT-3", "AUTH-1")
    async def test_a_login_from_outside_the_list_gets_the_generic_failure(self, api: Api) -> None:
        async with api.client() as client, api.client(ip=OUTSIDE_IP) as outside:
            _, totp = await user_with_totp(api, client)
            full = await login_with_totp(api, client, totp)
            await put_allowlist(client, full["access_token"], [f"{CLIENT_IP}/32"])
            right_password = await outside.post(
                "/api/v1/auth/login", json={"login": "alice", "password": PASSWORD}
            )
            wrong_password = await outside.post(
                "/api/v1/auth/login", json={"login": "alice", "password": "not the password"}
            )
        assert right_password.status_code == wrong_password.status_code == 401
        assert comparable(right_password) == comparable(wrong_password)
        assert await audit_events(api, "identity:ip_allowlist:refused")

    @pytest.mark.spec("SESS-4", "ACCT-3")
    async def test_an_ipv6_block_is_honoured(self, api: Api) -> None:
        async with (
            api.client(ip="2001:db8:1::7") as v6,
            api.client(ip="2001:db8:2::9") as same_block,
            api.client() as v4,
        ):
            _, totp = await user_with_totp(api, v4)
            full = await login_with_totp(api, v6, totp)
            changed = await put_allowlist(v6, full["access_token"], ["2001:DB8::/32"])
            from_block = await same_block.get(
                "/api/v1/auth/sessions", headers=bearer(full["access_token"])
            )
            from_v4 = await v4.get("/api/v1/auth/sessions", headers=bearer(full["access_token"]))
            login_v6 = await same_block.post(
                "/api/v1/auth/login", json={"login": "alice", "password": PASSWORD}
            )
            login_v4 = await v4.post(
                "/api/v1/auth/login", json={"login": "alice", "password": PASSWORD}
            )
        assert changed.status_code == 200, changed.text
        assert changed.json() == {"cidrs": ["2001:db8::/32"]}
        assert from_block.status_code == 200
        assert is_problem(from_v4, 403, "forbidden")
        assert login_v6.status_code == 200
        assert login_v4.status_code == 401

    @pytest.mark.spec("SESS-4")
    async def test_clearing_the_list_lets_every_address_in_again(self, api: Api) -> None:
        async with api.client() as client, api.client(ip=OUTSIDE_IP) as outside:
            _, totp = await user_with_totp(api, client)
            full = await login_with_totp(api, client, totp)
            await put_allowlist(client, full["access_token"], [f"{CLIENT_IP}/32"])
            cleared = await put_allowlist(client, full["access_token"], [])
            allowed = await outside.get(
                "/api/v1/auth/sessions", headers=bearer(full["access_token"])
            )
        assert cleared.json() == {"cidrs": []}
        assert allowed.status_code == 200
