"""Orders through the HTTP API: placement, reservation, idempotency, fills, cancels."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.support.api import Api, audit_events
from tests.support.trading import (
    account_body,
    add_instrument,
    funded_account,
    reconcile,
    signed_in_trader,
    street_order,
)
from tradeguard.core.orders import Side


@pytest.mark.spec("PRE-2", "AUD-1")
class TestPlacement:
    async def test_a_limit_order_is_acknowledged_reserved_and_audited(self, api: Api) -> None:
        await add_instrument(api, "AAPL", "200.00")
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            account = await funded_account(api, alice, "10000.00")
            response = await alice.order(
                account,
                client_order_id="c1",
                symbol="AAPL",
                side="buy",
                type="limit",
                quantity=10,
                limit_price="199.50",
            )
            assert response.status_code == 201, response.text
            order = response.json()
            assert order["status"] == "new"
            body = await account_body(alice, account)
        # 10 x 199.50 plus the commission estimate is held; cash itself has not moved.
        assert Decimal(body["balances"]["cash_held"]) == Decimal("1995.05")
        assert Decimal(body["balances"]["cash_settled"]) == Decimal("10000.00")
        assert Decimal(body["balances"]["buying_power"]) == Decimal("8004.95")
        placed = await audit_events(api, "trading:order:placed")
        assert placed[-1]["data"]["order_id"] == order["id"]
        assert (await reconcile(api))["ok"]


@pytest.mark.spec("PRE-2", "REG-1")
class TestRejects:
    async def test_an_order_beyond_buying_power_is_refused_with_its_code_and_audited(
        self, api: Api
    ) -> None:
        await add_instrument(api, "AAPL", "200.00")
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            account = await funded_account(api, alice, "1000.00")
            response = await alice.order(
                account,
                client_order_id="big",
                symbol="AAPL",
                side="buy",
                type="limit",
                quantity=10,
                limit_price="200.00",
            )
            body = await account_body(alice, account)
        assert response.status_code == 422, response.text
        problem = response.json()
        assert problem["code"] == "RISK_BUYING_POWER"
        assert response.headers["content-type"].startswith("application/problem+json")
        assert Decimal(body["balances"]["cash_held"]) == 0
        rejected = await audit_events(api, "risk:pretrade:rejected")
        assert rejected[-1]["data"]["code"] == "RISK_BUYING_POWER"
        assert rejected[-1]["data"]["client_order_id"] == "big"

    async def test_a_retry_of_a_refused_order_gets_the_same_refusal(self, api: Api) -> None:
        await add_instrument(api, "AAPL", "200.00")
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            account = await funded_account(api, alice, "1000.00")
            fields = dict(
                client_order_id="big",
                symbol="AAPL",
                side="buy",
                type="limit",
                quantity=10,
                limit_price="200.00",
            )
            first = await alice.order(account, **fields)
            await funded_account(api, alice, "0")
            again = await alice.order(account, **fields)
        assert first.status_code == again.status_code == 422
        assert first.json()["order_id"] == again.json()["order_id"]

    async def test_a_limit_price_outside_the_collar_is_refused(self, api: Api) -> None:
        await add_instrument(api, "AAPL", "200.00", tier=1)
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            account = await funded_account(api, alice, "100000.00")
            inside = await alice.order(
                account,
                client_order_id="in",
                symbol="AAPL",
                side="buy",
                type="limit",
                quantity=1,
                limit_price="210.00",
            )
            outside = await alice.order(
                account,
                client_order_id="out",
                symbol="AAPL",
                side="buy",
                type="limit",
                quantity=1,
                limit_price="210.01",
            )
        assert inside.status_code == 201, inside.text
        assert outside.status_code == 422
        assert outside.json()["code"] == "ORDER_PRICE_OUTSIDE_COLLAR"

    async def test_an_unknown_symbol_is_refused_not_crashed(self, api: Api) -> None:
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            account = await funded_account(api, alice, "1000.00")
            response = await alice.order(
                account,
                client_order_id="x",
                symbol="NOPE",
                side="buy",
                type="limit",
                quantity=1,
                limit_price="1.00",
            )
        assert response.status_code == 422
        assert response.json()["code"] == "INSTRUMENT_UNKNOWN"


class TestIdempotency:
    async def test_a_retried_client_order_id_returns_the_original_never_a_second(
        self, api: Api
    ) -> None:
        await add_instrument(api, "AAPL", "200.00")
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            account = await funded_account(api, alice, "10000.00")
            fields = dict(
                client_order_id="same",
                symbol="AAPL",
                side="buy",
                type="limit",
                quantity=5,
                limit_price="199.00",
            )
            first = await alice.order(account, **fields)
            second = await alice.order(account, **fields)
            orders = await alice.get(f"/api/v1/accounts/{account}/orders")
            reuse = await alice.order(account, **{**fields, "quantity": 6})
        assert first.status_code == second.status_code == 201
        assert second.headers["idempotent-replayed"] == "true"
        assert first.json()["id"] == second.json()["id"]
        assert len(orders.json()) == 1
        assert reuse.status_code == 409
        assert reuse.json()["type"].endswith("client-order-id-reused")
        assert reuse.json()["code"] == "CLIENT_ORDER_ID_REUSED"


@pytest.mark.spec("PRE-2", "AUD-1")
class TestExecutions:
    async def test_two_customers_trade_and_the_books_reconcile(self, api: Api) -> None:
        await add_instrument(api, "MSFT", "400.00")
        async with api.client() as client_a, api.client("198.51.100.9") as client_b:
            alice = await signed_in_trader(api, client_a, "alice")
            bob = await signed_in_trader(api, client_b, "bob")
            a_cash = await funded_account(api, alice, "50000.00")
            b_cash = await funded_account(api, bob, "50000.00")
            # Bob has no shares: selling needs a position, so he buys from the street first.
            await street_order(api, "MSFT", Side.SELL, 20, "400.50")
            got = await bob.order(
                b_cash,
                client_order_id="s0",
                symbol="MSFT",
                side="buy",
                type="limit",
                quantity=20,
                limit_price="400.50",
            )
            assert got.json()["status"] == "filled", got.text
            buy = await alice.order(
                a_cash,
                client_order_id="b1",
                symbol="MSFT",
                side="buy",
                type="limit",
                quantity=10,
                limit_price="401.00",
            )
            assert buy.status_code == 201, buy.text
            sell = await bob.order(
                b_cash,
                client_order_id="s1",
                symbol="MSFT",
                side="sell",
                type="limit",
                quantity=10,
                limit_price="401.00",
            )
            assert sell.status_code == 201, sell.text
            alice_order = await alice.get(f"/api/v1/accounts/{a_cash}/orders/{buy.json()['id']}")
            positions = await alice.get(f"/api/v1/accounts/{a_cash}/positions")
            executions = await bob.get(f"/api/v1/accounts/{b_cash}/executions")
            a_body = await account_body(alice, a_cash)
        assert sell.json()["status"] == "filled"
        assert alice_order.json()["status"] == "filled"
        assert alice_order.json()["average_price"] == "401.00"
        assert positions.json()[0]["quantity"] == 10
        assert {e["side"] for e in executions.json()} == {"buy", "sell"}
        # Alice paid 4010.00 + 0.05 commission; it is unsettled until T+1; nothing is held.
        assert Decimal(a_body["balances"]["cash_unsettled"]) == Decimal("-4010.05")
        assert Decimal(a_body["balances"]["cash_held"]) == 0
        report = await reconcile(api)
        assert report["ok"], report["problems"]
        executed = await audit_events(api, "trading:execution:created")
        # Bob's purchase from the street (one customer side), then Alice and Bob (two).
        assert len(executed) == 3

    async def test_a_market_order_without_liquidity_is_cancelled_and_releases_its_hold(
        self, api: Api
    ) -> None:
        await add_instrument(api, "AAPL", "200.00")
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            account = await funded_account(api, alice, "10000.00")
            response = await alice.order(
                account,
                client_order_id="m1",
                symbol="AAPL",
                side="buy",
                type="market",
                quantity=5,
            )
            body = await account_body(alice, account)
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "cancelled"
        assert response.json()["cancel_reason"] == "no_liquidity"
        assert Decimal(body["balances"]["cash_held"]) == 0
        assert (await reconcile(api))["ok"]


class TestCancel:
    async def test_a_cancel_releases_the_reservation_and_a_second_cancel_conflicts(
        self, api: Api
    ) -> None:
        await add_instrument(api, "AAPL", "200.00")
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            account = await funded_account(api, alice, "10000.00")
            placed = await alice.order(
                account,
                client_order_id="c1",
                symbol="AAPL",
                side="buy",
                type="limit",
                quantity=10,
                limit_price="195.00",
            )
            order_id = placed.json()["id"]
            cancelled = await alice.delete(f"/api/v1/accounts/{account}/orders/{order_id}")
            again = await alice.delete(f"/api/v1/accounts/{account}/orders/{order_id}")
            body = await account_body(alice, account)
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"
        assert again.status_code == 409
        assert Decimal(body["balances"]["cash_held"]) == 0
        assert (await reconcile(api))["ok"]
        assert (await audit_events(api, "trading:order:cancelled"))[-1]["data"][
            "order_id"
        ] == order_id
