"""Deposits through the sandbox processor: ACH credited at once but not withdrawable until
collected; wires credited on arrival; an ACH return after the money bought shares leaves a
documented debit balance, closing-only trading and no withdrawal."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.support.api import PROBLEMS, Api, audit_events
from tests.support.funds import (
    Customer,
    add_bank,
    balances_of,
    customer,
    past_cooling,
    request_withdrawal,
    run_funds,
)
from tests.support.trading import add_instrument, reconcile, street_order
from tradeguard.core.orders import Side

PHONE = "+14155550102"


async def deposit(
    who: Customer, amount: str, *, rail: str = "ach", key: str | None = None
) -> dict[str, Any]:
    response = await who.post(
        "/api/v1/funds/deposits",
        {
            "account_id": who.account_id,
            "bank_account_id": who.bank_account_id,
            "rail": rail,
            "amount": amount,
            "idempotency_key": key or f"d-{amount}-{rail}",
        },
    )
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


class TestDeposits:
    async def test_ach_is_credited_at_once_and_settles_the_next_day(self, api: Api) -> None:
        async with api.client() as client:
            alice = await customer(api, client, "alice", phone=PHONE, cash="0")
            await add_bank(api, alice)
            made = await deposit(alice, "5000.00")
            assert made["status"] == "pending"
            assert (await balances_of(alice))["cash_settled"] == Decimal(5000)
            api.clock.advance(seconds=86_400)
            assert (await run_funds(api)).deposits == 1
            await alice.trader.sign_in_again()
            row = (await alice.get(f"/api/v1/funds/deposits/{made['id']}")).json()
            assert row["status"] == "settled"
            assert (await balances_of(alice))["cash_settled"] == Decimal(5000)
        assert (await reconcile(api))["ok"] is True

    async def test_a_wire_is_credited_when_it_arrives(self, api: Api) -> None:
        async with api.client() as client:
            alice = await customer(api, client, "alice", phone=PHONE, cash="0")
            await add_bank(api, alice)
            await deposit(alice, "20000.00", rail="wire")
            assert (await balances_of(alice))["cash_settled"] == 0
            api.clock.advance(seconds=601)
            assert (await run_funds(api)).deposits == 1
            assert (await balances_of(alice))["cash_settled"] == Decimal(20000)
        assert (await reconcile(api))["ok"] is True

    async def test_an_uncollected_deposit_cannot_be_withdrawn(self, api: Api) -> None:
        async with api.client() as client:
            alice = await customer(api, client, "alice", phone=PHONE, cash="0")
            await add_bank(api, alice)
            await past_cooling(api, alice)
            await deposit(alice, "3000.00")  # collected tomorrow: pending now
            response = await request_withdrawal(alice, "1.00")
            assert response.status_code == 403
            assert response.json()["reason"] == "INSUFFICIENT_WITHDRAWABLE_CASH"

    async def test_a_retry_with_the_same_key_makes_one_deposit(self, api: Api) -> None:
        async with api.client() as client:
            alice = await customer(api, client, "alice", phone=PHONE, cash="0")
            await add_bank(api, alice)
            first = await deposit(alice, "100.00", key="same")
            again = await deposit(alice, "100.00", key="same")
            assert first["id"] == again["id"]
            assert (await balances_of(alice))["cash_settled"] == Decimal(100)
            clash = await alice.post(
                "/api/v1/funds/deposits",
                {
                    "account_id": alice.account_id,
                    "bank_account_id": alice.bank_account_id,
                    "amount": "101.00",
                    "idempotency_key": "same",
                },
            )
            assert clash.status_code == 409

    async def test_the_uncollected_total_is_capped(self, api: Api) -> None:
        async with api.client() as client:
            alice = await customer(api, client, "alice", phone=PHONE, cash="0")
            await add_bank(api, alice)
            await deposit(alice, "50000.00", key="a")
            over = await alice.post(
                "/api/v1/funds/deposits",
                {
                    "account_id": alice.account_id,
                    "bank_account_id": alice.bank_account_id,
                    "amount": "1.00",
                    "idempotency_key": "b",
                },
            )
            assert over.status_code == 409
            assert (await balances_of(alice))["cash_settled"] == Decimal(50000)

    @pytest.mark.parametrize(
        "body",
        [
            {"amount": "0.99"},
            {"amount": "-5.00"},
            {"amount": "1e3"},
            {"amount": 100},
            {"amount": "100.001"},
            {"amount": "250000.01"},
            {"rail": "card"},
            {"rail": "crypto"},
            {"account_id": "not-an-id"},
            {"extra": "field"},
        ],
    )
    async def test_bad_input_is_a_problem_and_changes_nothing(
        self, api: Api, body: dict[str, Any]
    ) -> None:
        async with api.client() as client:
            alice = await customer(api, client, "alice", phone=PHONE, cash="0")
            await add_bank(api, alice)
            request = {
                "account_id": alice.account_id,
                "bank_account_id": alice.bank_account_id,
                "rail": "ach",
                "amount": "100.00",
                "idempotency_key": "k",
            } | body
            response = await alice.post("/api/v1/funds/deposits", request)
            assert response.status_code == 422, response.text
            assert response.headers["content-type"] == "application/problem+json"
            assert (await alice.get("/api/v1/funds/deposits")).json() == []
            assert (await balances_of(alice))["cash_settled"] == 0

    async def test_into_someone_elses_account_or_from_their_bank_is_not_found(
        self, api: Api
    ) -> None:
        async with api.client() as client, api.client("198.51.100.20") as other:
            alice = await customer(api, client, "alice", phone=PHONE, cash="0")
            await add_bank(api, alice)
            mallory = await customer(api, other, "mallory", phone="+14155550199", cash="0")
            await add_bank(api, mallory, "000987654321")
            for account_id, bank_id in (
                (alice.account_id, mallory.bank_account_id),
                (mallory.account_id, alice.bank_account_id),
            ):
                response = await mallory.post(
                    "/api/v1/funds/deposits",
                    {
                        "account_id": account_id,
                        "bank_account_id": bank_id,
                        "amount": "100.00",
                        "idempotency_key": f"x-{account_id[:8]}",
                    },
                )
                assert response.status_code == 404, response.text
            assert (await balances_of(alice))["cash_settled"] == 0


class TestAchReturn:
    async def test_a_return_after_buying_shares_leaves_a_debit_and_no_withdrawal(
        self, api: Api
    ) -> None:
        await add_instrument(api, "KO", "60.00")
        async with api.client() as client:
            # A bank account number ending 0001: the sandbox returns its debits (R01).
            alice = await customer(api, client, "alice", phone=PHONE, cash="0")
            await add_bank(api, alice, "000555550001")
            await deposit(alice, "5000.00")
            await street_order(api, "KO", Side.SELL, 60, "60.00")
            bought = await alice.trader.order(
                alice.account_id,
                client_order_id="b1",
                symbol="KO",
                side="buy",
                type="limit",
                quantity=60,
                limit_price="60.00",
            )
            assert bought.json()["status"] == "filled", bought.text

            api.clock.advance(seconds=86_400)
            assert (await run_funds(api)).deposits == 1
            await alice.trader.sign_in_again()
            balances = await balances_of(alice)
            # The credit is reversed: the 3,600 of shares and their fee are now owed
            # (docs/funds.md).
            owed = balances["cash_settled"] + min(balances["cash_unsettled"], Decimal(0))
            fees = Decimal(bought.json()["fees"])
            assert owed == -(Decimal(3600) + fees)
            account = (await alice.get(f"/api/v1/accounts/{alice.account_id}")).json()
            assert account["trading_state"] == "REDUCING"
            mail = [
                m for m in await api.outbox(to=alice.email) if m["template"] == "deposit_returned"
            ]
            assert mail
            assert "R01" in mail[-1]["body"]

            await past_cooling(api, alice)
            refused = await request_withdrawal(alice, "1.00")
            assert refused.status_code == 403
            assert refused.json()["type"] == PROBLEMS + "withdrawal-refused"
            assert refused.json()["reason"] == "DEBIT_BALANCE"
            # Buying more is refused too: the account only reduces now.
            more = await alice.trader.order(
                alice.account_id,
                client_order_id="b2",
                symbol="KO",
                side="buy",
                type="limit",
                quantity=1,
                limit_price="60.00",
            )
            assert more.json().get("status") != "filled"
        [event] = [e for e in await audit_events(api, "funds:deposit:returned")]
        assert event["data"]["return_code"] == "R01"
        assert Decimal(event["data"]["debit_balance"]) == owed
        assert (await reconcile(api))["ok"] is True


class TestLateReturn:
    """A deposit already collected may still come back: the customer's bank returns an
    unauthorized ACH debit up to 60 days after it settled (the sandbox: accounts ending 0020,
    three days after settling)."""

    async def test_an_unauthorized_return_after_settling_takes_the_money_back(
        self, api: Api
    ) -> None:
        await add_instrument(api, "KO", "60.00")
        async with api.client() as client:
            alice = await customer(api, client, "alice", phone=PHONE, cash="0")
            bank_id = await add_bank(api, alice, "000555550020")
            made = await deposit(alice, "5000.00")
            api.clock.advance(seconds=86_400)
            assert (await run_funds(api)).deposits == 1
            await alice.trader.sign_in_again()
            row = (await alice.get(f"/api/v1/funds/deposits/{made['id']}")).json()
            assert row["status"] == "settled"
            # Collected: the customer spends it.
            await street_order(api, "KO", Side.SELL, 50, "60.00")
            bought = await alice.trader.order(
                alice.account_id,
                client_order_id="late1",
                symbol="KO",
                side="buy",
                type="limit",
                quantity=50,
                limit_price="60.00",
            )
            assert bought.json()["status"] == "filled", bought.text
            # Two days on, nothing yet: still settled.
            api.clock.advance(seconds=2 * 86_400)
            assert (await run_funds(api)).late_returns == 0
            # Three days after settling, the bank says the debit was never authorized.
            api.clock.advance(seconds=86_400)
            assert (await run_funds(api)).late_returns == 1
            assert (await run_funds(api)).late_returns == 0  # booked once
            await alice.trader.sign_in_again()
            row = (await alice.get(f"/api/v1/funds/deposits/{made['id']}")).json()
            assert row["status"] == "returned"
            balances = await balances_of(alice)
            owed = balances["cash_settled"] + min(balances["cash_unsettled"], Decimal(0))
            assert owed == -(Decimal(3000) + Decimal(bought.json()["fees"]))
            account = (await alice.get(f"/api/v1/accounts/{alice.account_id}")).json()
            assert account["trading_state"] == "REDUCING"
            banks = (await alice.get("/api/v1/funds/bank-accounts")).json()
            assert [b["status"] for b in banks if b["id"] == bank_id] == ["blocked"]
        [event] = await audit_events(api, "funds:deposit:returned")
        assert event["data"]["return_code"] == "R10"
        assert event["data"]["after_settlement"] is True
        assert event["data"]["unauthorized"] is True
        # R10 is a takeover signal: the profile's withdrawals are frozen (ATO-2).
        assert await audit_events(api, "fraud:withdrawals:frozen")
        # The money left the firm's bank, not the rail it had already arrived on.
        assert (await reconcile(api))["ok"] is True

    async def test_a_deposit_past_its_return_window_is_no_longer_asked_about(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            alice = await customer(api, client, "alice", phone=PHONE, cash="0")
            await add_bank(api, alice)
            await deposit(alice, "100.00")
            api.clock.advance(seconds=86_400)
            assert (await run_funds(api)).deposits == 1
            funds = api.app.state.funds
            async with funds.sessions() as session:
                assert len(await funds.deposits.in_return_window(session, after_id=None)) == 1
            api.clock.advance(seconds=61 * 86_400)
            async with funds.sessions() as session:
                assert await funds.deposits.in_return_window(session, after_id=None) == []
