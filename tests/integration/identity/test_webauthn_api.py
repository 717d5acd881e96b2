"""Security keys and passkeys through the HTTP API, with a software authenticator."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.support.api import (
    PASSWORD,
    PROBLEMS,
    Api,
    bearer,
    enrol_totp,
    login,
    login_with_totp,
    prove_email,
    register_verified,
)
from tests.support.webauthn_authenticator import (
    COSE_EDDSA,
    COSE_ES256,
    SoftwareAuthenticator,
    b64url,
)
from tradeguard.access.domain import Role, permissions_for
from tradeguard.identity.webauthn_service import WebAuthnService
from tradeguard.ledger.models import AuditEventRow

BASE = "/api/v1/auth/webauthn"


def origin(api: Api) -> str:
    return api.services.deps.policy.origin


async def events(api: Api, event_type: str | None = None) -> list[dict[str, Any]]:
    async with api.services.unit_of_work() as session:
        rows = (await session.execute(select(AuditEventRow).order_by(AuditEventRow.pk))).scalars()
        bodies = [json.loads(row.body) for row in rows]
    return [b for b in bodies if event_type is None or b["type"] == event_type]


async def password_session(api: Api, client: httpx.AsyncClient, username: str = "alice") -> str:
    """A fresh account's first, password-only session (it may add its first factor)."""
    await register_verified(api, client, username)
    access = str((await login(client, username))["access_token"])
    await prove_email(api, client, access)
    return access


async def registration_options(
    client: httpx.AsyncClient, access: str, *, passkey: bool, label: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"passkey": passkey}
    if label is not None:
        body["label"] = label
    response = await client.post(f"{BASE}/register/options", json=body, headers=bearer(access))
    assert response.status_code == 200, response.text
    options: dict[str, Any] = response.json()
    return options


async def verify_registration(
    client: httpx.AsyncClient, access: str, ticket: str, credential: str
) -> httpx.Response:
    return await client.post(
        f"{BASE}/register/verify",
        json={"ticket": ticket, "credential": json.loads(credential)},
        headers=bearer(access),
    )


async def register_authenticator(
    api: Api,
    client: httpx.AsyncClient,
    access: str,
    authenticator: SoftwareAuthenticator,
    *,
    passkey: bool,
) -> dict[str, Any]:
    started = await registration_options(client, access, passkey=passkey)
    credential = authenticator.create(json.dumps(started["options"]), origin(api))
    response = await verify_registration(client, access, started["ticket"], credential)
    assert response.status_code == 201, response.text
    registered: dict[str, Any] = response.json()
    return registered


async def mfa_options(client: httpx.AsyncClient, ticket: str) -> dict[str, Any]:
    response = await client.post(f"{BASE}/authenticate/options", json={"ticket": ticket})
    assert response.status_code == 200, response.text
    options: dict[str, Any] = response.json()["options"]
    return options


async def verify_mfa(client: httpx.AsyncClient, ticket: str, assertion: str) -> httpx.Response:
    return await client.post(
        "/api/v1/auth/mfa/verify",
        json={"ticket": ticket, "method": "webauthn", "assertion": json.loads(assertion)},
    )


async def login_with_key(
    api: Api,
    client: httpx.AsyncClient,
    authenticator: SoftwareAuthenticator,
    username: str = "alice",
) -> httpx.Response:
    first = await login(client, username)
    assert first["status"] == "mfa_required", first
    assert "webauthn" in first["methods"]
    options = await mfa_options(client, first["ticket"])
    return await verify_mfa(
        client, first["ticket"], authenticator.get(json.dumps(options), origin(api))
    )


async def passkey_options(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.post(f"{BASE}/authenticate/options", json={})
    assert response.status_code == 200, response.text
    started: dict[str, Any] = response.json()
    return started


async def verify_passkey(
    client: httpx.AsyncClient, ticket: str, assertion: str, **extra: Any
) -> httpx.Response:
    return await client.post(
        f"{BASE}/authenticate/verify",
        json={"ticket": ticket, "credential": json.loads(assertion), **extra},
    )


async def login_with_passkey(
    api: Api, client: httpx.AsyncClient, authenticator: SoftwareAuthenticator
) -> httpx.Response:
    started = await passkey_options(client)
    assertion = authenticator.get(json.dumps(started["options"]), origin(api))
    return await verify_passkey(client, started["ticket"], assertion)


async def session_with_fresh_key(
    api: Api, client: httpx.AsyncClient, key: SoftwareAuthenticator, username: str = "alice"
) -> str:
    """An account with `key` as its first factor, and a session that just used it."""
    access = await password_session(api, client, username)
    await register_authenticator(api, client, access, key, passkey=False)
    response = await login_with_key(api, client, key, username)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def assert_problem(response: httpx.Response, status: int, slug: str, *secrets: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"] == PROBLEMS + slug
    for secret in secrets:
        assert secret not in response.text


class TestRegistration:
    @pytest.mark.spec("AUTH-3", "ACCT-1")
    async def test_security_key_is_registered_as_first_factor_audited_and_emailed(
        self, api: Api
    ) -> None:
        key = SoftwareAuthenticator(algorithm=COSE_ES256)
        async with api.client() as client:
            access = await password_session(api, client)
            started = await registration_options(client, access, passkey=False, label="Blue key")
            selection = started["options"]["authenticatorSelection"]
            credential = key.create(json.dumps(started["options"]), origin(api))
            response = await verify_registration(client, access, started["ticket"], credential)
            factors = (await client.get("/api/v1/auth/mfa", headers=bearer(access))).json()

        assert response.status_code == 201, response.text
        assert response.json()["passkey"] is False
        assert selection["residentKey"] == "discouraged"
        assert started["options"]["rp"]["id"] == api.services.deps.policy.rp_id
        assert [(f["kind"], f["label"], f["status"]) for f in factors] == [
            ("webauthn", "Blue key", "active")
        ]
        confirmed = await events(api, "identity:factor:confirmed")
        assert confirmed[-1]["data"]["kind"] == "webauthn"
        assert confirmed[-1]["data"]["passkey"] is False
        assert [m["template"] for m in await api.outbox(to="alice@example.com")][-1] == (
            "factor_changed"
        )

    @pytest.mark.spec("AUTH-2", "ACCT-1")
    async def test_passkey_needs_a_resident_key_and_user_verification_and_skips_known_keys(
        self, api: Api
    ) -> None:
        key = SoftwareAuthenticator(algorithm=COSE_ES256)
        passkey = SoftwareAuthenticator(algorithm=COSE_EDDSA, transports=("internal",))
        async with api.client() as client:
            access = await session_with_fresh_key(api, client, key)
            started = await registration_options(client, access, passkey=True)
            credential = passkey.create(json.dumps(started["options"]), origin(api))
            response = await verify_registration(client, access, started["ticket"], credential)

        options = started["options"]
        assert options["authenticatorSelection"]["residentKey"] == "required"
        assert options["authenticatorSelection"]["userVerification"] == "required"
        assert [c["id"] for c in options["excludeCredentials"]] == [b64url(key.credential_id)]
        assert response.status_code == 201, response.text
        assert response.json()["passkey"] is True
        assert response.json()["label"] == "Passkey"

    @pytest.mark.spec("AUTH-2", "AUTH-3")
    @pytest.mark.parametrize("attack", ["wrong_origin", "wrong_rp_id", "other_challenge"])
    async def test_responses_bound_to_another_origin_rp_or_challenge_are_refused(
        self, api: Api, attack: str
    ) -> None:
        key = SoftwareAuthenticator()
        async with api.client() as client:
            access = await password_session(api, client)
            first = await registration_options(client, access, passkey=False)
            second = await registration_options(client, access, passkey=False)
            answered, sent = first, first
            if attack == "wrong_origin":
                credential = key.create(json.dumps(answered["options"]), "https://evil.example")
            elif attack == "wrong_rp_id":
                credential = key.create(
                    json.dumps(answered["options"]), origin(api), rp_id="evil.example"
                )
            else:
                sent = second
                credential = key.create(json.dumps(answered["options"]), origin(api))
            response = await verify_registration(client, access, sent["ticket"], credential)
            factors = (await client.get("/api/v1/auth/mfa", headers=bearer(access))).json()

        assert_problem(
            response,
            422,
            "webauthn-registration-rejected",
            first["options"]["challenge"],
            b64url(key.credential_id),
        )
        assert factors == []
        refused = await events(api, "identity:mfa:failed")
        assert refused[-1]["data"]["reason"] == "REGISTRATION_REJECTED"

    @pytest.mark.spec("AUTH-3")
    async def test_a_replayed_registration_response_is_refused(self, api: Api) -> None:
        key = SoftwareAuthenticator()
        async with api.client() as client:
            access = await password_session(api, client)
            started = await registration_options(client, access, passkey=False)
            credential = key.create(json.dumps(started["options"]), origin(api))
            first = await verify_registration(client, access, started["ticket"], credential)
            replay = await verify_registration(client, access, started["ticket"], credential)

        assert first.status_code == 201
        assert_problem(replay, 422, "webauthn-registration-rejected", started["ticket"])

    @pytest.mark.spec("AUTH-3")
    async def test_a_failed_verification_spends_the_challenge(self, api: Api) -> None:
        key = SoftwareAuthenticator()
        async with api.client() as client:
            access = await password_session(api, client)
            started = await registration_options(client, access, passkey=False)
            options = json.dumps(started["options"])
            wrong = await verify_registration(
                client, access, started["ticket"], key.create(options, "https://evil.example")
            )
            retry = await verify_registration(
                client, access, started["ticket"], key.create(options, origin(api))
            )

        assert wrong.status_code == 422
        assert_problem(retry, 422, "webauthn-registration-rejected")
        reasons = [e["data"]["reason"] for e in await events(api, "identity:mfa:failed")]
        assert reasons == ["REGISTRATION_REJECTED", "INVALID_TICKET"]

    @pytest.mark.spec("AUTH-2")
    async def test_a_passkey_that_does_not_verify_the_user_is_refused(self, api: Api) -> None:
        no_uv = SoftwareAuthenticator(user_verified=False)
        async with api.client() as client:
            access = await password_session(api, client)
            started = await registration_options(client, access, passkey=True)
            credential = no_uv.create(json.dumps(started["options"]), origin(api))
            response = await verify_registration(client, access, started["ticket"], credential)

        assert_problem(response, 422, "webauthn-registration-rejected")

    @pytest.mark.spec("ACCT-1")
    async def test_adding_a_key_when_a_factor_exists_needs_a_fresh_second_factor(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            access = await password_session(api, client)
            await enrol_totp(api, client, access)
            response = await client.post(
                f"{BASE}/register/options", json={"passkey": False}, headers=bearer(access)
            )

        assert_problem(response, 403, "step-up-required")

    @pytest.mark.spec("ACCT-1")
    async def test_a_registration_ticket_works_only_in_the_session_that_stepped_up(
        self, api: Api
    ) -> None:
        key = SoftwareAuthenticator()
        async with api.client() as client:
            access = await password_session(api, client)
            other = str((await login(client))["access_token"])
            started = await registration_options(client, access, passkey=False)
            credential = key.create(json.dumps(started["options"]), origin(api))
            response = await verify_registration(client, other, started["ticket"], credential)

        assert_problem(response, 422, "webauthn-registration-rejected")

    @pytest.mark.spec("AUTH-3")
    async def test_a_model_outside_the_aaguid_allow_list_is_refused(self, api: Api) -> None:
        approved = uuid.uuid4()
        services = api.services
        api.app.state.webauthn = WebAuthnService(
            services.deps,
            auth=services.auth,
            factors=services.factors,
            allowed_aaguids=[str(approved)],
        )
        async with api.client() as client:
            access = await password_session(api, client)
            started = await registration_options(client, access, passkey=False)
            unknown = SoftwareAuthenticator(aaguid=uuid.uuid4().bytes)
            refused = await verify_registration(
                client,
                access,
                started["ticket"],
                unknown.create(json.dumps(started["options"]), origin(api)),
            )
            started = await registration_options(client, access, passkey=False)
            accepted = await verify_registration(
                client,
                access,
                started["ticket"],
                SoftwareAuthenticator(aaguid=approved.bytes).create(
                    json.dumps(started["options"]), origin(api)
                ),
            )

        assert_problem(refused, 403, "authenticator-not-allowed")
        assert accepted.status_code == 201, accepted.text

    @pytest.mark.parametrize(
        "body",
        [
            {"passkey": "yes"},
            {"passkey": False, "label": "a\nb"},
            {"passkey": False, "label": "x" * 65},
            {"passkey": False, "extra": 1},
        ],
    )
    async def test_malformed_option_requests_get_problem_json(
        self, api: Api, body: dict[str, Any]
    ) -> None:
        async with api.client() as client:
            access = await password_session(api, client)
            response = await client.post(
                f"{BASE}/register/options", json=body, headers=bearer(access)
            )

        assert response.status_code == 422
        assert response.headers["content-type"].startswith("application/problem+json")

    async def test_registration_needs_a_session(self, api: Api) -> None:
        async with api.client() as client:
            response = await client.post(f"{BASE}/register/options", json={"passkey": True})

        assert_problem(response, 401, "unauthorized")


class TestSecondFactor:
    @pytest.mark.spec("AUTH-3")
    @pytest.mark.parametrize("algorithm", [COSE_ES256, COSE_EDDSA], ids=["ES256", "Ed25519"])
    async def test_password_then_security_key_gives_a_hardware_backed_session(
        self, api: Api, algorithm: int
    ) -> None:
        key = SoftwareAuthenticator(algorithm=algorithm)
        async with api.client() as client:
            access = await password_session(api, client)
            await register_authenticator(api, client, access, key, passkey=False)
            first = await login(client)
            options = await mfa_options(client, first["ticket"])
            response = await verify_mfa(
                client, first["ticket"], key.get(json.dumps(options), origin(api))
            )

        assert options["allowCredentials"] == [
            {"id": b64url(key.credential_id), "type": "public-key"}
        ]
        assert options["userVerification"] == "preferred"
        assert response.status_code == 200, response.text
        claims = api.services.verifier.verify(response.json()["access_token"])
        assert claims.amr == ("pwd", "hwk", "mfa")
        assert "order:place" in claims.permissions
        verified = await events(api, "identity:mfa:verified")
        assert verified[-1]["data"]["method"] == "webauthn"

    @pytest.mark.spec("AUTH-3")
    async def test_a_replayed_assertion_is_refused(self, api: Api) -> None:
        key = SoftwareAuthenticator()
        async with api.client() as client:
            access = await password_session(api, client)
            await register_authenticator(api, client, access, key, passkey=False)
            first = await login(client)
            options = await mfa_options(client, first["ticket"])
            assertion = key.get(json.dumps(options), origin(api))
            accepted = await verify_mfa(client, first["ticket"], assertion)
            replayed = await verify_mfa(client, first["ticket"], assertion)
            second = await login(client)
            await mfa_options(client, second["ticket"])
            replayed_elsewhere = await verify_mfa(client, second["ticket"], assertion)

        assert accepted.status_code == 200
        assert_problem(replayed, 401, "unauthorized")
        assert_problem(replayed_elsewhere, 401, "unauthorized", options["challenge"])

    @pytest.mark.spec("AUTH-3")
    async def test_only_the_latest_challenge_of_a_ticket_can_be_answered(self, api: Api) -> None:
        key = SoftwareAuthenticator()
        async with api.client() as client:
            access = await password_session(api, client)
            await register_authenticator(api, client, access, key, passkey=False)
            first = await login(client)
            stale = await mfa_options(client, first["ticket"])
            await mfa_options(client, first["ticket"])
            response = await verify_mfa(
                client, first["ticket"], key.get(json.dumps(stale), origin(api))
            )

        assert_problem(response, 401, "unauthorized")
        failed = await events(api, "identity:mfa:failed")
        assert failed[-1]["data"]["method"] == "webauthn"

    @pytest.mark.spec("AUTH-3")
    @pytest.mark.parametrize("attack", ["wrong_origin", "wrong_rp_id"])
    async def test_assertions_for_another_origin_or_rp_are_refused(
        self, api: Api, attack: str
    ) -> None:
        key = SoftwareAuthenticator()
        async with api.client() as client:
            access = await password_session(api, client)
            await register_authenticator(api, client, access, key, passkey=False)
            first = await login(client)
            options = json.dumps(await mfa_options(client, first["ticket"]))
            assertion = (
                key.get(options, "https://evil.example")
                if attack == "wrong_origin"
                else key.get(options, origin(api), rp_id="evil.example")
            )
            response = await verify_mfa(client, first["ticket"], assertion)

        assert_problem(response, 401, "unauthorized")

    @pytest.mark.spec("AUTH-3")
    async def test_a_cloned_key_is_refused_audited_and_the_original_still_works(
        self, api: Api
    ) -> None:
        key = SoftwareAuthenticator()
        async with api.client() as client:
            access = await password_session(api, client)
            await register_authenticator(api, client, access, key, passkey=False)
            clone = key.clone()
            assert (await login_with_key(api, client, key)).status_code == 200
            cloned = await login_with_key(api, client, clone)
            original = await login_with_key(api, client, key)

        assert_problem(cloned, 401, "unauthorized")
        suspected = await events(api, "identity:factor:clone_suspected")
        assert len(suspected) == 1
        assert original.status_code == 200, original.text
        mails = await api.outbox(to="alice@example.com")
        assert "factor_clone_suspected" in [m["template"] for m in mails]

    @pytest.mark.spec("AUTH-3")
    async def test_options_need_a_live_ticket_and_an_enrolled_key(self, api: Api) -> None:
        async with api.client() as client:
            access = await password_session(api, client)
            await enrol_totp(api, client, access)
            first = await login(client)
            without_key = await client.post(
                f"{BASE}/authenticate/options", json={"ticket": first["ticket"]}
            )
            bogus = await client.post(f"{BASE}/authenticate/options", json={"ticket": "x" * 43})

        assert_problem(without_key, 401, "unauthorized", first["ticket"])
        assert_problem(bogus, 401, "unauthorized")

    @pytest.mark.spec("IAC-3")
    async def test_staff_get_permissions_only_after_a_hardware_key(self, api: Api) -> None:
        key = SoftwareAuthenticator()
        async with api.services.unit_of_work() as session:
            await api.services.accounts.create_user(
                session,
                username="root",
                email="root@example.com",
                password=PASSWORD,
                role=Role.ADMIN,
                email_verified=True,
            )
        async with api.client() as client:
            access = str((await login(client, "root"))["access_token"])
            totp = await enrol_totp(api, client, access)
            with_totp = await login_with_totp(api, client, totp, "root")
            await register_authenticator(api, client, with_totp["access_token"], key, passkey=False)
            with_key = await login_with_key(api, client, key, "root")

        assert api.services.verifier.verify(access).permissions == ()
        assert api.services.verifier.verify(with_totp["access_token"]).permissions == ()
        assert with_key.status_code == 200, with_key.text
        claims = api.services.verifier.verify(with_key.json()["access_token"])
        assert "hwk" in claims.amr
        assert list(claims.permissions) == permissions_for(Role.ADMIN)


class TestPasskeyLogin:
    @pytest.mark.spec("AUTH-2")
    async def test_a_passkey_alone_is_a_multi_factor_login_that_authorizes_the_device(
        self, api: Api
    ) -> None:
        key = SoftwareAuthenticator()
        passkey = SoftwareAuthenticator(algorithm=COSE_EDDSA)
        async with api.client() as client:
            access = await session_with_fresh_key(api, client, key)
            await register_authenticator(api, client, access, passkey, passkey=True)
            started = await passkey_options(client)
            assertion = passkey.get(json.dumps(started["options"]), origin(api))
            response = await verify_passkey(
                client, started["ticket"], assertion, device={"platform": "ios"}
            )
            tokens = response.json()
            headers = bearer(tokens["access_token"])
            devices = (await client.get("/api/v1/auth/devices", headers=headers)).json()
            sessions = (await client.get("/api/v1/auth/sessions", headers=headers)).json()

        assert started["options"]["allowCredentials"] == []
        assert started["options"]["userVerification"] == "required"
        assert response.status_code == 200, response.text
        claims = api.services.verifier.verify(tokens["access_token"])
        assert claims.amr == ("hwk", "user", "mfa")
        assert "order:place" in claims.permissions
        assert tokens["device_token"]
        device_id = next(x["device_id"] for x in sessions if x["current"])
        assert next(d["authorized"] for d in devices if d["id"] == device_id) is True
        succeeded = await events(api, "identity:login:succeeded")
        assert succeeded[-1]["data"]["method"] == "passkey"

    @pytest.mark.spec("AUTH-2", "IAC-3")
    async def test_staff_passkey_login_carries_full_permissions(self, api: Api) -> None:
        passkey = SoftwareAuthenticator(algorithm=COSE_EDDSA)
        async with api.services.unit_of_work() as session:
            await api.services.accounts.create_user(
                session,
                username="auditor",
                email="auditor@example.com",
                password=PASSWORD,
                role=Role.COMPLIANCE,
                email_verified=True,
            )
        async with api.client() as client:
            access = str((await login(client, "auditor"))["access_token"])
            await prove_email(api, client, access)
            await register_authenticator(api, client, access, passkey, passkey=True)
            response = await login_with_passkey(api, client, passkey)

        assert response.status_code == 200, response.text
        claims = api.services.verifier.verify(response.json()["access_token"])
        assert list(claims.permissions) == permissions_for(Role.COMPLIANCE)

    @pytest.mark.spec("AUTH-2")
    async def test_a_passkey_that_skips_user_verification_is_refused(self, api: Api) -> None:
        passkey = SoftwareAuthenticator(algorithm=COSE_EDDSA)
        async with api.client() as client:
            access = await password_session(api, client)
            await register_authenticator(api, client, access, passkey, passkey=True)
            passkey.user_verified = False
            response = await login_with_passkey(api, client, passkey)

        assert_problem(response, 401, "webauthn-authentication-rejected")
        failed = await events(api, "identity:login:failed")
        assert failed[-1]["data"]["reason"] == "ASSERTION_REJECTED"

    @pytest.mark.spec("AUTH-2", "AUTH-3")
    async def test_a_security_key_registered_as_second_factor_is_not_a_login(
        self, api: Api
    ) -> None:
        key = SoftwareAuthenticator()
        async with api.client() as client:
            access = await password_session(api, client)
            await register_authenticator(api, client, access, key, passkey=False)
            response = await login_with_passkey(api, client, key)

        assert_problem(response, 401, "webauthn-authentication-rejected")
        failed = await events(api, "identity:login:failed")
        assert failed[-1]["data"]["reason"] == "NOT_A_PASSKEY"

    @pytest.mark.spec("AUTH-2")
    async def test_a_cloned_passkey_is_refused_audited_and_the_original_still_works(
        self, api: Api
    ) -> None:
        passkey = SoftwareAuthenticator(algorithm=COSE_EDDSA)
        async with api.client() as client:
            access = await password_session(api, client)
            await register_authenticator(api, client, access, passkey, passkey=True)
            clone = passkey.clone()
            assert (await login_with_passkey(api, client, passkey)).status_code == 200
            cloned = await login_with_passkey(api, client, clone)
            original = await login_with_passkey(api, client, passkey)

        assert_problem(cloned, 401, "webauthn-authentication-rejected")
        suspected = await events(api, "identity:factor:clone_suspected")
        assert [e["data"]["stored_sign_count"] for e in suspected] == [1]
        sessions = [e["data"]["amr"] for e in await events(api, "identity:session:created")]
        assert sessions.count(["hwk", "user", "mfa"]) == 2
        assert original.status_code == 200, original.text

    @pytest.mark.spec("AUTH-2")
    async def test_a_replayed_or_mismatched_assertion_is_refused(self, api: Api) -> None:
        passkey = SoftwareAuthenticator(algorithm=COSE_EDDSA)
        async with api.client() as client:
            access = await password_session(api, client)
            await register_authenticator(api, client, access, passkey, passkey=True)
            first = await passkey_options(client)
            second = await passkey_options(client)
            assertion = passkey.get(json.dumps(first["options"]), origin(api))
            mismatched = await verify_passkey(client, second["ticket"], assertion)
            accepted = await verify_passkey(client, first["ticket"], assertion)
            replayed = await verify_passkey(client, first["ticket"], assertion)

        assert_problem(mismatched, 401, "webauthn-authentication-rejected")
        assert accepted.status_code == 200, accepted.text
        assert_problem(replayed, 401, "unauthorized", first["options"]["challenge"])

    @pytest.mark.spec("AUTH-2")
    async def test_a_user_handle_naming_another_account_is_refused(self, api: Api) -> None:
        passkey = SoftwareAuthenticator(algorithm=COSE_EDDSA)
        async with api.client() as client:
            access = await password_session(api, client)
            await register_authenticator(api, client, access, passkey, passkey=True)
            passkey.user_handle = b"someone-else"
            response = await login_with_passkey(api, client, passkey)

        assert_problem(response, 401, "webauthn-authentication-rejected")
        failed = await events(api, "identity:login:failed")
        assert failed[-1]["data"]["reason"] == "USER_HANDLE_MISMATCH"

    @pytest.mark.spec("AUTH-2")
    async def test_an_unknown_or_malformed_credential_is_refused_without_echo(
        self, api: Api
    ) -> None:
        stranger = SoftwareAuthenticator()
        async with api.client() as client:
            started = await passkey_options(client)
            unknown = await verify_passkey(
                client,
                started["ticket"],
                stranger.get(json.dumps(started["options"]), origin(api)),
            )
            started = await passkey_options(client)
            malformed = await verify_passkey(
                client, started["ticket"], json.dumps({"id": "zz", "rawId": "not base64 !"})
            )

        assert_problem(
            unknown, 401, "webauthn-authentication-rejected", b64url(stranger.credential_id)
        )
        assert_problem(malformed, 401, "webauthn-authentication-rejected", "not base64")
        reasons = [e["data"]["reason"] for e in await events(api, "identity:login:failed")]
        assert reasons == ["UNKNOWN_CREDENTIAL", "ASSERTION_REJECTED"]
