"""Takeover reviews and freezes worked by staff over the API (four-eyes lift), the emailed
link's page, and unusual trading after a risky sign-in (the sweep); SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.access import staff
from tests.support.api import Api, audit_events, bearer, is_problem
from tests.support.takeover import (
    GB,
    SE,
    answer,
    customer,
    fraud_of,
    frozen,
    prompt_token,
    sign_in_from,
    withdrawal,
    works,
)
from tests.support.trading import Trader, add_instrument, funded_account, street_order
from tradeguard.access.domain import Role
from tradeguard.config import Settings
from tradeguard.core.orders import Side
from tradeguard.fraud.tasks import sweep_once

TAKEOVER = "/api/v1/takeover"
SAMPLE_ID = "0190a3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Fast jets: the second sign-in minutes later from Sweden is new, not impossible.
    return settings.model_copy(update={"takeover_max_speed_kmh": 20_000.0})


async def denied_by_owner(api: Api) -> tuple[Any, Trader]:
    alice = await customer(api, ip=GB)
    api.clock.advance(seconds=600)
    intruder = await sign_in_from(api, alice, SE)
    assert (await answer(api, await prompt_token(api, alice), "no")).status_code == 200
    return alice, intruder


class TestStaffRoutes:
    async def test_anonymous_callers_and_customers_are_refused(self, api: Api) -> None:
        alice = await customer(api, ip=GB)
        calls: list[tuple[str, str, dict[str, Any] | None]] = [
            ("GET", f"{TAKEOVER}/reviews", None),
            ("GET", f"{TAKEOVER}/reviews/{SAMPLE_ID}", None),
            ("POST", f"{TAKEOVER}/reviews/{SAMPLE_ID}/assign", {"assignee": SAMPLE_ID}),
            (
                "POST",
                f"{TAKEOVER}/reviews/{SAMPLE_ID}/close",
                {"outcome": "false_alarm", "note": "x" * 5},
            ),
            ("GET", f"{TAKEOVER}/freezes", None),
            ("POST", f"{TAKEOVER}/freezes/{SAMPLE_ID}/lift-request", {"reason": "checked"}),
            ("POST", f"{TAKEOVER}/freezes/{SAMPLE_ID}/approve", None),
        ]
        async with api.client() as anonymous:
            for method, path, body in calls:
                response = await anonymous.request(method, path, json=body)
                assert response.status_code == 401, (path, response.text)
                mine = await alice.home.request(
                    method, path, json=body, headers=bearer(alice.access)
                )
                assert is_problem(mine, 403, "forbidden") or mine.status_code == 403, path

    @pytest.mark.spec("ATO-2")
    async def test_compliance_works_the_review_and_two_members_lift_the_freeze(
        self, api: Api
    ) -> None:
        alice, _ = await denied_by_owner(api)
        ada = await staff(api, api.client("198.51.100.30"), "ada", Role.COMPLIANCE)
        bob = await staff(api, api.client("198.51.100.31"), "bob", Role.COMPLIANCE)

        listed = await ada.get(f"{TAKEOVER}/reviews", params={"status": "open"})
        assert listed.status_code == 200, listed.text
        [review] = listed.json()
        assert (review["user_id"], review["trigger"]) == (alice.user_id, "owner_denied")
        shown = (await ada.get(f"{TAKEOVER}/reviews/{review['id']}")).json()
        [freeze] = shown["freezes"]
        assert [s["country"] for s in shown["sign_ins"]][:1] == ["SE"]
        assert (await ada.get(f"{TAKEOVER}/reviews/{SAMPLE_ID}")).status_code == 404
        # A freeze stays while its review is open.
        early = await ada.post(f"{TAKEOVER}/freezes/{freeze['id']}/lift-request", {"reason": "ok"})
        assert early.status_code == 422  # the reason is too short
        early = await ada.post(
            f"{TAKEOVER}/freezes/{freeze['id']}/lift-request", {"reason": "owner called back"}
        )
        assert is_problem(early, 409, "conflict"), early.text
        # Assigned to staff only.
        to_customer = await ada.post(
            f"{TAKEOVER}/reviews/{review['id']}/assign", {"assignee": alice.user_id}
        )
        assert to_customer.status_code == 422, to_customer.text
        assigned = await ada.post(
            f"{TAKEOVER}/reviews/{review['id']}/assign", {"assignee": bob.user_id}
        )
        assert assigned.json()["assignee"] == bob.user_id
        closed = await bob.post(
            f"{TAKEOVER}/reviews/{review['id']}/close",
            {"outcome": "false_alarm", "note": "the owner travelled; confirmed by phone"},
        )
        assert closed.status_code == 200, closed.text
        assert closed.json()["outcome"] == "false_alarm"
        again = await bob.post(
            f"{TAKEOVER}/reviews/{review['id']}/close",
            {"outcome": "false_alarm", "note": "twice"},
        )
        assert is_problem(again, 409, "conflict")
        # Four eyes: who asks cannot approve.
        asked = await ada.post(
            f"{TAKEOVER}/freezes/{freeze['id']}/lift-request", {"reason": "review closed"}
        )
        assert asked.status_code == 200, asked.text
        self_approved = await ada.post(f"{TAKEOVER}/freezes/{freeze['id']}/approve")
        assert is_problem(self_approved, 403, "four-eyes-required"), self_approved.text
        assert await frozen(api, alice.user_id)
        approved = await bob.post(f"{TAKEOVER}/freezes/{freeze['id']}/approve")
        assert approved.status_code == 200, approved.text
        assert approved.json()["lifted_by"] == bob.user_id
        assert not await frozen(api, alice.user_id)
        assert (await ada.get(f"{TAKEOVER}/freezes")).json() == []
        # Each step is in the ledger with the staff member as its actor.
        for event_type, who in (
            ("fraud:review:assigned", ada),
            ("fraud:review:closed", bob),
            ("fraud:freeze:lift_requested", ada),
            ("fraud:freeze:lifted", bob),
        ):
            [event] = await audit_events(api, event_type)
            assert event["actor"] == {"kind": "staff", "id": who.user_id}
            assert event["subject"] == {"kind": "user", "id": alice.user_id}

    async def test_traders_with_staff_like_requests_learn_nothing(self, api: Api) -> None:
        alice, _ = await denied_by_owner(api)
        ada = await staff(api, api.client("198.51.100.30"), "ada", Role.COMPLIANCE)
        bad = await ada.get(f"{TAKEOVER}/reviews", params={"status": "everything"})
        assert bad.status_code == 422
        unknown = await ada.get(f"{TAKEOVER}/reviews", params={"colour": "red"})
        assert unknown.status_code in {400, 422}
        assert (await ada.post(f"{TAKEOVER}/freezes/{SAMPLE_ID}/approve")).status_code == 404
        assert await frozen(api, alice.user_id)


class TestPromptPage:
    @pytest.mark.spec("ATO-2")
    async def test_the_emailed_link_opens_a_form_and_only_its_post_acts(self, api: Api) -> None:
        alice = await customer(api, ip=GB)
        api.clock.advance(seconds=600)
        await sign_in_from(api, alice, SE)
        token = await prompt_token(api, alice)
        async with api.client("198.51.100.40") as browser:
            page = await browser.get("/was-this-you", params={"answer": "no", "token": token})
            assert page.status_code == 200
            assert 'name="token"' in page.text
            assert "No, it was not me" in page.text
            assert not await frozen(api, alice.user_id)  # GET changes nothing
            broken = await browser.get("/was-this-you", params={"answer": "no", "token": "<b>"})
            assert broken.status_code == 400
            assert "<b>" not in broken.text
            form = {"token": token, "answer": "no"}
            headers = {"origin": "null", "sec-fetch-site": "same-origin"}
            cross = await browser.post(
                "/was-this-you", data=form, headers={"sec-fetch-site": "cross-site"}
            )
            assert cross.status_code == 403
            assert not await frozen(api, alice.user_id)
            done = await browser.post("/was-this-you", data=form, headers=headers)
            assert done.status_code == 200, done.text
            assert "secured" in done.text
            assert await frozen(api, alice.user_id)
            assert not await works(alice.home, alice.access)
            reused = await browser.post("/was-this-you", data=form, headers=headers)
            assert reused.status_code == 400


class TestUnusualTrading:
    @pytest.mark.spec("ATO-1", "ACCT-5")
    async def test_selling_most_positions_after_a_risky_sign_in_is_flagged_once(
        self, api: Api
    ) -> None:
        await add_instrument(api, "ACME", "10.00")
        alice = await customer(api, ip=GB)
        owner = Trader(alice.username, alice.user_id, alice.access, alice.home)
        account = await funded_account(api, owner, "10000.00")
        await street_order(api, "ACME", Side.SELL, 100, "10.00")
        bought = await owner.order(
            account,
            client_order_id="b1",
            symbol="ACME",
            side="buy",
            type="limit",
            quantity=100,
            limit_price="10.00",
        )
        assert bought.status_code == 201, bought.text
        api.clock.advance(seconds=600)
        intruder = await sign_in_from(api, alice, SE)  # 75: risky
        await street_order(api, "ACME", Side.BUY, 100, "10.00")

        async def sell(order_id: str, quantity: int) -> None:
            placed = await intruder.order(
                account,
                client_order_id=order_id,
                symbol="ACME",
                side="sell",
                type="limit",
                quantity=quantity,
                limit_price="10.00",
            )
            assert placed.status_code == 201, placed.text

        fraud = fraud_of(api)
        await sell("s1", 20)
        api.clock.advance(seconds=60)
        assert await sweep_once(fraud) == 0  # a fifth of the shares: nothing unusual
        await sell("s2", 40)
        api.clock.advance(seconds=60)
        assert await sweep_once(fraud) == 1
        [signal] = [
            e
            for e in await audit_events(api, "fraud:signal:raised")
            if e["data"]["signal"] == "unusual_trading"
        ]
        assert signal["data"]["evidence"]["sold_fraction"] == "0.6"
        assert signal["data"]["evidence"]["symbols"] == ["ACME"]
        # 75 + 60: the policy locks, with a review and a freeze.
        assert await frozen(api, alice.user_id)
        assert not await works(intruder.client, intruder.access)
        assert await sweep_once(fraud) == 0  # raised once per sign-in
        decision = await withdrawal(api, alice.user_id)
        assert not decision.allowed
