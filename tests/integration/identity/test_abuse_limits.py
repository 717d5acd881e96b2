"""Quotas on what the platform sends for anyone who asks: texts, pending enrolments, sign-ups,
"someone used your address" notices and verification resends (issue #6).

Each test replays an abuse the black-box tester found, through the HTTP API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.identity.test_factors import enrol_sms_factor, last_sms_code
from tests.support.api import (
    PASSWORD,
    Api,
    audit_events,
    bearer,
    is_problem,
    login,
    prove_email,
    register_verified,
    running_api,
)
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock

OTHER_IP = "198.51.100.77"


def number(n: int) -> str:
    return f"+1415555{n:04d}"


@pytest.fixture
async def limits(
    request: pytest.FixtureRequest, settings: Settings, engine: AsyncEngine, clock: FrozenClock
) -> AsyncIterator[Api]:
    """The API with the settings a test names: @pytest.mark.parametrize("limits", [{...}])."""
    async with running_api(settings.model_copy(update=request.param), engine, clock) as api:
        yield api


async def ready_to_enrol(api: Api, client: httpx.AsyncClient, username: str = "alice") -> str:
    """A verified account's first session, mailbox proven: it may add its first factor."""
    await register_verified(api, client, username)
    access = str((await login(client, username))["access_token"])
    await prove_email(api, client, access)
    return access


async def enrol_sms(client: httpx.AsyncClient, access: str, phone: str) -> httpx.Response:
    return await client.post(
        "/api/v1/auth/mfa/sms/enroll", json={"phone": phone}, headers=bearer(access)
    )


async def texts(api: Api, to: str | None = None) -> list[dict[str, str]]:
    return [m for m in await api.outbox(to=to) if m["channel"] == "sms"]


async def exceeded(api: Api) -> list[list[str]]:
    return [e["data"]["quotas"] for e in await audit_events(api, "identity:quota:exceeded")]


def refused(response: httpx.Response) -> bool:
    return is_problem(response, 429, "too-many-requests") and (
        response.json()["retry_after_seconds"] > 0
    )


class TestPendingEnrolments:
    @pytest.mark.spec("AUTH-4")
    async def test_thirty_enrolments_to_twenty_five_numbers_send_three_texts(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            access = await ready_to_enrol(api, client)
            responses = [await enrol_sms(client, access, number(n % 25)) for n in range(30)]
            listed = (await client.get("/api/v1/auth/mfa", headers=bearer(access))).json()
        assert [r.status_code for r in responses[:3]] == [201, 201, 201]
        assert all(refused(r) for r in responses[3:])
        assert len(await texts(api)) == 3
        assert [f["status"] for f in listed] == ["pending"] * 3
        assert await exceeded(api) == [["pending_factors"]] * 27

    @pytest.mark.spec("AUTH-4", "AUTH-5", "AUTH-6")
    @pytest.mark.parametrize("limits", [{"pending_factor_seconds": 120}], indirect=True)
    async def test_pending_enrolments_of_every_kind_expire_and_free_their_place(
        self, limits: Api
    ) -> None:
        api = limits
        async with api.client() as client:
            access = await ready_to_enrol(api, client)
            sms = await enrol_sms(client, access, number(1))
            totp = await client.post("/api/v1/auth/mfa/totp/enroll", headers=bearer(access))
            email = await client.post("/api/v1/auth/mfa/email/enroll", headers=bearer(access))
            fourth = await enrol_sms(client, access, number(2))
            code = await last_sms_code(api, number(1))
            api.clock.advance(seconds=121)
            late = await client.post(
                "/api/v1/auth/mfa/sms/confirm",
                json={"factor_id": sms.json()["factor_id"], "code": code},
                headers=bearer(access),
            )
            listed = (await client.get("/api/v1/auth/mfa", headers=bearer(access))).json()
            again = await enrol_sms(client, access, number(2))
        assert [r.status_code for r in (sms, totp, email)] == [201, 201, 201]
        assert refused(fourth)
        assert 0 < fourth.json()["retry_after_seconds"] <= 120
        assert is_problem(late, 404, "not-found")  # an expired enrolment cannot be confirmed
        assert listed == []
        assert again.status_code == 201, again.text

    @pytest.mark.spec("AUTH-6")
    async def test_housekeeping_retires_enrolments_nobody_confirmed(self, api: Api) -> None:
        from tradeguard.identity.tasks import expire_pending_factors  # noqa: PLC0415

        async with api.client() as client:
            access = await ready_to_enrol(api, client)
            await client.post("/api/v1/auth/mfa/totp/enroll", headers=bearer(access))
            early = await expire_pending_factors(
                api.services.sessions, api.clock, pending_seconds=900
            )
            api.clock.advance(seconds=901)
            retired = await expire_pending_factors(
                api.services.sessions, api.clock, pending_seconds=900
            )
        assert (early, retired) == (0, 1)


class TestTextQuotas:
    @pytest.mark.spec("AUTH-4")
    @pytest.mark.parametrize(
        "limits", [{"sms_max_per_number": 2, "max_pending_factors": 20}], indirect=True
    )
    async def test_one_number_gets_a_few_enrolment_texts_whoever_asks(self, limits: Api) -> None:
        api = limits
        async with api.client() as alice, api.client(ip=OTHER_IP) as bob:
            alice_access = await ready_to_enrol(api, alice)
            bob_access = await ready_to_enrol(api, bob, "bob")
            first = [await enrol_sms(alice, alice_access, number(7)) for _ in range(2)]
            victim = await enrol_sms(bob, bob_access, number(7))
            other = await enrol_sms(bob, bob_access, number(8))
        assert [r.status_code for r in first] == [201, 201]
        assert refused(victim)
        assert other.status_code == 201
        assert len(await texts(api, number(7))) == 2
        assert await exceeded(api) == [["sms_per_number"]]

    @pytest.mark.spec("AUTH-4", "API-2")
    @pytest.mark.parametrize(
        "limits", [{"sms_max_per_user": 3, "max_pending_factors": 20}], indirect=True
    )
    async def test_one_account_gets_a_few_texts_a_day(self, limits: Api) -> None:
        api = limits
        async with api.client() as client:
            access = await ready_to_enrol(api, client)
            today = [await enrol_sms(client, access, number(n)) for n in range(4)]
            sent_today = len(await texts(api))
            api.clock.advance(seconds=24 * 3600 + 1)
            access = str((await login(client))["access_token"])
            await prove_email(api, client, access)
            tomorrow = await enrol_sms(client, access, number(9))
        assert [r.status_code for r in today[:3]] == [201, 201, 201]
        assert refused(today[3])
        assert today[3].json()["retry_after_seconds"] <= 24 * 3600
        assert sent_today == 3
        assert await exceeded(api) == [["sms_per_user"]]
        assert tomorrow.status_code == 201, tomorrow.text

    @pytest.mark.spec("AUTH-4", "API-2")
    @pytest.mark.parametrize(
        "limits", [{"sms_max_per_network": 3, "max_pending_factors": 20}], indirect=True
    )
    async def test_one_client_network_gets_a_few_texts_an_hour(self, limits: Api) -> None:
        api = limits
        async with api.client() as client, api.client(ip=OTHER_IP) as elsewhere:
            alice = await ready_to_enrol(api, client)
            bob = await ready_to_enrol(api, client, "bob")
            carol = await ready_to_enrol(api, elsewhere, "carol")
            statuses = [
                (await enrol_sms(client, access, number(n))).status_code
                for n, access in enumerate((alice, alice, bob, bob))
            ]
            other_network = await enrol_sms(elsewhere, carol, number(20))
        assert statuses == [201, 201, 201, 429]
        assert other_network.status_code == 201
        assert await exceeded(api) == [["sms_per_network"]]

    @pytest.mark.spec("AUTH-4")
    @pytest.mark.parametrize(
        "limits",
        [{"sms_max_per_number": 2, "sms_max_per_user": 50, "max_pending_factors": 20}],
        indirect=True,
    )
    async def test_sign_in_codes_are_limited_but_not_blocked_by_enrolment_bombing(
        self, limits: Api
    ) -> None:
        api = limits
        async with api.client() as client, api.client(ip=OTHER_IP) as attacker:
            access = await ready_to_enrol(api, client)
            await enrol_sms_factor(api, client, access)  # alice's own number: +14155550123
            mallory = await ready_to_enrol(api, attacker, "mallory")
            bombing = [await enrol_sms(attacker, mallory, "+14155550123") for _ in range(3)]
            challenge = await login(client)
            sends = [
                await client.post(
                    "/api/v1/auth/mfa/send", json={"ticket": challenge["ticket"], "method": "sms"}
                )
                for _ in range(3)
            ]
        # Enrolling alice's number was refused after its quota (it had one enrolment text)...
        assert [r.status_code for r in bombing] == [201, 429, 429]
        # ... but her sign-in codes have a quota of their own, which is also enforced.
        assert [r.status_code for r in sends[:2]] == [200, 200]
        assert refused(sends[2])
        assert (await exceeded(api))[-1] == ["sms_per_number"]


async def register(
    client: httpx.AsyncClient, username: str, email: str, password: str = PASSWORD
) -> int:
    response = await client.post(
        "/api/v1/auth/register",
        json={"username": username, "email": email, "password": password},
    )
    return response.status_code


class TestSignUps:
    async def test_probing_a_taken_address_mails_its_owner_once_a_day(self, api: Api) -> None:
        async with api.client() as client:
            await register_verified(api, client)
            statuses = [await register(client, f"probe{n}", "alice@example.com") for n in range(10)]
            first_day = [
                m
                for m in await api.outbox(to="alice@example.com")
                if m["template"] == "register_existing"
            ]
            api.clock.advance(seconds=24 * 3600 + 1)
            await register(client, "probe10", "alice@example.com")
            second_day = [
                m
                for m in await api.outbox(to="alice@example.com")
                if m["template"] == "register_existing"
            ]
        assert statuses == [201] * 10
        assert len(first_day) == 1
        assert len(second_day) == 2

    @pytest.mark.spec("API-2")
    @pytest.mark.parametrize("limits", [{"signup_max_per_network": 3}], indirect=True)
    async def test_rejected_sign_ups_count_towards_the_network_quota(self, limits: Api) -> None:
        api = limits
        async with api.client() as client, api.client(ip=OTHER_IP) as elsewhere:
            statuses = [
                await register(client, "alice", "alice@example.com"),
                await register(client, "alice", "other@example.com"),  # username taken
                await register(client, "bob", "bob@example.com", password="password1"),  # weak
                await register(client, "carol", "carol@example.com"),
            ]
            other_network = await register(elsewhere, "carol", "carol@example.com")
        assert statuses == [201, 409, 422, 429]
        assert other_network == 201
        assert await exceeded(api) == [["signup_per_network"]]


async def resend(client: httpx.AsyncClient, email: str) -> httpx.Response:
    return await client.post("/api/v1/auth/email/verify/resend", json={"email": email})


def comparable(response: httpx.Response) -> tuple[int, dict[str, object]]:
    body = {k: v for k, v in response.json().items() if k not in {"request_id", "instance"}}
    return response.status_code, body


class TestVerificationResend:
    @pytest.mark.spec("AUTH-5")
    async def test_every_address_gets_the_same_answer_and_only_an_unverified_one_a_link(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            await register(client, "alice", "alice@example.com")
            await register_verified(api, client, "bob")
            before = len(await api.outbox())
            answers = [
                await resend(client, email)
                for email in (
                    "alice@example.com",
                    "bob@example.com",
                    "nobody@example.com",
                    "not-an-address",
                )
            ]
            after = len(await api.outbox())
            to_alice = [m["template"] for m in await api.outbox(to="alice@example.com")]
        assert len({str(comparable(a)) for a in answers}) == 1
        assert answers[0].status_code == 202
        assert after == before + 1
        assert to_alice == ["verify_email", "verify_email"]
        assert len(await audit_events(api, "identity:email:verification_resent")) == 1

    @pytest.mark.spec("AUTH-5")
    async def test_an_earlier_link_still_verifies_and_then_every_link_is_spent(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            await register(client, "alice", "alice@example.com")
            first = await api.last_token_in_mail("alice@example.com", "verify_email")
            api.clock.advance(seconds=1)  # the outbox lists mail in time order
            await resend(client, "alice@example.com")
            second = await api.last_token_in_mail("alice@example.com", "verify_email")
            verified = await client.post("/api/v1/auth/email/verify", json={"token": first})
            spent = await client.post("/api/v1/auth/email/verify", json={"token": second})
            after = await resend(client, "alice@example.com")
            mails = await api.outbox(to="alice@example.com")
        assert first != second
        assert verified.status_code == 200
        assert spent.status_code == 401
        assert after.status_code == 202
        assert [m["template"] for m in mails] == ["verify_email", "verify_email"]

    @pytest.mark.spec("AUTH-5")
    async def test_resends_are_limited_per_address_known_or_not(self, api: Api) -> None:
        async with api.client() as client:
            await register(client, "alice", "alice@example.com")
            known = [(await resend(client, "alice@example.com")).status_code for _ in range(4)]
            unknown = [(await resend(client, "nobody@example.com")).status_code for _ in range(4)]
            last = await resend(client, "nobody@example.com")
        assert known == unknown == [202, 202, 202, 429]
        assert refused(last)
        assert await exceeded(api) == [["verify_resend_per_address"]] * 3

    @pytest.mark.spec("AUTH-5", "API-2")
    @pytest.mark.parametrize("limits", [{"verify_resend_max_per_network": 4}], indirect=True)
    async def test_resends_are_limited_per_client_network(self, limits: Api) -> None:
        api = limits
        async with api.client() as client, api.client(ip=OTHER_IP) as elsewhere:
            statuses = [(await resend(client, f"u{n}@example.com")).status_code for n in range(5)]
            other_network = await resend(elsewhere, "u9@example.com")
        assert statuses == [202, 202, 202, 202, 429]
        assert other_network.status_code == 202
        assert await exceeded(api) == [["verify_resend_per_network"]]
