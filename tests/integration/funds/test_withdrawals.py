"""Withdrawals end to end through the API (ACCT-2, WDL-1..4): confirmed destinations only,
a fresh second factor, an emailed and a texted code, limits, cooling periods, review by two
staff members, the "this was not me" link, and the processor's answer."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.support.api import PROBLEMS, Api, audit_events
from tests.support.funds import (
    add_bank,
    balances_of,
    confirm,
    customer,
    past_cooling,
    request_withdrawal,
    run_funds,
    withdrawal_codes,
)
from tests.support.trading import reconcile

PHONE = "+14155550101"


def refused(response: object, reason: str) -> bool:
    body = response.json()  # type: ignore[attr-defined]
    return (
        response.status_code == 403  # type: ignore[attr-defined]
        and body["type"] == PROBLEMS + "withdrawal-refused"
        and body["reason"] == reason
    )


class TestWithdrawalEndToEnd:
    @pytest.mark.spec("ACCT-2")
    async def test_codes_by_email_and_sms_send_it_and_the_bank_pays_it(self, api: Api) -> None:
        async with api.client() as client:
            alice = await customer(api, client, "alice", phone=PHONE)
            await add_bank(api, alice)
            await past_cooling(api, alice)
            before = await balances_of(alice)

            asked = await request_withdrawal(alice, "2500.00")
            assert asked.status_code == 202, asked.text
            body = asked.json()
            assert body["status"] == "awaiting_verification"
            assert body["codes_sent"]["phone"] == "…01"
            # The cash is out of reach at once: neither spendable nor withdrawable twice.
            during = await balances_of(alice)
            assert during["cash_settled"] == before["cash_settled"] - Decimal("2500")
            assert during["cash_withdrawing"] == Decimal("2500")

            done = await confirm(api, alice, body["id"])
            assert done.status_code == 200, done.text
            assert done.json()["status"] == "sent"

            api.clock.advance(seconds=86_400)
            assert (await run_funds(api)).withdrawals == 1
            await alice.trader.sign_in_again()
            final = (await alice.get(f"/api/v1/funds/withdrawals/{body['id']}")).json()
            assert final["status"] == "completed"
            after = await balances_of(alice)
            assert after["cash_withdrawing"] == 0
            assert after["cash_settled"] == before["cash_settled"] - Decimal("2500")
        assert (await reconcile(api))["ok"] is True
        types = [e["type"] for e in await audit_events(api) if e["type"].startswith("funds:")]
        for expected in (
            "funds:withdrawal:requested",
            "funds:withdrawal:verified",
            "funds:withdrawal:sent",
            "funds:withdrawal:completed",
        ):
            assert expected in types

    @pytest.mark.spec("ACCT-2")
    async def test_one_right_code_is_not_enough(self, api: Api) -> None:
        async with api.client() as client:
            alice = await customer(api, client, "alice", phone=PHONE)
            await add_bank(api, alice)
            await past_cooling(api, alice)
            asked = (await request_withdrawal(alice, "100.00")).json()
            email_code, sms_code = await withdrawal_codes(api, alice)
            wrong_sms = f"{(int(sms_code) + 1) % 1_000_000:06d}"
            wrong_email = f"{(int(email_code) + 1) % 1_000_000:06d}"
            for pair in ((email_code, wrong_sms), (wrong_email, sms_code)):
                response = await alice.post(
                    f"/api/v1/funds/withdrawals/{asked['id']}/confirm",
                    {"email_code": pair[0], "sms_code": pair[1]},
                )
                assert response.status_code == 422
                assert response.json()["type"] == PROBLEMS + "codes-rejected"
            still = (await alice.get(f"/api/v1/funds/withdrawals/{asked['id']}")).json()
            assert still["status"] == "awaiting_verification"
            # The right pair still works (each wrong try spent one guess of five).
            assert (await confirm(api, alice, asked["id"])).json()["status"] == "sent"

    @pytest.mark.spec("ACCT-2")
    async def test_codes_for_one_withdrawal_do_not_confirm_another(self, api: Api) -> None:
        async with api.client() as client:
            alice = await customer(api, client, "alice", phone=PHONE)
            await add_bank(api, alice)
            await past_cooling(api, alice)
            first = (await request_withdrawal(alice, "100.00", key="one")).json()
            codes = await withdrawal_codes(api, alice)
            second = (await request_withdrawal(alice, "200.00", key="two")).json()
            response = await alice.post(
                f"/api/v1/funds/withdrawals/{second['id']}/confirm",
                {"email_code": codes[0], "sms_code": codes[1]},
            )
            assert response.status_code == 422
            assert (await confirm(api, alice, second["id"])).status_code == 200
            assert first["status"] == "awaiting_verification"

    @pytest.mark.spec("ACCT-2")
    async def test_without_a_fresh_second_factor_it_asks_for_a_step_up(self, api: Api) -> None:
        async with api.client() as client:
            alice = await customer(api, client, "alice", phone=PHONE)
            await add_bank(api, alice)
            api.clock.advance(seconds=49 * 3600)
            await alice.trader.sign_in_again()
            api.clock.advance(seconds=660)  # the sign-in's second factor is no longer fresh
            response = await request_withdrawal(alice, "100.00")
            assert response.status_code in (401, 403), response.text
            assert "step-up" in response.text
            assert (await balances_of(alice))["cash_withdrawing"] == 0

    @pytest.mark.spec("ACCT-2")
    async def test_no_phone_no_withdrawal(self, api: Api) -> None:
        async with api.client() as client:
            bob = await customer(api, client, "bob", phone=PHONE, sms=False)
            await add_bank(api, bob)
            await past_cooling(api, bob)
            assert refused(await request_withdrawal(bob, "100.00"), "NO_SMS_FACTOR")

    async def test_a_retry_with_the_same_key_is_the_same_withdrawal(self, api: Api) -> None:
        async with api.client() as client:
            alice = await customer(api, client, "alice", phone=PHONE)
            await add_bank(api, alice)
            await past_cooling(api, alice)
            first = await request_withdrawal(alice, "300.00", key="k1")
            again = await request_withdrawal(alice, "300.00", key="k1")
            assert first.status_code == 202
            assert again.status_code == 200
            assert first.json()["id"] == again.json()["id"]
            other = await request_withdrawal(alice, "301.00", key="k1")
            assert other.status_code == 409
            assert (await balances_of(alice))["cash_withdrawing"] == Decimal("300")

    async def test_unconfirmed_withdrawals_expire_and_give_the_cash_back(self, api: Api) -> None:
        async with api.client() as client:
            alice = await customer(api, client, "alice", phone=PHONE)
            await add_bank(api, alice)
            await past_cooling(api, alice)
            before = await balances_of(alice)
            asked = (await request_withdrawal(alice, "700.00")).json()
            api.clock.advance(seconds=16 * 60)
            assert (await run_funds(api)).expired == 1
            await alice.trader.sign_in_again()
            after = await balances_of(alice)
            assert after == before
            row = (await alice.get(f"/api/v1/funds/withdrawals/{asked['id']}")).json()
            assert row["status"] == "expired"
            late = await confirm(api, alice, asked["id"])
            assert late.status_code == 409
        assert (await reconcile(api))["ok"] is True
