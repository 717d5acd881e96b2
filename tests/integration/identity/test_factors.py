"""Second factors through the HTTP API: backup codes, email and SMS codes, removal, enrolment
rules (AUTH-4, AUTH-5, AUTH-7, ACCT-1, ATO-2)."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.support.api import (
    PASSWORD,
    Api,
    audit_events,
    bearer,
    enrol_totp,
    is_problem,
    login,
    login_with_totp,
    prove_email,
    register_verified,
    step_up,
    user_with_totp,
)
from tradeguard.identity.mfa.backup_codes import normalize_code

PHONE = "+14155550123"


async def generate_backup_codes(client: httpx.AsyncClient, access: str) -> list[str]:
    response = await client.post("/api/v1/auth/mfa/backup-codes", headers=bearer(access))
    assert response.status_code == 201, response.text
    codes: list[str] = response.json()["codes"]
    return codes


async def verify_with(
    client: httpx.AsyncClient, ticket: str, method: str, code: str
) -> httpx.Response:
    return await client.post(
        "/api/v1/auth/mfa/verify", json={"ticket": ticket, "method": method, "code": code}
    )


async def login_with_backup_code(client: httpx.AsyncClient, code: str) -> httpx.Response:
    challenge = await login(client)
    assert "backup_code" in challenge["methods"], challenge
    return await verify_with(client, challenge["ticket"], "backup_code", code)


async def last_sms_code(api: Api, phone: str = PHONE) -> str:
    texts = [m for m in await api.outbox(to=phone) if m["channel"] == "sms"]
    match = re.search(r"\b(\d{6})\b", texts[-1]["body"])
    assert match, texts[-1]
    return match.group(1)


async def prove_if_first(api: Api, client: httpx.AsyncClient, access: str) -> None:
    factors = await client.get("/api/v1/auth/mfa", headers=bearer(access))
    if not [f for f in factors.json() if f["status"] == "active"]:
        await prove_email(api, client, access)


async def enrol_email_factor(api: Api, client: httpx.AsyncClient, access: str) -> str:
    await prove_if_first(api, client, access)
    started = await client.post("/api/v1/auth/mfa/email/enroll", headers=bearer(access))
    assert started.status_code == 201, started.text
    factor_id: str = started.json()["factor_id"]
    code = await api.last_code_in_mail("alice@example.com")
    confirmed = await client.post(
        "/api/v1/auth/mfa/email/confirm",
        json={"factor_id": factor_id, "code": code},
        headers=bearer(access),
    )
    assert confirmed.status_code == 200, confirmed.text
    return factor_id


async def enrol_sms_factor(api: Api, client: httpx.AsyncClient, access: str) -> str:
    await prove_if_first(api, client, access)
    started = await client.post(
        "/api/v1/auth/mfa/sms/enroll", json={"phone": PHONE}, headers=bearer(access)
    )
    assert started.status_code == 201, started.text
    factor_id: str = started.json()["factor_id"]
    confirmed = await client.post(
        "/api/v1/auth/mfa/sms/confirm",
        json={"factor_id": factor_id, "code": await last_sms_code(api)},
        headers=bearer(access),
    )
    assert confirmed.status_code == 200, confirmed.text
    return factor_id


class TestBackupCodes:
    @pytest.mark.spec("AUTH-7", "ACCT-1")
    async def test_generating_codes_needs_step_up_once_a_factor_exists(self, api: Api) -> None:
        async with api.client() as client:
            access, totp = await user_with_totp(api, client)
            refused = await client.post("/api/v1/auth/mfa/backup-codes", headers=bearer(access))
            await step_up(api, client, access, totp)
            codes = await generate_backup_codes(client, access)
        assert is_problem(refused, 403, "step-up-required")
        assert len(codes) >= 10
        assert len(set(codes)) == len(codes)
        assert all(normalize_code(code) for code in codes)

    @pytest.mark.spec("AUTH-7", "ACCT-1")
    async def test_an_mfa_session_older_than_the_step_up_window_must_step_up_again(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            _, totp = await user_with_totp(api, client)
            full = await login_with_totp(api, client, totp)
            api.clock.advance(seconds=11 * 60)
            refused = await client.post(
                "/api/v1/auth/mfa/backup-codes", headers=bearer(full["access_token"])
            )
        assert is_problem(refused, 403, "step-up-required")

    @pytest.mark.spec("AUTH-7")
    async def test_a_backup_code_signs_in_once_and_never_again(self, api: Api) -> None:
        async with api.client() as client:
            access, totp = await user_with_totp(api, client)
            await step_up(api, client, access, totp)
            codes = await generate_backup_codes(client, access)
            first = await login_with_backup_code(client, codes[0])
            again = await login_with_backup_code(client, codes[0])
            lowercase_other = await login_with_backup_code(client, codes[1].lower())
        assert first.status_code == 200, first.text
        claims = api.services.verifier.verify(first.json()["access_token"])
        assert set(claims.amr) >= {"pwd", "kba", "mfa"}
        assert again.status_code == 401
        assert lowercase_other.status_code == 200, lowercase_other.text
        used = await audit_events(api, "identity:backup_codes:used")
        assert [event["data"]["remaining"] for event in used] == [len(codes) - 1, len(codes) - 2]

    @pytest.mark.spec("AUTH-7")
    async def test_a_backup_code_confirms_a_step_up(self, api: Api) -> None:
        async with api.client() as client:
            access, totp = await user_with_totp(api, client)
            await step_up(api, client, access, totp)
            codes = await generate_backup_codes(client, access)
            api.clock.advance(seconds=11 * 60)
            stepped = await client.post(
                "/api/v1/auth/mfa/step-up",
                json={"method": "backup_code", "code": codes[3]},
                headers=bearer(access),
            )
            regenerated = await client.post("/api/v1/auth/mfa/backup-codes", headers=bearer(access))
        assert stepped.status_code == 200, stepped.text
        assert regenerated.status_code == 201, regenerated.text

    @pytest.mark.spec("AUTH-7")
    async def test_regenerating_codes_revokes_the_previous_set(self, api: Api) -> None:
        async with api.client() as client:
            access, totp = await user_with_totp(api, client)
            await step_up(api, client, access, totp)
            old = await generate_backup_codes(client, access)
            new = await generate_backup_codes(client, access)
            with_old = await login_with_backup_code(client, old[0])
            with_new = await login_with_backup_code(client, new[0])
            factors = await client.get("/api/v1/auth/mfa", headers=bearer(access))
        assert with_old.status_code == 401
        assert with_new.status_code == 200, with_new.text
        assert not set(old) & set(new)
        assert [f["kind"] for f in factors.json()].count("backup_codes") == 1

    @pytest.mark.spec("AUTH-7", "AUD-1")
    async def test_codes_never_appear_in_the_outbox_or_the_audit_ledger(self, api: Api) -> None:
        async with api.client() as client:
            access, totp = await user_with_totp(api, client)
            await step_up(api, client, access, totp)
            codes = await generate_backup_codes(client, access)
            assert (await login_with_backup_code(client, codes[0])).status_code == 200
            assert (await login_with_backup_code(client, codes[0])).status_code == 401
        forms = {form for code in codes for form in (code, normalize_code(code) or code)}
        mail = json.dumps(await api.outbox())
        ledger = json.dumps(await audit_events(api))
        assert "identity:backup_codes:generated" in ledger
        assert not [form for form in forms if form in mail or form in ledger]


class TestEmailCodeFactor:
    @pytest.mark.spec("AUTH-5", "ACCT-1")
    async def test_email_factor_is_confirmed_from_the_mailbox_and_signs_in(self, api: Api) -> None:
        async with api.client() as client:
            await register_verified(api, client)
            access = (await login(client))["access_token"]
            await enrol_email_factor(api, client, access)
            challenge = await login(client)
            sent = await client.post(
                "/api/v1/auth/mfa/send", json={"ticket": challenge["ticket"], "method": "email"}
            )
            code = await api.last_code_in_mail("alice@example.com")
            verified = await verify_with(client, challenge["ticket"], "email", code)
            replayed = await verify_with(client, challenge["ticket"], "email", code)
            factors = await client.get("/api/v1/auth/mfa", headers=bearer(access))
        assert challenge["status"] == "mfa_required"
        assert challenge["methods"] == ["email"]
        assert sent.status_code == 200, sent.text
        assert verified.status_code == 200, verified.text
        assert set(api.services.verifier.verify(verified.json()["access_token"]).amr) >= {
            "pwd",
            "mail",
            "mfa",
        }
        assert replayed.status_code == 401
        assert [(f["kind"], f["status"], f["restricted"]) for f in factors.json()] == [
            ("email", "active", False)
        ]

    @pytest.mark.spec("AUTH-5")
    async def test_a_wrong_enrolment_code_leaves_the_factor_pending(self, api: Api) -> None:
        async with api.client() as client:
            await register_verified(api, client)
            access = (await login(client))["access_token"]
            await prove_email(api, client, access)
            started = await client.post("/api/v1/auth/mfa/email/enroll", headers=bearer(access))
            code = await api.last_code_in_mail("alice@example.com")
            wrong = "000000" if code != "000000" else "111111"
            refused = await client.post(
                "/api/v1/auth/mfa/email/confirm",
                json={"factor_id": started.json()["factor_id"], "code": wrong},
                headers=bearer(access),
            )
            still_password_only = await login(client)
        assert refused.status_code == 401
        assert still_password_only["status"] == "authenticated"

    @pytest.mark.spec("AUTH-5", "ATO-2")
    async def test_wrong_codes_are_counted_and_the_ticket_dies_after_five(self, api: Api) -> None:
        async with api.client() as client:
            await register_verified(api, client)
            await enrol_email_factor(api, client, (await login(client))["access_token"])
            challenge = await login(client)
            ticket = challenge["ticket"]
            await client.post("/api/v1/auth/mfa/send", json={"ticket": ticket, "method": "email"})
            code = await api.last_code_in_mail("alice@example.com")
            wrong = f"{(int(code) + 1) % 10**6:06d}"
            statuses = []
            for _ in range(5):
                statuses.append((await verify_with(client, ticket, "email", wrong)).status_code)
                api.clock.advance(seconds=20)  # past the per-user back-off (a few seconds)
            right_too_late = await verify_with(client, ticket, "email", code)
            resend = await client.post(
                "/api/v1/auth/mfa/send", json={"ticket": ticket, "method": "email"}
            )
        assert statuses == [401] * 5
        assert right_too_late.status_code == 401
        assert resend.status_code == 401
        failures = await audit_events(api, "identity:mfa:failed")
        assert [event["data"]["failures"] for event in failures] == [1, 2, 3, 4, 5]

    @pytest.mark.spec("AUTH-5", "API-2")
    async def test_more_than_three_sends_per_ticket_are_refused(self, api: Api) -> None:
        async with api.client() as client:
            await register_verified(api, client)
            await enrol_email_factor(api, client, (await login(client))["access_token"])
            ticket = (await login(client))["ticket"]
            statuses = [
                (
                    await client.post(
                        "/api/v1/auth/mfa/send", json={"ticket": ticket, "method": "email"}
                    )
                ).status_code
                for _ in range(4)
            ]
            code = await api.last_code_in_mail("alice@example.com")
            verified = await verify_with(client, ticket, "email", code)
        assert statuses == [200, 200, 200, 429]
        assert verified.status_code == 200, verified.text
        codes_mailed = [
            m for m in await api.outbox(to="alice@example.com") if m["template"] == "otp_code"
        ]
        assert len(codes_mailed) == 1 + 3  # the enrolment code and three sign-in codes

    @pytest.mark.spec("AUTH-5")
    async def test_an_expired_code_is_refused(self, api: Api) -> None:
        async with api.client() as client:
            await register_verified(api, client)
            await enrol_email_factor(api, client, (await login(client))["access_token"])
            ticket = (await login(client))["ticket"]
            await client.post("/api/v1/auth/mfa/send", json={"ticket": ticket, "method": "email"})
            code = await api.last_code_in_mail("alice@example.com")
            api.clock.advance(seconds=6 * 60)
            expired = await verify_with(client, ticket, "email", code)
        assert expired.status_code == 401

    @pytest.mark.spec("AUTH-5")
    async def test_an_expired_enrolment_code_is_refused(self, api: Api) -> None:
        async with api.client() as client:
            await register_verified(api, client)
            access = (await login(client))["access_token"]
            await prove_email(api, client, access)
            started = await client.post("/api/v1/auth/mfa/email/enroll", headers=bearer(access))
            code = await api.last_code_in_mail("alice@example.com")
            api.clock.advance(seconds=6 * 60)
            expired = await client.post(
                "/api/v1/auth/mfa/email/confirm",
                json={"factor_id": started.json()["factor_id"], "code": code},
                headers=bearer(access),
            )
        assert is_problem(expired, 401, "code-expired")
        assert "expired" in expired.json()["detail"]

    @pytest.mark.spec("AUTH-5")
    async def test_a_code_cannot_be_sent_by_a_method_the_user_has_not_enrolled(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            await register_verified(api, client)
            await enrol_email_factor(api, client, (await login(client))["access_token"])
            ticket = (await login(client))["ticket"]
            by_sms = await client.post(
                "/api/v1/auth/mfa/send", json={"ticket": ticket, "method": "sms"}
            )
        assert by_sms.status_code == 401
        assert not [m for m in await api.outbox() if m["channel"] == "sms"]


class TestSmsCodeFactor:
    @pytest.mark.spec("AUTH-4")
    async def test_sms_factor_is_confirmed_by_text_and_signs_in(self, api: Api) -> None:
        async with api.client() as client:
            await register_verified(api, client)
            access = (await login(client))["access_token"]
            await enrol_sms_factor(api, client, access)
            challenge = await login(client)
            sent = await client.post(
                "/api/v1/auth/mfa/send", json={"ticket": challenge["ticket"], "method": "sms"}
            )
            verified = await verify_with(
                client, challenge["ticket"], "sms", await last_sms_code(api)
            )
        assert challenge["methods"] == ["sms"]
        assert sent.status_code == 200, sent.text
        assert verified.status_code == 200, verified.text
        claims = api.services.verifier.verify(verified.json()["access_token"])
        assert set(claims.amr) >= {"pwd", "sms", "mfa"}
        texts = [m for m in await api.outbox() if m["channel"] == "sms"]
        assert {m["to"] for m in texts} == {PHONE}
        assert len(texts) == 2

    @pytest.mark.spec("AUTH-4")
    async def test_a_phone_number_not_in_e164_form_is_refused(self, api: Api) -> None:
        invalid = ["4155550123", "+04155550123", "+1 415 555 0123", "+1415", "+1415555012345678"]
        async with api.client() as client:
            await register_verified(api, client)
            access = (await login(client))["access_token"]
            await prove_email(api, client, access)
            responses = [
                await client.post(
                    "/api/v1/auth/mfa/sms/enroll", json={"phone": phone}, headers=bearer(access)
                )
                for phone in invalid
            ]
            factors = await client.get("/api/v1/auth/mfa", headers=bearer(access))
        for response in responses:
            assert response.status_code == 422
            assert response.headers["content-type"].startswith("application/problem+json")
        assert factors.json() == []
        assert not [m for m in await api.outbox() if m["channel"] == "sms"]

    @pytest.mark.spec("AUTH-4")
    async def test_sms_is_listed_as_a_restricted_authenticator(self, api: Api) -> None:
        async with api.client() as client:
            access, totp = await user_with_totp(api, client)
            await step_up(api, client, access, totp)
            await enrol_sms_factor(api, client, access)
            factors = await client.get("/api/v1/auth/mfa", headers=bearer(access))
        restricted = {f["kind"]: f["restricted"] for f in factors.json()}
        assert restricted == {"totp": False, "sms": True}

    @pytest.mark.spec("AUTH-4", "ATO-2", "API-2")
    async def test_sms_codes_obey_the_send_attempt_and_expiry_limits(self, api: Api) -> None:
        async with api.client() as client:
            await register_verified(api, client)
            await enrol_sms_factor(api, client, (await login(client))["access_token"])
            guessed = (await login(client))["ticket"]
            sends = [
                (
                    await client.post(
                        "/api/v1/auth/mfa/send", json={"ticket": guessed, "method": "sms"}
                    )
                ).status_code
                for _ in range(4)
            ]
            code = await last_sms_code(api)
            wrong = f"{(int(code) + 7) % 10**6:06d}"
            guesses = []
            for _ in range(5):
                guesses.append((await verify_with(client, guessed, "sms", wrong)).status_code)
                api.clock.advance(seconds=20)  # past the per-user back-off
            right_too_late = await verify_with(client, guessed, "sms", code)
            waited = (await login(client))["ticket"]
            await client.post("/api/v1/auth/mfa/send", json={"ticket": waited, "method": "sms"})
            api.clock.advance(seconds=6 * 60)
            expired = await verify_with(client, waited, "sms", await last_sms_code(api))
        assert sends == [200, 200, 200, 429]
        assert guesses == [401] * 5
        assert right_too_late.status_code == 401
        assert expired.status_code == 401


class TestFactorRemoval:
    @pytest.mark.spec("ACCT-1", "ATO-2")
    async def test_removal_needs_step_up(self, api: Api) -> None:
        async with api.client() as client:
            access, totp = await user_with_totp(api, client)
            await step_up(api, client, access, totp)
            email_factor = await enrol_email_factor(api, client, access)
            api.clock.advance(seconds=11 * 60)
            refused = await client.delete(
                f"/api/v1/auth/mfa/{email_factor}", headers=bearer(access)
            )
            factors = await client.get("/api/v1/auth/mfa", headers=bearer(access))
        assert is_problem(refused, 403, "step-up-required")
        assert {f["kind"] for f in factors.json()} == {"totp", "email"}

    @pytest.mark.spec("ACCT-1", "AUD-1")
    async def test_removal_is_emailed_and_audited(self, api: Api) -> None:
        async with api.client() as client:
            access, totp = await user_with_totp(api, client)
            await step_up(api, client, access, totp)
            email_factor = await enrol_email_factor(api, client, access)
            removed = await client.delete(
                f"/api/v1/auth/mfa/{email_factor}", headers=bearer(access)
            )
            challenge = await login(client)
        assert removed.status_code == 204
        assert challenge["methods"] == ["totp"]
        bodies = [
            m["body"]
            for m in await api.outbox(to="alice@example.com")
            if m["template"] == "factor_changed"
        ]
        assert any("removed" in body for body in bodies)
        events = await audit_events(api, "identity:factor:removed")
        assert [e["data"] for e in events] == [{"factor_id": email_factor, "kind": "email"}]
        assert [e["personal"] for e in events] == [{"ip": "203.0.113.7"}]

    @pytest.mark.spec("ACCT-1")
    async def test_the_last_real_factor_cannot_be_removed_even_with_backup_codes_left(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            access, totp = await user_with_totp(api, client)
            await step_up(api, client, access, totp)
            await generate_backup_codes(client, access)
            factors = (await client.get("/api/v1/auth/mfa", headers=bearer(access))).json()
            totp_id = next(f["id"] for f in factors if f["kind"] == "totp")
            refused = await client.delete(f"/api/v1/auth/mfa/{totp_id}", headers=bearer(access))
        assert is_problem(refused, 409, "factor-conflict")
        assert not await audit_events(api, "identity:factor:removed")

    async def test_another_users_factor_is_not_found(self, api: Api) -> None:
        async with api.client() as client:
            _, totp = await user_with_totp(api, client)
            await register_verified(api, client, "bob")
            bob = (await login(client, "bob"))["access_token"]
            alice = await login_with_totp(api, client, totp)
            alice_factor = (
                await client.get("/api/v1/auth/mfa", headers=bearer(alice["access_token"]))
            ).json()[0]["id"]
            response = await client.delete(f"/api/v1/auth/mfa/{alice_factor}", headers=bearer(bob))
        assert response.status_code == 404


class TestFactorEnrolmentRules:
    @pytest.mark.spec("ACCT-1", "ATO-2")
    async def test_password_only_sessions_end_when_the_first_factor_is_enrolled(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            await register_verified(api, client)
            attacker = (await login(client))["access_token"]
            owner = (await login(client))["access_token"]
            await enrol_totp(api, client, owner)
            totp_attempt = await client.post(
                "/api/v1/auth/mfa/totp/enroll", headers=bearer(attacker)
            )
            sms_attempt = await client.post(
                "/api/v1/auth/mfa/sms/enroll", json={"phone": PHONE}, headers=bearer(attacker)
            )
            password_only = await login(client)
        for response in (totp_attempt, sms_attempt):
            assert response.status_code == 401
        assert password_only["status"] == "mfa_required"
        assert not [m for m in await api.outbox() if m["channel"] == "sms"]
        revoked = await audit_events(api, "identity:session:revoked")
        assert [e["data"]["reason"] for e in revoked] == ["first_factor_enrolled"]

    @pytest.mark.spec("ACCT-1", "ATO-2")
    async def test_a_password_alone_cannot_add_the_first_factor(self, api: Api) -> None:
        async with api.client() as client:
            await register_verified(api, client)
            attacker = (await login(client))["access_token"]
            attempts = [
                await client.post("/api/v1/auth/mfa/totp/enroll", headers=bearer(attacker)),
                await client.post(
                    "/api/v1/auth/mfa/sms/enroll", json={"phone": PHONE}, headers=bearer(attacker)
                ),
                await client.post(
                    "/api/v1/auth/webauthn/register/options",
                    json={"passkey": True},
                    headers=bearer(attacker),
                ),
            ]
        for response in attempts:
            assert is_problem(response, 403, "step-up-required")
        assert not await audit_events(api, "identity:factor:enrolled")

    @pytest.mark.spec("ACCT-1", "ATO-2")
    async def test_the_mailbox_proof_is_single_use_per_session_and_expires(self, api: Api) -> None:
        async with api.client() as client:
            await register_verified(api, client)
            first = (await login(client))["access_token"]
            await prove_email(api, client, first)
            other = (await login(client))["access_token"]
            other_session = await client.post("/api/v1/auth/mfa/totp/enroll", headers=bearer(other))
            api.clock.advance(seconds=11 * 60)
            stale = await client.post("/api/v1/auth/mfa/totp/enroll", headers=bearer(first))
            wrong = await client.post("/api/v1/auth/email/proof", headers=bearer(first))
            bad = await client.post(
                "/api/v1/auth/email/proof/verify", json={"code": "000000"}, headers=bearer(first)
            )
            await prove_email(api, client, first)
            fresh = await client.post("/api/v1/auth/mfa/totp/enroll", headers=bearer(first))
        assert is_problem(other_session, 403, "step-up-required")
        assert is_problem(stale, 403, "step-up-required")
        assert wrong.status_code == 202
        assert bad.status_code == 401
        assert fresh.status_code == 201, fresh.text

    @pytest.mark.spec("ACCT-1", "AUTH-5")
    async def test_an_unverified_email_cannot_add_a_first_factor(self, api: Api) -> None:
        async with api.client() as client:
            registered = await client.post(
                "/api/v1/auth/register",
                json={
                    "username": "alice",
                    "email": "alice@example.com",
                    "password": PASSWORD,
                },
            )
            assert registered.status_code == 201
            access = (await login(client))["access_token"]
            totp_attempt = await client.post("/api/v1/auth/mfa/totp/enroll", headers=bearer(access))
            email_attempt = await client.post(
                "/api/v1/auth/mfa/email/enroll", headers=bearer(access)
            )
        for response in (totp_attempt, email_attempt):
            assert is_problem(response, 403, "forbidden")
        assert not await audit_events(api, "identity:factor:enrolled")


class TestBackupCodesAreNeverTheOnlyFactor:
    @pytest.mark.spec("AUTH-7", "ACCT-1")
    async def test_backup_codes_need_a_real_factor_first(self, api: Api) -> None:
        async with api.client() as client:
            await register_verified(api, client)
            access = (await login(client))["access_token"]
            await prove_email(api, client, access)
            response = await client.post("/api/v1/auth/mfa/backup-codes", headers=bearer(access))
        assert response.status_code == 409
        assert response.json()["type"].endswith("factor-conflict")
        assert await audit_events(api, "identity:backup_codes:generated") == []
