"""Staff authentication (IAC-3) through the HTTP API: attested security keys, enrolment by
one-time token, WebAuthn step-up and the staff inactivity limit."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from tests.integration.identity.test_webauthn_api import (
    assert_problem,
    events,
    login_with_key,
    login_with_passkey,
    mfa_options,
    origin,
    password_session,
    register_authenticator,
    registration_options,
    session_with_fresh_key,
    verify_registration,
)
from tests.support.api import PASSWORD, Api, bearer, login, prove_email, running_api
from tests.support.webauthn_authenticator import (
    COSE_EDDSA,
    TEST_AAGUID,
    AttestationCA,
    SoftwareAuthenticator,
    metadata_document,
    metadata_entry,
    shared_attestation_ca,
)
from tradeguard.access.domain import Role, permissions_for
from tradeguard.cli.main import app as cli_app
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock, SystemClock
from tradeguard.db.engine import create_engine
from tradeguard.identity.models import AuthTicket, User
from tradeguard.identity.staff_enrolment import ENROLMENT_TICKET, StaffEnrolmentService
from tradeguard.ledger.domain import Party
from tradeguard.ledger.models import AuditEventRow
from tradeguard.notify.models import OutboxMessage

ENROL = "/api/v1/auth/staff-enrolment"
STEP_UP_OPTIONS = "/api/v1/auth/webauthn/step-up/options"
STEP_UP = "/api/v1/auth/mfa/step-up"
ADA = "ada@example.com"


# Helpers ----------------------------------------------------------------------------------


async def create_staff(api: Api, username: str = "ada", role: Role = Role.ADMIN) -> None:
    """A staff account made by the service directly (as the demo seed does), no factor yet."""
    async with api.services.unit_of_work() as session:
        await api.services.accounts.create_user(
            session,
            username=username,
            email=f"{username}@example.com",
            password=PASSWORD,
            role=role,
            email_verified=True,
        )


async def staff_key_registration(
    api: Api, client: httpx.AsyncClient, key: SoftwareAuthenticator
) -> tuple[dict[str, Any], httpx.Response]:
    """A staff member's first key through the ordinary registration routes."""
    access = str((await login(client, "ada"))["access_token"])
    await prove_email(api, client, access)
    started = await registration_options(client, access, passkey=False)
    credential = key.create(json.dumps(started["options"]), origin(api))
    return started, await verify_registration(client, access, started["ticket"], credential)


async def invite(api: Api, email: str = ADA, role: Role = Role.ADMIN) -> str:
    service: StaffEnrolmentService = api.app.state.staff_enrolment
    async with api.services.unit_of_work() as session:
        invitation = await service.invite(
            session, email=email, role=role, actor=Party("operator", "test")
        )
    return invitation.token


async def enrolment_options(
    client: httpx.AsyncClient, token: str, email: str = ADA, **extra: Any
) -> httpx.Response:
    return await client.post(f"{ENROL}/options", json={"token": token, "email": email, **extra})


async def complete(
    client: httpx.AsyncClient,
    token: str,
    credential: str,
    *,
    email: str = ADA,
    username: str = "ada",
    password: str = PASSWORD,
) -> httpx.Response:
    return await client.post(
        f"{ENROL}/complete",
        json={
            "token": token,
            "email": email,
            "username": username,
            "password": password,
            "credential": json.loads(credential),
        },
    )


async def enrol(
    api: Api,
    client: httpx.AsyncClient,
    token: str,
    key: SoftwareAuthenticator,
    *,
    email: str = ADA,
    username: str = "ada",
    password: str = PASSWORD,
) -> httpx.Response:
    options = await enrolment_options(client, token, email)
    assert options.status_code == 200, options.text
    credential = key.create(json.dumps(options.json()["options"]), origin(api))
    return await complete(
        client, token, credential, email=email, username=username, password=password
    )


async def enrolled_staff(
    api: Api, client: httpx.AsyncClient, key: SoftwareAuthenticator, role: Role = Role.ADMIN
) -> str:
    """An enrolled staff member signed in with password and key: the access token."""
    done = await enrol(api, client, await invite(api, role=role), key)
    assert done.status_code == 201, done.text
    signed_in = await login_with_key(api, client, key, "ada")
    assert signed_in.status_code == 200, signed_in.text
    return str(signed_in.json()["access_token"])


async def users_with_email(api: Api, email: str) -> int:
    async with api.services.unit_of_work() as session:
        return len((await session.execute(select(User).where(User.email == email))).all())


async def step_up_options(client: httpx.AsyncClient, access: str) -> dict[str, Any]:
    response = await client.post(STEP_UP_OPTIONS, headers=bearer(access))
    assert response.status_code == 200, response.text
    started: dict[str, Any] = response.json()
    return started


async def step_up_with(
    client: httpx.AsyncClient, access: str, ticket: str, assertion: str
) -> httpx.Response:
    return await client.post(
        STEP_UP,
        json={"method": "webauthn", "ticket": ticket, "assertion": json.loads(assertion)},
        headers=bearer(access),
    )


async def step_up_by_key(
    api: Api, client: httpx.AsyncClient, access: str, key: SoftwareAuthenticator
) -> httpx.Response:
    started = await step_up_options(client, access)
    assertion = key.get(json.dumps(started["options"]), origin(api))
    return await step_up_with(client, access, started["ticket"], assertion)


async def gated_action(client: httpx.AsyncClient, access: str) -> httpx.Response:
    """Adding a factor needs a second factor proven within the step-up window."""
    return await client.post(
        "/api/v1/auth/webauthn/register/options", json={"passkey": False}, headers=bearer(access)
    )


def past_step_up_window(api: Api) -> None:
    api.clock.advance(seconds=api.services.deps.policy.step_up_seconds + 1)


# Attested registration --------------------------------------------------------------------


@pytest.mark.spec("IAC-3")
class TestStaffAuthenticatorRegistration:
    async def test_staff_options_ask_for_attestation_and_an_attested_key_is_registered(
        self, api: Api
    ) -> None:
        await create_staff(api)
        async with api.client() as client:
            trader = await password_session(api, client, "tom")
            trader_options = await registration_options(client, trader, passkey=False)
            started, response = await staff_key_registration(api, client, SoftwareAuthenticator())
            signed_in = await login_with_key(api, client, SoftwareAuthenticator(), "ada")

        assert trader_options["options"]["attestation"] == "none"
        assert started["options"]["attestation"] == "direct"
        assert response.status_code == 201, response.text
        confirmed = await events(api, "identity:factor:confirmed")
        assert confirmed[-1]["data"]["attested"] is True
        assert confirmed[-1]["data"]["aaguid"] == str(uuid.UUID(bytes=TEST_AAGUID))
        # Another key of the same model is not this account's key.
        assert signed_in.status_code == 401

    @pytest.mark.parametrize(
        ("key", "reason"),
        [
            (lambda: SoftwareAuthenticator(aaguid=uuid.uuid4().bytes), "UNKNOWN_MODEL"),
            (lambda: SoftwareAuthenticator(attestation="self"), "NOT_ATTESTED"),
            (lambda: SoftwareAuthenticator(attestation="none"), "NOT_ATTESTED"),
            (
                lambda: SoftwareAuthenticator(attestation_ca=AttestationCA(name="Unlisted Root")),
                "UNTRUSTED_CHAIN",
            ),
            (
                lambda: SoftwareAuthenticator(certified_aaguid=uuid.uuid4().bytes),
                "BAD_CERTIFICATE",
            ),
        ],
        ids=["other-model", "self-attestation", "none", "unlisted-root", "cert-for-other-model"],
    )
    async def test_a_key_that_does_not_prove_an_allowed_model_is_refused_and_audited(
        self, api: Api, key: Any, reason: str
    ) -> None:
        await create_staff(api)
        async with api.client() as client:
            _, response = await staff_key_registration(api, client, key())
            factors = await client.get(
                "/api/v1/auth/mfa",
                headers=bearer(str((await login(client, "ada"))["access_token"])),
            )

        assert_problem(response, 403, "authenticator-not-allowed")
        assert factors.json() == []
        failed = await events(api, "identity:mfa:failed")
        assert failed[-1]["data"]["attestation"] == reason
        assert failed[-1]["data"]["reason"] == "AUTHENTICATOR_NOT_ALLOWED"

    async def test_an_operator_revoking_a_model_in_the_file_takes_effect_without_restart(
        self, api: Api, settings: Settings
    ) -> None:
        assert settings.webauthn_staff_metadata_file is not None
        settings.webauthn_staff_metadata_file.write_text(
            metadata_document(
                metadata_entry(
                    TEST_AAGUID,
                    shared_attestation_ca(),
                    statuses=("FIDO_CERTIFIED_L1", "ATTESTATION_KEY_COMPROMISE"),
                )
            )
        )
        await create_staff(api)
        async with api.client() as client:
            _, response = await staff_key_registration(api, client, SoftwareAuthenticator())

        assert_problem(response, 403, "authenticator-not-allowed")
        assert (await events(api, "identity:mfa:failed"))[-1]["data"]["attestation"] == (
            "REVOKED_MODEL"
        )

    async def test_a_broken_update_of_the_file_keeps_the_previous_catalogue(
        self, api: Api, settings: Settings
    ) -> None:
        assert settings.webauthn_staff_metadata_file is not None
        settings.webauthn_staff_metadata_file.write_text('{"entries": [{"aaguid": "x"}]}')
        await create_staff(api)
        async with api.client() as client:
            _, response = await staff_key_registration(api, client, SoftwareAuthenticator())

        assert response.status_code == 201, response.text

    async def test_a_trader_promoted_to_staff_needs_an_attested_key_to_add_one(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            access = await password_session(api, client, "tom")
            started = await registration_options(client, access, passkey=False)
            async with api.services.unit_of_work() as session:
                user = (
                    await session.execute(select(User).where(User.username == "tom"))
                ).scalar_one()
                user.role = Role.SUPPORT.value
            credential = SoftwareAuthenticator().create(json.dumps(started["options"]), origin(api))
            response = await verify_registration(client, access, started["ticket"], credential)

        # Options issued while a trader asked for "none"; the key answered accordingly.
        assert_problem(response, 403, "authenticator-not-allowed")


# Enrolment by one-time token --------------------------------------------------------------


@pytest.mark.spec("IAC-3")
class TestStaffEnrolment:
    async def test_an_invited_staff_member_sets_a_password_and_key_in_one_flow(
        self, api: Api
    ) -> None:
        key = SoftwareAuthenticator()
        async with api.client() as client:
            token = await invite(api, role=Role.COMPLIANCE)
            options = await enrolment_options(client, token)
            credential = key.create(json.dumps(options.json()["options"]), origin(api))
            done = await complete(client, token, credential)
            first = await login(client, "ada")
            ticket = first["ticket"]
            assertion = key.get(json.dumps(await mfa_options(client, ticket)), origin(api))
            signed_in = await client.post(
                "/api/v1/auth/mfa/verify",
                json={"ticket": ticket, "method": "webauthn", "assertion": json.loads(assertion)},
            )

        assert options.json()["options"]["attestation"] == "direct"
        assert done.status_code == 201, done.text
        assert done.json()["role"] == "COMPLIANCE"
        assert first["methods"] == ["webauthn"]
        claims = api.services.verifier.verify(signed_in.json()["access_token"])
        assert claims.subject == done.json()["user_id"]
        assert list(claims.permissions) == permissions_for(Role.COMPLIANCE)
        enrolled = await events(api, "identity:staff:enrolled")
        assert enrolled[-1]["data"]["factor_id"] == done.json()["factor_id"]
        assert (await events(api, "identity:staff:invited"))[-1]["data"]["role"] == "COMPLIANCE"
        assert "staff_enrolled" in [m["template"] for m in await api.outbox(to=ADA)]

    async def test_the_token_works_once(self, api: Api) -> None:
        async with api.client() as client:
            token = await invite(api)
            first = await enrol(api, client, token, SoftwareAuthenticator())
            again = await enrolment_options(client, token)

        assert first.status_code == 201, first.text
        assert_problem(again, 401, "unauthorized", token)

    async def test_the_token_expires(self, api: Api, settings: Settings) -> None:
        async with api.client() as client:
            token = await invite(api)
            api.clock.advance(seconds=settings.staff_enrolment_seconds + 1)
            response = await enrolment_options(client, token)

        assert_problem(response, 401, "unauthorized")

    async def test_a_wrong_token_is_refused_and_audited(self, api: Api) -> None:
        async with api.client() as client:
            await invite(api)
            response = await enrolment_options(client, "x" * 43)

        assert_problem(response, 401, "unauthorized")
        refused = await events(api, "identity:staff:enrolment_refused")
        assert refused[-1]["data"]["reason"] == "INVALID_TOKEN"

    async def test_a_token_for_one_address_cannot_create_another_and_is_void_after_trying(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            token = await invite(api)
            other = await enrolment_options(client, token, "mallory@example.com")
            owner = await enrolment_options(client, token)

        assert_problem(other, 401, "unauthorized")
        assert_problem(owner, 401, "unauthorized")
        assert await users_with_email(api, "mallory@example.com") == 0
        refused = await events(api, "identity:staff:enrolment_refused")
        assert [r["data"]["reason"] for r in refused] == ["EMAIL_MISMATCH", "INVALID_TOKEN"]

    async def test_an_address_given_with_the_token_cannot_swap_the_account_at_completion(
        self, api: Api
    ) -> None:
        key = SoftwareAuthenticator()
        async with api.client() as client:
            token = await invite(api)
            options = await enrolment_options(client, token)
            credential = key.create(json.dumps(options.json()["options"]), origin(api))
            swapped = await complete(client, token, credential, email="mallory@example.com")

        assert_problem(swapped, 401, "unauthorized")
        assert await users_with_email(api, "mallory@example.com") == 0
        assert await users_with_email(api, ADA) == 0

    async def test_only_the_hash_of_the_token_is_stored_and_it_is_never_logged_or_mailed(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            token = await invite(api)
            await enrol(api, client, token, SoftwareAuthenticator())
        async with api.services.unit_of_work() as session:
            tickets = (
                (
                    await session.execute(
                        select(AuthTicket).where(AuthTicket.kind == ENROLMENT_TICKET)
                    )
                )
                .scalars()
                .all()
            )
            ledger = (await session.execute(select(AuditEventRow.body))).scalars().all()
            outbox = (await session.execute(select(OutboxMessage))).scalars().all()

        assert [t.token_hash for t in tickets] == [hashlib.sha256(token.encode()).digest()]
        assert all(token not in t.payload for t in tickets)
        assert tickets[0].used_ns is not None
        assert all(token.encode() not in body for body in ledger)
        assert all(token.encode() not in (m.body_enc + m.recipient_enc) for m in outbox)

    async def test_a_newer_invitation_for_the_address_replaces_the_older(self, api: Api) -> None:
        async with api.client() as client:
            old = await invite(api)
            new = await invite(api, role=Role.SUPPORT)
            refused = await enrolment_options(client, old)
            done = await enrol(api, client, new, SoftwareAuthenticator())

        assert_problem(refused, 401, "unauthorized")
        assert done.json()["role"] == "SUPPORT"

    async def test_an_unapproved_key_creates_nothing_and_the_token_can_be_retried(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            token = await invite(api)
            refused = await enrol(api, client, token, SoftwareAuthenticator(attestation="none"))
            users_after_refusal = await users_with_email(api, ADA)
            done = await enrol(api, client, token, SoftwareAuthenticator())

        assert_problem(refused, 403, "authenticator-not-allowed")
        assert users_after_refusal == 0
        assert done.status_code == 201, done.text
        refusals = await events(api, "identity:staff:enrolment_refused")
        assert refusals[-1]["data"]["attestation"] == "NOT_ATTESTED"

    async def test_a_response_to_a_used_challenge_is_refused(self, api: Api) -> None:
        key = SoftwareAuthenticator(attestation="none")
        async with api.client() as client:
            token = await invite(api)
            options = await enrolment_options(client, token)
            credential = key.create(json.dumps(options.json()["options"]), origin(api))
            await complete(client, token, credential)
            replayed = await complete(client, token, credential)

        assert_problem(replayed, 422, "webauthn-registration-rejected")

    async def test_a_weak_password_changes_nothing_and_the_same_key_answer_then_succeeds(
        self, api: Api
    ) -> None:
        key = SoftwareAuthenticator()
        async with api.client() as client:
            token = await invite(api)
            options = await enrolment_options(client, token)
            credential = key.create(json.dumps(options.json()["options"]), origin(api))
            weak = await complete(client, token, credential, password="tulip7")
            users_after_weak = await users_with_email(api, ADA)
            done = await complete(client, token, credential)

        assert_problem(weak, 422, "weak-password", "tulip7")
        assert users_after_weak == 0
        assert done.status_code == 201, done.text

    async def test_wrong_tokens_spend_the_network_budget_so_guessing_stops(
        self, settings: Settings, engine: AsyncEngine, clock: FrozenClock
    ) -> None:
        tight = settings.model_copy(update={"ip_max_failures": 10})
        async with running_api(tight, engine, clock) as api, api.client() as client:
            token = await invite(api)
            guesses = [
                (await enrolment_options(client, f"{i:043d}")).status_code for i in range(10)
            ]
            blocked = await enrolment_options(client, token)
            async with api.client(ip="198.51.100.20") as elsewhere:
                other_network = await enrolment_options(elsewhere, token)

        assert guesses == [401] * 10
        assert_problem(blocked, 429, "too-many-requests")
        assert blocked.headers["retry-after"]
        assert other_network.status_code == 200, other_network.text

    async def test_malformed_requests_get_problem_json_and_change_nothing(self, api: Api) -> None:
        async with api.client() as client:
            token = await invite(api)
            short = await client.post(f"{ENROL}/options", json={"token": "x", "email": ADA})
            extra = await client.post(
                f"{ENROL}/options", json={"token": token, "email": ADA, "role": "ADMIN"}
            )
            still = await enrolment_options(client, token)

        assert short.status_code == extra.status_code == 422
        assert short.headers["content-type"].startswith("application/problem+json")
        assert still.status_code == 200


class TestInvitationFromTheCli:
    @pytest.mark.spec("IAC-3")
    async def test_the_token_the_cli_prints_is_redeemed_through_the_api(
        self, tmp_path: Path, settings: Settings
    ) -> None:
        data = tmp_path / "operator"
        cli = CliRunner()
        await asyncio.to_thread(cli.invoke, cli_app, ["init", "--data-dir", str(data)])
        invited = await asyncio.to_thread(
            cli.invoke,
            cli_app,
            ["users", "invite-staff", "--email", ADA, "--role", "SUPPORT", "--data-dir", str(data)],
        )
        assert invited.exit_code == 0, invited.output
        token = invited.output.splitlines()[1].strip()
        served = settings.model_copy(update={"data_dir": data})
        engine = create_engine(served.main_database_url)
        clock = FrozenClock(start_ns=SystemClock().now_ns())
        try:
            async with running_api(served, engine, clock) as api, api.client() as client:
                done = await enrol(api, client, token, SoftwareAuthenticator())
        finally:
            await engine.dispose()

        assert done.status_code == 201, done.text
        assert done.json()["role"] == "SUPPORT"


# Step-up by a WebAuthn ceremony -----------------------------------------------------------


@pytest.mark.spec("ACCT-1", "IAC-3")
class TestWebAuthnStepUp:
    async def test_a_security_key_steps_up_and_the_gated_action_then_succeeds(
        self, api: Api
    ) -> None:
        key = SoftwareAuthenticator()
        async with api.client() as client:
            access = await session_with_fresh_key(api, client, key, "tom")
            past_step_up_window(api)
            before = await gated_action(client, access)
            started = await step_up_options(client, access)
            assertion = key.get(json.dumps(started["options"]), origin(api))
            stepped = await step_up_with(client, access, started["ticket"], assertion)
            after = await gated_action(client, access)

        assert_problem(before, 403, "step-up-required")
        allowed = started["options"]["allowCredentials"]
        assert [c["id"] for c in allowed] == [json.loads(assertion)["id"]]
        assert started["options"]["userVerification"] == "preferred"
        assert stepped.status_code == 200, stepped.text
        assert after.status_code == 200, after.text
        verified = await events(api, "identity:mfa:verified")
        assert verified[-1]["data"]["method"] == "webauthn"
        assert verified[-1]["data"]["step_up"] is True

    async def test_a_user_with_only_a_passkey_steps_up_without_signing_in_again(
        self, api: Api
    ) -> None:
        passkey = SoftwareAuthenticator(algorithm=COSE_EDDSA)
        async with api.client() as client:
            first = await password_session(api, client, "pia")
            await register_authenticator(api, client, first, passkey, passkey=True)
            signed_in = await login_with_passkey(api, client, passkey)
            access = str(signed_in.json()["access_token"])
            past_step_up_window(api)
            started = await step_up_options(client, access)
            passkey.user_verified = False
            without_uv = await step_up_with(
                client,
                access,
                started["ticket"],
                passkey.get(json.dumps(started["options"]), origin(api)),
            )
            passkey.user_verified = True
            stepped = await step_up_by_key(api, client, access, passkey)
            after = await gated_action(client, access)

        assert started["options"]["userVerification"] == "required"
        assert_problem(without_uv, 401, "webauthn-authentication-rejected")
        assert stepped.status_code == 200, stepped.text
        assert after.status_code == 200, after.text

    async def test_a_replayed_step_up_is_refused(self, api: Api) -> None:
        key = SoftwareAuthenticator()
        async with api.client() as client:
            access = await session_with_fresh_key(api, client, key, "tom")
            started = await step_up_options(client, access)
            assertion = key.get(json.dumps(started["options"]), origin(api))
            first = await step_up_with(client, access, started["ticket"], assertion)
            replayed = await step_up_with(client, access, started["ticket"], assertion)

        assert first.status_code == 200, first.text
        assert_problem(replayed, 401, "webauthn-authentication-rejected")
        assert "request new options" in replayed.json()["detail"]

    async def test_a_challenge_issued_to_another_session_is_refused(self, api: Api) -> None:
        key = SoftwareAuthenticator()
        async with api.client() as client:
            mine = await session_with_fresh_key(api, client, key, "tom")
            other = await login_with_key(api, client, key, "tom")
            theirs = str(other.json()["access_token"])
            past_step_up_window(api)
            started = await step_up_options(client, theirs)
            assertion = key.get(json.dumps(started["options"]), origin(api))
            refused = await step_up_with(client, mine, started["ticket"], assertion)
            still_gated = await gated_action(client, mine)

        assert_problem(refused, 401, "webauthn-authentication-rejected")
        assert_problem(still_gated, 403, "step-up-required")

    async def test_a_challenge_shown_by_another_session_is_burnt_for_its_own_session_too(
        self, api: Api
    ) -> None:
        key = SoftwareAuthenticator()
        async with api.client() as client:
            mine = await session_with_fresh_key(api, client, key, "tom")
            other = await login_with_key(api, client, key, "tom")
            theirs = str(other.json()["access_token"])
            past_step_up_window(api)
            started = await step_up_options(client, theirs)
            assertion = key.get(json.dumps(started["options"]), origin(api))
            # Whoever holds `mine` replays the other session's ticket: refused, and spent.
            refused = await step_up_with(client, mine, started["ticket"], assertion)
            replayed = await step_up_with(client, theirs, started["ticket"], assertion)
            still_gated = await gated_action(client, theirs)

        assert_problem(refused, 401, "webauthn-authentication-rejected")
        assert_problem(replayed, 401, "webauthn-authentication-rejected")
        assert "request new options" in replayed.json()["detail"]
        assert_problem(still_gated, 403, "step-up-required")
        failed = [e["data"]["method"] for e in await events(api, "identity:mfa:failed")]
        assert failed[-2:] == ["webauthn:step_up:INVALID_TICKET"] * 2

    async def test_another_users_key_or_an_unknown_key_is_refused(self, api: Api) -> None:
        key, stranger_key = SoftwareAuthenticator(), SoftwareAuthenticator()
        async with api.client() as client:
            access = await session_with_fresh_key(api, client, key, "tom")
            await session_with_fresh_key(api, client, stranger_key, "sue")
            started = await step_up_options(client, access)
            by_stranger = await step_up_with(
                client,
                access,
                started["ticket"],
                stranger_key.get(json.dumps(started["options"]), origin(api)),
            )
            started = await step_up_options(client, access)
            by_unknown = await step_up_with(
                client,
                access,
                started["ticket"],
                SoftwareAuthenticator().get(json.dumps(started["options"]), origin(api)),
            )

        assert_problem(by_stranger, 401, "webauthn-authentication-rejected")
        assert_problem(by_unknown, 401, "webauthn-authentication-rejected")
        failed = [e["data"]["method"] for e in await events(api, "identity:mfa:failed")]
        assert failed[-2:] == ["webauthn:step_up:UNKNOWN_CREDENTIAL"] * 2

    async def test_a_cloned_key_is_refused_and_its_owner_told(self, api: Api) -> None:
        key = SoftwareAuthenticator()
        async with api.client() as client:
            access = await session_with_fresh_key(api, client, key, "tom")
            copy = key.clone()
            assert (await step_up_by_key(api, client, access, key)).status_code == 200
            cloned = await step_up_by_key(api, client, access, copy)

        assert_problem(cloned, 401, "webauthn-authentication-rejected")
        assert await events(api, "identity:factor:clone_suspected")
        templates = [m["template"] for m in await api.outbox(to="tom@example.com")]
        assert "factor_clone_suspected" in templates

    async def test_without_a_key_there_is_no_webauthn_step_up(self, api: Api) -> None:
        async with api.client() as client:
            access = await password_session(api, client, "tom")
            response = await client.post(STEP_UP_OPTIONS, headers=bearer(access))
            bad_body = await client.post(
                STEP_UP, json={"method": "webauthn", "code": "123456"}, headers=bearer(access)
            )

        assert_problem(response, 409, "conflict")
        assert bad_body.status_code == 422

    async def test_step_up_challenges_per_session_are_limited(self, api: Api) -> None:
        key = SoftwareAuthenticator()
        async with api.client() as client:
            access = await session_with_fresh_key(api, client, key, "tom")
            codes = [
                (await client.post(STEP_UP_OPTIONS, headers=bearer(access))).status_code
                for _ in range(11)
            ]

        assert codes == [200] * 10 + [429]

    async def test_staff_step_up_with_their_key_and_then_act(self, api: Api) -> None:
        key = SoftwareAuthenticator()
        async with api.client() as client:
            access = await enrolled_staff(api, client, key)
            past_step_up_window(api)
            before = await gated_action(client, access)
            stepped = await step_up_by_key(api, client, access, key)
            after = await gated_action(client, access)

        assert_problem(before, 403, "step-up-required")
        assert stepped.status_code == 200, stepped.text
        assert after.status_code == 200, after.text


# Staff inactivity -------------------------------------------------------------------------


class TestStaffInactivity:
    @pytest.mark.spec("IAC-3", "SESS-5")
    async def test_a_staff_session_ends_after_fifteen_idle_minutes(self, api: Api) -> None:
        key = SoftwareAuthenticator()
        async with api.client() as client:
            done = await enrol(api, client, await invite(api), key)
            assert done.status_code == 201, done.text
            tokens = (await login_with_key(api, client, key, "ada")).json()
            api.clock.advance(seconds=14 * 60)
            active = await client.get("/api/v1/me", headers=bearer(tokens["access_token"]))
            api.clock.advance(seconds=6 * 60)
            # A refresh is not activity; it only gives a token that outlives the idle limit.
            refreshed = await client.post(
                "/api/v1/auth/token/refresh", json={"refresh_token": tokens["refresh_token"]}
            )
            api.clock.advance(seconds=9 * 60 + 1)
            idle = await client.get("/api/v1/me", headers=bearer(refreshed.json()["access_token"]))

        assert api.services.deps.policy.staff_idle_seconds == 15 * 60
        assert active.status_code == 200, active.text
        assert refreshed.status_code == 200, refreshed.text
        assert_problem(idle, 401, "unauthorized")
        assert "inactivity" in idle.json()["detail"]


@pytest.mark.spec("IAC-3")
class TestStepUpRefreshesTheAccessToken:
    """L3b: after a security-key step-up, /api/v1/me showed no "hwk" and no permissions until
    the token was refreshed; the step-up answer now carries a token that includes them."""

    async def test_a_staff_members_key_step_up_answers_a_token_with_hwk_and_permissions(
        self, api: Api
    ) -> None:
        await create_staff(api, "ada", Role.ADMIN)
        key = SoftwareAuthenticator()
        async with api.client() as client:
            # The password session that registered the key: no "hwk", so no staff authority.
            access = str((await login(client, "ada"))["access_token"])
            await prove_email(api, client, access)
            await register_authenticator(api, client, access, key, passkey=False)
            before = await client.get("/api/v1/me", headers=bearer(access))
            stepped = await step_up_by_key(api, client, access, key)
            fresh = stepped.json()["access_token"]
            after = await client.get("/api/v1/me", headers=bearer(fresh))
            refresh_still = await client.get("/api/v1/me", headers=bearer(access))

        assert before.json()["session"]["permissions"] == []
        assert "hwk" not in before.json()["session"]["amr"]
        assert stepped.status_code == 200, stepped.text
        assert stepped.json()["expires_in"] > 0
        session = after.json()["session"]
        assert "hwk" in session["amr"]
        assert session["id"] == before.json()["session"]["id"]
        assert "access:request" in session["permissions"]
        # The old token keeps what it said (a token is never widened after it is issued).
        assert refresh_still.json()["session"]["permissions"] == []

    async def test_a_refused_step_up_answers_no_token(self, api: Api) -> None:
        await create_staff(api, "ada", Role.ADMIN)
        key = SoftwareAuthenticator()
        async with api.client() as client:
            access = str((await login(client, "ada"))["access_token"])
            await prove_email(api, client, access)
            await register_authenticator(api, client, access, key, passkey=False)
            started = await step_up_options(client, access)
            assertion = SoftwareAuthenticator().get(json.dumps(started["options"]), origin(api))
            refused = await step_up_with(client, access, started["ticket"], assertion)

        assert refused.status_code == 401
        assert "access_token" not in refused.json()
