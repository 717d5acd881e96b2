"""Large withdrawals wait for two different staff members (WDL-3, four-eyes); the emailed
"this was not me" link refuses a withdrawal without a sign-in; a customer cancels one."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.support.api import Api, audit_events
from tests.support.funds import (
    Customer,
    add_bank,
    balances_of,
    confirm,
    customer,
    past_cooling,
    request_withdrawal,
    run_funds,
)
from tests.support.trading import reconcile, signed_in_staff
from tradeguard.access.domain import Role

PHONE = "+14155550104"


async def refuse_link(api: Api, who: Customer) -> str:
    mails = [m for m in await api.outbox(to=who.email) if m["template"] == "withdrawal_requested"]
    match = re.search(r"(/refuse-withdrawal\?token=[A-Za-z0-9_-]+)", mails[-1]["body"])
    assert match, mails[-1]["body"]
    return match.group(1)


async def submit_form(client: httpx.AsyncClient, link: str) -> httpx.Response:
    path, _, query = link.partition("?")
    return await client.post(
        path,
        content=query.encode(),
        headers={
            "content-type": "application/x-www-form-urlencoded",
            "origin": "null",
            "sec-fetch-site": "same-origin",
        },
    )


class TestFourEyesReview:
    @pytest.mark.spec("WDL-3")
    async def test_a_large_withdrawal_waits_for_two_different_staff_members(self, api: Api) -> None:
        async with api.client() as client, api.client("198.51.100.30") as staff_client:
            alice = await customer(api, client, "alice", phone=PHONE, cash="100000")
            await add_bank(api, alice)
            await past_cooling(api, alice)
            asked = (await request_withdrawal(alice, "10000.00")).json()
            held = await confirm(api, alice, asked["id"])
            assert held.json()["status"] == "in_review"
            # The customer is told it is held, not why; staff see why.
            assert held.json()["review_reason"] == "held for review"

            carol = await signed_in_staff(api, staff_client, "carol", Role.COMPLIANCE)
            dave = await signed_in_staff(api, staff_client, "dave", Role.COMPLIANCE)
            queue = (await carol.get("/api/v1/admin/funds/withdrawals/review")).json()
            assert [w["id"] for w in queue] == [asked["id"]]
            assert queue[0]["review_reason"].startswith("withdrawals of at least")

            first = await carol.post(f"/api/v1/admin/funds/withdrawals/{asked['id']}/approve")
            assert first.status_code == 200, first.text
            assert first.json()["status"] == "in_review"
            # The same person twice is not two pairs of eyes.
            again = await carol.post(f"/api/v1/admin/funds/withdrawals/{asked['id']}/approve")
            assert again.status_code == 409
            second = await dave.post(f"/api/v1/admin/funds/withdrawals/{asked['id']}/approve")
            assert second.json()["status"] == "sent"
            assert second.json()["first_approver"] == carol.user_id
            assert second.json()["decided_by"] == dave.user_id
        approvals = await audit_events(api, "funds:withdrawal:approved")
        assert [e["data"]["approval"] for e in approvals] == ["first", "second"]

    @pytest.mark.spec("WDL-3")
    async def test_a_refusal_in_review_gives_the_cash_back(self, api: Api) -> None:
        async with api.client() as client, api.client("198.51.100.30") as staff_client:
            alice = await customer(api, client, "alice", phone=PHONE, cash="100000")
            await add_bank(api, alice)
            await past_cooling(api, alice)
            before = await balances_of(alice)
            asked = (await request_withdrawal(alice, "25000.00")).json()
            await confirm(api, alice, asked["id"])
            carol = await signed_in_staff(api, staff_client, "carol", Role.COMPLIANCE)
            no_reason = await carol.post(
                f"/api/v1/admin/funds/withdrawals/{asked['id']}/refuse", {"reason": ""}
            )
            assert no_reason.status_code == 422
            done = await carol.post(
                f"/api/v1/admin/funds/withdrawals/{asked['id']}/refuse",
                {"reason": "destination does not match the customer's name"},
            )
            assert done.json()["status"] == "refused"
            assert await balances_of(alice) == before
            assert any(
                m["template"] == "withdrawal_refused" for m in await api.outbox(to=alice.email)
            )
        assert (await reconcile(api))["ok"] is True

    async def test_traders_and_support_cannot_reach_the_queue(self, api: Api) -> None:
        async with api.client() as client, api.client("198.51.100.30") as staff_client:
            alice = await customer(api, client, "alice", phone=PHONE, cash="100000")
            await add_bank(api, alice)
            await past_cooling(api, alice)
            asked = (await request_withdrawal(alice, "20000.00")).json()
            await confirm(api, alice, asked["id"])
            assert (await alice.get("/api/v1/admin/funds/withdrawals/review")).status_code == 403
            own = await alice.post(f"/api/v1/admin/funds/withdrawals/{asked['id']}/approve")
            assert own.status_code == 403
            sam = await signed_in_staff(api, staff_client, "sam", Role.SUPPORT)
            assert (
                await sam.post(f"/api/v1/admin/funds/withdrawals/{asked['id']}/approve")
            ).status_code == 403
            still = (await alice.get(f"/api/v1/funds/withdrawals/{asked['id']}")).json()
            assert still["status"] == "in_review"


class TestThisWasNotMe:
    @pytest.mark.spec("ATO-2")
    async def test_the_emailed_link_refuses_it_once_without_a_sign_in(self, api: Api) -> None:
        async with api.client() as client, api.client("192.0.2.44") as stranger:
            alice = await customer(api, client, "alice", phone=PHONE, cash="10000")
            await add_bank(api, alice)
            await past_cooling(api, alice)
            before = await balances_of(alice)
            asked = (await request_withdrawal(alice, "900.00")).json()
            link = await refuse_link(api, alice)
            # Opening the link (a mail scanner does) changes nothing.
            page = await stranger.get(link)
            assert page.status_code == 200
            assert "refuse" in page.text.lower()
            assert (await alice.get(f"/api/v1/funds/withdrawals/{asked['id']}")).json()[
                "status"
            ] == "awaiting_verification"
            refused = await submit_form(stranger, link)
            assert refused.status_code == 200, refused.text
            assert "Withdrawal refused" in refused.text
            reused = await submit_form(stranger, link)
            assert reused.status_code == 400
            # The owner said someone else acts for them: every session ended (ATO-2).
            assert (await alice.get("/api/v1/funds/withdrawals")).status_code == 401
            await alice.trader.sign_in_again()
            row = (await alice.get(f"/api/v1/funds/withdrawals/{asked['id']}")).json()
            assert row["status"] == "refused"
            assert await balances_of(alice) == before
            # Its codes no longer send it, and further withdrawals wait for the review.
            assert (await confirm(api, alice, asked["id"])).status_code == 409
            again = await request_withdrawal(alice, "10.00", key="after")
            assert again.status_code == 403
            assert again.json()["reason"] == "WITHDRAWALS_FROZEN"
        [event] = await audit_events(api, "funds:withdrawal:disowned")
        assert event["data"]["withdrawal_id"] == asked["id"]
        [frozen] = await audit_events(api, "fraud:withdrawals:frozen")
        assert frozen["data"]["reason"] == "withdrawal_disowned"

    async def test_a_forged_token_refuses_nothing(self, api: Api) -> None:
        async with api.client() as client:
            alice = await customer(api, client, "alice", phone=PHONE, cash="10000")
            await add_bank(api, alice)
            await past_cooling(api, alice)
            asked = (await request_withdrawal(alice, "900.00")).json()
            for token in ("A" * 43, "short", "<script>alert(1)</script>" + "x" * 20):
                response = await submit_form(client, f"/refuse-withdrawal?token={token}")
                assert response.status_code == 400
                assert "<script>" not in response.text
            row = (await alice.get(f"/api/v1/funds/withdrawals/{asked['id']}")).json()
            assert row["status"] == "awaiting_verification"

    async def test_too_late_once_the_money_is_sent(self, api: Api) -> None:
        async with api.client() as client:
            alice = await customer(api, client, "alice", phone=PHONE, cash="10000")
            await add_bank(api, alice)
            await past_cooling(api, alice)
            asked = (await request_withdrawal(alice, "900.00")).json()
            link = await refuse_link(api, alice)
            await confirm(api, alice, asked["id"])
            response = await submit_form(client, link)
            assert response.status_code == 409
            assert "already sent" in response.text


class TestCancelAndResend:
    async def test_a_customer_cancels_before_it_is_sent(self, api: Api) -> None:
        async with api.client() as client:
            alice = await customer(api, client, "alice", phone=PHONE, cash="10000")
            await add_bank(api, alice)
            await past_cooling(api, alice)
            before = await balances_of(alice)
            asked = (await request_withdrawal(alice, "400.00")).json()
            cancelled = await alice.post(f"/api/v1/funds/withdrawals/{asked['id']}/cancel")
            assert cancelled.json()["status"] == "cancelled"
            assert await balances_of(alice) == before
            twice = await alice.post(f"/api/v1/funds/withdrawals/{asked['id']}/cancel")
            assert twice.status_code == 409

    @pytest.mark.spec("ACCT-2")
    async def test_new_codes_replace_expired_ones(self, api: Api) -> None:
        async with api.client() as client:
            alice = await customer(api, client, "alice", phone=PHONE, cash="10000")
            await add_bank(api, alice)
            await past_cooling(api, alice)
            asked = (await request_withdrawal(alice, "400.00")).json()
            api.clock.advance(seconds=6 * 60)  # the codes (5 minutes) expired; it waits 15
            stale = await confirm(api, alice, asked["id"])
            assert stale.status_code == 401
            resent = await alice.post(f"/api/v1/funds/withdrawals/{asked['id']}/codes")
            assert resent.status_code == 202, resent.text
            assert (await confirm(api, alice, asked["id"])).json()["status"] == "sent"
            api.clock.advance(seconds=86_400)
            assert (await run_funds(api)).withdrawals == 1
        assert (await reconcile(api))["ok"] is True
