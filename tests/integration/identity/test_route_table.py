"""The route table is deny by default (security invariant 1) and problems never echo secrets."""

from __future__ import annotations

import base64
import json
import re

import httpx
import pytest
from fastapi.routing import APIRoute, iter_route_contexts

from tests.support.api import PASSWORD, Api, bearer, enrol_totp, login, register_verified
from tradeguard.web.docs import DOCS_PATHS
from tradeguard.web.route_policy import PUBLIC, route_permissions

# Framework routes that only exist while the development API docs are switched on.
DEV_DOCS = frozenset({"/docs/oauth2-redirect", "/openapi.json", "/redoc", *DOCS_PATHS})
# A route is public only because a caller without a session must reach it; adding one here
# is a security decision to review, not a formality.
PRE_AUTHENTICATION = frozenset(
    {
        "/health/live",
        "/health/ready",
        "/metrics",
        "/.well-known/jwks.json",
        "/api/v1/auth/register",
        "/api/v1/auth/email/verify",
        "/api/v1/auth/email/verify/resend",
        "/api/v1/auth/email/change/confirm",
        "/api/v1/auth/login",
        "/api/v1/auth/mfa/send",
        "/api/v1/auth/mfa/verify",
        "/api/v1/auth/token/refresh",
        "/api/v1/auth/password/reset",
        "/api/v1/auth/password/reset/confirm",
        # A staff member redeems the operator's one-time enrolment token before any account
        # exists (IAC-3); the token and the invited address are their authority.
        "/api/v1/auth/staff-enrolment/options",
        "/api/v1/auth/staff-enrolment/complete",
        # The pages that the emailed links open (web/pages.py); the token is their authority.
        "/verify-email",
        "/confirm-email",
        "/reset-password",
        # The withdrawal email's "this was not me" link (funds, ATO-2): the token is its
        # authority, and a thief holding the session must not be needed to stop a theft.
        "/refuse-withdrawal",
        "/was-this-you",
        # The answer to a "was this you?" email (ATO-2): its single-use token is its only
        # authority, and it must work for an owner locked out of their account.
        "/api/v1/takeover/answers",
        # A secret-scanning partner (GitHub) reports leaked API keys (issue #14): its ECDSA
        # signature over the body, under the configured public key, is its authority.
        "/api/v1/apikeys/leaked",
    }
)
PRE_AUTHENTICATION_PREFIXES = ("/api/v1/auth/webauthn/authenticate/",)
SAMPLE_ID = "0190a3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b"


def concrete(path: str) -> str:
    """The path with every parameter filled with a well-formed id."""
    return re.sub(r"\{[^}]+\}", SAMPLE_ID, path)


def unsigned_token(api: Api, *, alg: str) -> str:
    """A token with our kid and plausible claims but no valid signature."""

    def segment(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    now = api.clock.now_ns() // 10**9
    header = {"alg": alg, "typ": "at+jwt", "kid": api.services.keys.active.kid}
    claims = {
        "iss": "https://localhost:8443",
        "aud": "tradeguard-api",
        "sub": SAMPLE_ID,
        "sid": SAMPLE_ID,
        "role": "ADMIN",
        "permissions": ["admin:users", "admin:config"],
        "amr": ["pwd", "hwk", "mfa"],
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": SAMPLE_ID,
    }
    return f"{segment(header)}.{segment(claims)}."


def protected_routes(api: Api) -> list[tuple[str, str]]:
    return sorted(
        (method, concrete(route.path))
        for route in route_permissions(api.app)
        if route.permission not in {None, PUBLIC}
        for method in route.methods - {"HEAD", "OPTIONS"}
    )


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, (response.request.method, response.request.url)
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == 401


class TestRouteTable:
    @pytest.mark.spec("RBAC-4", "IAC-1")
    async def test_every_route_declares_a_permission_except_the_dev_docs(self, api: Api) -> None:
        routes = route_permissions(api.app)
        undeclared = [r for r in routes if r.permission is None and r.path not in DEV_DOCS]
        assert undeclared == []
        assert len(protected_routes(api)) >= 15

    @pytest.mark.spec("RBAC-4")
    async def test_only_the_routes_used_before_sign_in_are_public(self, api: Api) -> None:
        public = {r.path for r in route_permissions(api.app) if r.permission == PUBLIC}
        unexpected = {
            path
            for path in public - PRE_AUTHENTICATION
            if not path.startswith(PRE_AUTHENTICATION_PREFIXES)
        }
        assert unexpected == set()

    @pytest.mark.spec("RBAC-4", "SESS-1")
    async def test_every_protected_route_refuses_a_request_without_a_token(self, api: Api) -> None:
        async with api.client() as client:
            for method, path in protected_routes(api):
                assert_unauthorized(await client.request(method, path))

    @pytest.mark.spec("RBAC-4", "SESS-1")
    async def test_every_protected_route_refuses_a_garbage_bearer_token(self, api: Api) -> None:
        headers = {**bearer("not.a-real.token"), "content-type": "application/json"}
        async with api.client() as client:
            for method, path in protected_routes(api):
                assert_unauthorized(await client.request(method, path, headers=headers))
                assert_unauthorized(
                    await client.request(method, path, headers={"Authorization": "Basic YTpi"})
                )

    @pytest.mark.spec("RBAC-4", "SESS-1")
    async def test_every_protected_route_refuses_an_unsigned_or_downgraded_token(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            for alg in ("none", "None", "HS256"):
                headers = bearer(unsigned_token(api, alg=alg))
                for method, path in protected_routes(api):
                    response = await client.request(method, path, headers=headers)
                    assert_unauthorized(response)
                    assert response.json()["type"].endswith("/invalid-token")


def visible(response: httpx.Response) -> str:
    """The body without the members the server generates (they are random and may collide)."""
    body = response.json()
    return json.dumps({k: v for k, v in body.items() if k not in {"request_id", "instance"}})


class TestProblemBodies:
    @pytest.mark.spec("AUTH-1")
    async def test_a_failed_login_does_not_echo_the_password(self, api: Api) -> None:
        attempt = "Sup3r-secret-attempt-9431"
        async with api.client() as client:
            await register_verified(api, client)
            wrong = await client.post(
                "/api/v1/auth/login", json={"login": "alice", "password": attempt}
            )
            too_long = await client.post(
                "/api/v1/auth/login", json={"login": "alice", "password": attempt * 60}
            )
        assert wrong.status_code == 401
        assert too_long.status_code == 422
        for response in (wrong, too_long):
            assert attempt not in response.text
            assert PASSWORD not in response.text

    @pytest.mark.spec("AUTH-6")
    async def test_a_refused_second_factor_code_is_not_echoed(self, api: Api) -> None:
        async with api.client() as client:
            await register_verified(api, client)
            access = (await login(client))["access_token"]
            totp = await enrol_totp(api, client, access)
            challenge = await login(client)
            api.clock.advance(seconds=30)
            right = totp.at(api.clock.now_ns() // 10**9)
            wrong = f"{(int(right) + 3) % 10**6:06d}"
            refused = await client.post(
                "/api/v1/auth/mfa/verify",
                json={"ticket": challenge["ticket"], "method": "totp", "code": wrong},
            )
            malformed = await client.post(
                "/api/v1/auth/mfa/verify",
                json={"ticket": challenge["ticket"], "method": "totp", "code": wrong * 6},
            )
            step_up = await client.post(
                "/api/v1/auth/mfa/step-up",
                json={"method": "totp", "code": wrong},
                headers=bearer(access),
            )
        assert refused.status_code == step_up.status_code == 401
        assert malformed.status_code == 422
        for response in (refused, malformed, step_up):
            assert wrong not in visible(response)
            assert challenge["ticket"] not in response.text

    @pytest.mark.spec("SESS-2")
    async def test_a_refused_refresh_token_or_access_token_is_not_echoed(self, api: Api) -> None:
        async with api.client() as client:
            await register_verified(api, client)
            tokens = await login(client)
            first = await client.post(
                "/api/v1/auth/token/refresh", json={"refresh_token": tokens["refresh_token"]}
            )
            api.clock.advance(seconds=60)
            reused = await client.post(
                "/api/v1/auth/token/refresh", json={"refresh_token": tokens["refresh_token"]}
            )
            unknown = await client.post(
                "/api/v1/auth/token/refresh", json={"refresh_token": "x" * 40 + "-unknown-token"}
            )
            dead_access = await client.get(
                "/api/v1/auth/sessions", headers=bearer(first.json()["access_token"])
            )
        assert reused.status_code == unknown.status_code == dead_access.status_code == 401
        for response in (reused, unknown, dead_access):
            assert tokens["refresh_token"] not in response.text
            assert "x" * 40 not in response.text
            assert first.json()["access_token"] not in response.text
            assert first.json()["refresh_token"] not in response.text


class TestDeclarationsAreEnforced:
    @pytest.mark.spec("RBAC-4")
    async def test_every_protected_route_installs_the_check_it_declares(self, api: Api) -> None:
        unenforced = []
        for context in iter_route_contexts(api.app.routes):
            route = context.original_route
            if not isinstance(route, APIRoute):
                continue
            declared = (route.openapi_extra or {}).get("x-permission")
            if declared == PUBLIC:
                continue
            enforced = {
                getattr(d.dependency, "enforced_permission", None) for d in route.dependencies
            }
            if declared not in enforced:
                unenforced.append((context.path, declared))
        assert unenforced == []
