"""Account-takeover defence end to end through the API (ATO-1, ATO-2, ACCT-5), on SQLite and
PostgreSQL: signals at sign-in, the "was this you?" email and its single-use link, the
policy's responses, the withdrawal check the funds service calls, and the staff routes."""

from __future__ import annotations

import secrets

import pytest

from tests.support.api import (
    PASSWORD,
    PROBLEMS,
    Api,
    audit_events,
    bearer,
    is_problem,
    login,
    step_up,
)
from tests.support.takeover import (
    GB,
    GB_OTHER_NETWORK,
    SE,
    answer,
    counts,
    customer,
    frozen,
    prompt_token,
    prompts,
    raw_bodies,
    session_row,
    sign_in_from,
    withdrawal,
    works,
)
from tradeguard.config import Settings
from tradeguard.core.errors import InvalidInput


def signals_of(events: list[dict[str, object]]) -> set[str]:
    return {e["data"]["signal"] for e in events}  # type: ignore[index]


class TestSignInSignals:
    @pytest.mark.spec("ATO-1", "ATO-2", "ACCT-5")
    async def test_new_device_and_country_raise_signals_and_send_was_this_you(
        self, api: Api
    ) -> None:
        alice = await customer(api, ip=GB)
        assert await prompts(api, alice) == []
        api.clock.advance(seconds=2 * 3600)  # hours later: a flight, not impossible travel
        intruder = await sign_in_from(api, alice, SE)

        raised = await audit_events(api, "fraud:signal:raised")
        assert signals_of(raised) == {"new_device", "new_country", "new_network"}
        country = next(e for e in raised if e["data"]["signal"] == "new_country")
        assert country["data"]["evidence"] == {"country": "SE", "known_countries": ["GB"]}
        assert country["subject"] == {"kind": "user", "id": alice.user_id}
        # The address is in the sealed personal section (opened here with the user's key),
        # never in the event's plain data.
        assert country["personal"]["ip"] == SE
        for body in await raw_bodies(api):
            assert SE.encode() not in body
            assert GB.encode() not in body
        claims = api.services.verifier.verify(intruder.access)
        [assessed] = [
            e
            for e in await audit_events(api, "fraud:sign_in:assessed")
            if e["data"]["session_id"] == claims.session_id
        ]
        assert assessed["data"]["response"] == "verify"
        assert assessed["data"]["score"] == 75
        # verify: the "was this you?" email, and the sign-in's factor no longer counts as
        # fresh (a step-up before sensitive changes).
        [mail] = await prompts(api, alice)
        assert "answer=no&token=" in mail["body"]
        assert "from SE" in mail["body"]
        assert (await session_row(api, claims.session_id)).mfa_verified_ns is None
        assert (await session_row(api, alice.session_id)).mfa_verified_ns is not None
        assert not await frozen(api, alice.user_id)

    @pytest.mark.spec("ATO-1")
    async def test_impossible_travel_locks_the_account_and_opens_a_review(self, api: Api) -> None:
        alice = await customer(api, ip=GB)
        api.clock.advance(seconds=600)  # London to Stockholm in ten minutes
        assert await works(alice.home, alice.access)
        async with api.client(SE) as intruder:
            first = await login(intruder, alice.username)
            api.clock.advance(seconds=30)
            verified = await intruder.post(
                "/api/v1/auth/mfa/verify",
                json={
                    "ticket": first["ticket"],
                    "method": "totp",
                    "code": alice.totp.at(api.clock.now_ns() // 10**9),
                },
            )
        # No tokens for a session the defence ended at once: the account is locked.
        assert is_problem(verified, 429, "account-locked"), verified.text
        assert "did not look like the account owner" in verified.json()["detail"]
        assert int(verified.headers["retry-after"]) > 0
        assert "access_token" not in verified.text

        raised = await audit_events(api, "fraud:signal:raised")
        assert "impossible_travel" in signals_of(raised)
        travel = next(e for e in raised if e["data"]["signal"] == "impossible_travel")
        assert travel["data"]["evidence"]["from_country"] == "GB"
        assert travel["data"]["evidence"]["speed_kmh"] > 900
        # 20 + 40 + 15 + 70: lock, which includes a review and a withdrawal freeze.
        assert (await audit_events(api, "fraud:sign_in:assessed"))[-1]["data"]["response"] == (
            "lock"
        )
        assert await audit_events(api, "identity:account:locked")
        assert not await works(alice.home, alice.access)
        assert await frozen(api, alice.user_id)
        assert len(await audit_events(api, "fraud:review:opened")) == 1
        # The lock holds: the right password and code are refused until it ends.
        async with api.client(SE) as again:
            refused = await again.post(
                "/api/v1/auth/login", json={"login": alice.username, "password": PASSWORD}
            )
            assert refused.status_code in {401, 429}, refused.text
        decision = await withdrawal(api, alice.user_id)
        assert not decision.allowed
        assert decision.reason == "withdrawals_frozen"

    @pytest.mark.spec("ATO-2")
    async def test_a_known_device_on_another_network_of_its_country_stays_allowed(
        self, api: Api
    ) -> None:
        # A carrier's NAT moves the customer to another provider's addresses: the new
        # network is recorded, but by policy it alone only allows.
        alice = await customer(api, ip=GB)
        api.clock.advance(seconds=600)
        again = await sign_in_from(api, alice, GB_OTHER_NETWORK, same_device=True)

        assert signals_of(await audit_events(api, "fraud:signal:raised")) == {"new_network"}
        assessed = (await audit_events(api, "fraud:sign_in:assessed"))[-1]
        assert assessed["data"]["response"] == "allow"
        assert assessed["data"]["score"] == 15
        assert await prompts(api, alice) == []
        assert not await frozen(api, alice.user_id)
        assert await works(again.client, again.access)
        claims = api.services.verifier.verify(again.access)
        assert (await session_row(api, claims.session_id)).mfa_verified_ns is not None

    async def test_addresses_that_cannot_be_placed_raise_no_location_signal(self, api: Api) -> None:
        alice = await customer(api, ip="203.0.113.7")  # documentation range: not placed
        api.clock.advance(seconds=60)
        await sign_in_from(api, alice, "198.51.100.9")
        assert signals_of(await audit_events(api, "fraud:signal:raised")) == {"new_device"}
        assert await prompts(api, alice) == []


class TestWasThisYouLink:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        # Jets are fast here: London to Stockholm in minutes is no impossible travel, so
        # sessions signed in minutes apart are still alive when the link is answered.
        return settings.model_copy(update={"takeover_max_speed_kmh": 20_000.0})

    @pytest.mark.spec("ATO-2")
    async def test_no_signs_out_everywhere_freezes_withdrawals_and_opens_a_review(
        self, api: Api
    ) -> None:
        alice = await customer(api, ip=GB)
        api.clock.advance(seconds=600)
        intruder = await sign_in_from(api, alice, SE)
        token = await prompt_token(api, alice)
        assert await works(alice.home, alice.access)
        assert await works(intruder.client, intruder.access)

        response = await answer(api, token, "no")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["answer"] == "no"
        assert body["signed_out_sessions"] >= 2
        assert body["withdrawals_frozen"] is True
        assert body["review_opened"] is True
        assert not await works(alice.home, alice.access)
        assert not await works(intruder.client, intruder.access)
        assert await frozen(api, alice.user_id)
        decision = await withdrawal(api, alice.user_id)
        assert (decision.allowed, decision.reason) == (False, "withdrawals_frozen")
        [denied] = await audit_events(api, "fraud:prompt:denied")
        assert denied["actor"] == {"kind": "user", "id": alice.user_id}
        revoked = await audit_events(api, "identity:session:revoked")
        assert {e["data"]["reason"] for e in revoked} == {"takeover_reported"}

        # Used once: the same link again is refused and changes nothing.
        before = await counts(api)
        again = await answer(api, token, "no")
        assert is_problem(again, 404, "takeover-link-refused")
        assert await counts(api) == before
        assert is_problem(await answer(api, token, "yes"), 404, "takeover-link-refused")
        assert await counts(api) == before

    @pytest.mark.spec("ATO-2")
    async def test_the_question_also_goes_by_text_message_to_a_confirmed_phone(
        self, api: Api
    ) -> None:
        alice = await customer(api, ip=GB, phone="+14155550123")
        api.clock.advance(seconds=600)
        await sign_in_from(api, alice, SE)
        [text] = [
            m for m in await api.outbox(to="+14155550123") if m["template"] == "takeover_prompt"
        ]
        token = await prompt_token(api, alice)
        assert f"answer=no&token={token}" in text["body"]
        [sent] = await audit_events(api, "fraud:prompt:sent")
        assert sent["data"]["channels"] == ["email", "sms"]
        assert "+14155550123" not in str(sent["data"])
        assert (await answer(api, token, "no")).status_code == 200
        assert await frozen(api, alice.user_id)

    async def test_yes_dismisses_and_changes_no_session(self, api: Api) -> None:
        alice = await customer(api, ip=GB)
        api.clock.advance(seconds=600)
        traveller = await sign_in_from(api, alice, SE)
        response = await answer(api, await prompt_token(api, alice), "yes")
        assert response.status_code == 200, response.text
        assert response.json()["signed_out_sessions"] == 0
        assert await works(traveller.client, traveller.access)
        assert not await frozen(api, alice.user_id)
        assert len(await audit_events(api, "fraud:prompt:confirmed")) == 1
        # The confirmed sign-in no longer weighs on a withdrawal (only the factor enrolment
        # minutes ago does: a security change).
        decision = await withdrawal(api, alice.user_id)
        assert decision.allowed
        assert decision.score == 80
        assert decision.signals == ("security_change_withdrawal",)

    @pytest.mark.spec("ATO-2")
    async def test_an_expired_link_is_refused_and_changes_nothing(self, api: Api) -> None:
        alice = await customer(api, ip=GB)
        api.clock.advance(seconds=600)
        await sign_in_from(api, alice, SE)
        token = await prompt_token(api, alice)
        api.clock.advance(seconds=24 * 3600)
        before = await counts(api)
        assert is_problem(await answer(api, token, "no"), 404, "takeover-link-refused")
        assert await counts(api) == before
        assert not await frozen(api, alice.user_id)

    async def test_forged_malformed_and_another_users_tokens(self, api: Api) -> None:
        alice = await customer(api, "alice", ip=GB)
        bob = await customer(api, "bob", ip=GB)
        api.clock.advance(seconds=600)
        await sign_in_from(api, bob, SE)
        before = await counts(api)
        forged = await answer(api, secrets.token_urlsafe(32), "no")
        assert is_problem(forged, 404, "takeover-link-refused")
        for bad in (
            {"token": "short", "answer": "no"},
            {"token": "x" * 43 + "!", "answer": "no"},
            {"token": "x" * 200, "answer": "no"},
            {"token": secrets.token_urlsafe(32), "answer": "maybe"},
            {"token": secrets.token_urlsafe(32), "answer": "no", "user_id": alice.user_id},
            {"answer": "no"},
        ):
            async with api.client() as client:
                response = await client.post("/api/v1/takeover/answers", json=bad)
            assert response.status_code == 422, (bad, response.text)
            assert response.json()["type"].startswith(PROBLEMS)
        assert await counts(api) == before
        # A token names its own account only: Bob's "no" freezes Bob, never Alice.
        assert (await answer(api, await prompt_token(api, bob), "no")).status_code == 200
        assert await frozen(api, bob.user_id)
        assert not await frozen(api, alice.user_id)
        assert await works(alice.home, alice.access)


class TestWithdrawalCheck:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        # Jets are fast here: London to Stockholm in minutes is no impossible travel, so
        # sessions signed in minutes apart are still alive when the link is answered.
        return settings.model_copy(update={"takeover_max_speed_kmh": 20_000.0})

    async def test_a_quiet_account_may_withdraw(self, api: Api) -> None:
        alice = await customer(api, ip=GB)
        # Enrolling the first factor is a security change too: wait out its window.
        api.clock.advance(seconds=73 * 3600)
        decision = await withdrawal(api, alice.user_id)
        assert decision.allowed
        assert decision.signals == ()
        assert decision.response.value == "allow"

    @pytest.mark.spec("ATO-1", "ATO-2")
    async def test_new_country_then_password_change_then_withdrawal_is_blocked_and_reviewed(
        self, api: Api
    ) -> None:
        alice = await customer(api, ip=GB)
        api.clock.advance(seconds=600)
        intruder = await sign_in_from(api, alice, SE)
        change = {
            "current_password": "correct horse battery staple 42",
            "new_password": "an entirely different passphrase 77",
        }
        # The policy's step-up: the sign-in's own second factor no longer counts as fresh.
        refused = await intruder.client.put(
            "/api/v1/auth/password", json=change, headers=bearer(intruder.access)
        )
        assert is_problem(refused, 403, "step-up-required"), refused.text
        await step_up(api, intruder.client, intruder.access, alice.totp)
        changed = await intruder.client.put(
            "/api/v1/auth/password", json=change, headers=bearer(intruder.access)
        )
        assert changed.status_code == 200, changed.text
        fraud_changed = await withdrawal(api, alice.user_id, "25000.00")
        assert not fraud_changed.allowed
        assert fraud_changed.reason == "review"
        assert "security_change_withdrawal" in fraud_changed.signals
        assert fraud_changed.review_id is not None
        assert await frozen(api, alice.user_id)
        [assessed] = await audit_events(api, "fraud:withdrawal:assessed")
        assert assessed["data"]["amount"] == "25000.00"
        assert assessed["data"]["sign_in_score"] == 75
        # The owner's "no" joins the same review and freeze.
        assert (await answer(api, await prompt_token(api, alice), "no")).status_code == 200
        assert len(await audit_events(api, "fraud:review:opened")) == 1
        assert len(await audit_events(api, "fraud:withdrawals:frozen")) == 1

    async def test_a_non_positive_amount_is_refused(self, api: Api) -> None:
        alice = await customer(api, ip=GB)
        with pytest.raises(InvalidInput):
            await withdrawal(api, alice.user_id, "0")
        with pytest.raises(InvalidInput):
            await withdrawal(api, alice.user_id, "-5")
