"""Trading sessions from the NYSE calendar: market orders refused when closed, DAY orders
expiring at the close while GTC orders stay."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.api import Api, audit_events
from tests.support.trading import (
    add_instrument,
    funded_account,
    signed_in_trader,
    street_order,
    trading_of,
    withdraw,
)
from tradeguard.config import Settings
from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.core.orders import Side
from tradeguard.risk.domain import AccountType
from tradeguard.trading.tasks import open_the_market, run_maintenance_once


def move_to(api: Api, *when: int) -> None:
    target = int(datetime(*when, tzinfo=UTC).timestamp()) * NS_PER_SECOND  # type: ignore[misc]
    api.clock.advance(ns=target - api.clock.now_ns())


@pytest.mark.spec("PRE-4")
class TestSessionHours:
    async def test_after_the_close_market_orders_are_refused_and_limits_may_rest(
        self, api: Api
    ) -> None:
        await add_instrument(api, "AAPL", "200.00")
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            account = await funded_account(api, alice, "10000.00")
            move_to(api, 2026, 1, 5, 21, 10)  # Monday 16:10 New York: closed
            await alice.sign_in_again()
            market = await alice.order(
                account, client_order_id="m", symbol="AAPL", side="buy", type="market", quantity=1
            )
            ioc = await alice.order(
                account,
                client_order_id="i",
                symbol="AAPL",
                side="buy",
                type="limit",
                time_in_force="ioc",
                quantity=1,
                limit_price="199.00",
            )
            resting = await alice.order(
                account,
                client_order_id="g",
                symbol="AAPL",
                side="buy",
                type="limit",
                time_in_force="gtc",
                quantity=1,
                limit_price="199.00",
            )
        assert market.json()["code"] == "MARKET_CLOSED"
        assert ioc.json()["code"] == "MARKET_CLOSED"
        assert resting.status_code == 201

    async def test_day_orders_expire_at_the_close_and_release_their_hold_gtc_stays(
        self, api: Api
    ) -> None:
        await add_instrument(api, "AAPL", "200.00")
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            account = await funded_account(api, alice, "10000.00")
            day = await alice.order(
                account,
                client_order_id="d",
                symbol="AAPL",
                side="buy",
                type="limit",
                quantity=1,
                limit_price="190.00",
            )
            gtc = await alice.order(
                account,
                client_order_id="g",
                symbol="AAPL",
                side="buy",
                type="limit",
                time_in_force="gtc",
                quantity=1,
                limit_price="190.01",
            )
            assert gtc.status_code == 201, gtc.text
            move_to(api, 2026, 1, 5, 20, 59)  # 15:59: still open
            await run_maintenance_once(trading_of(api))
            await alice.sign_in_again()
            before = await alice.get(f"/api/v1/accounts/{account}/orders/{day.json()['id']}")
            move_to(api, 2026, 1, 5, 21, 0)  # 16:00: the close
            await run_maintenance_once(trading_of(api))
            await alice.sign_in_again()
            after = await alice.get(f"/api/v1/accounts/{account}/orders/{day.json()['id']}")
            kept = await alice.get(f"/api/v1/accounts/{account}/orders/{gtc.json()['id']}")
            body = (await alice.get(f"/api/v1/accounts/{account}")).json()
        assert before.json()["status"] == "new"
        assert after.json()["status"] == "expired"
        assert after.json()["cancel_reason"] == "expired"
        assert kept.json()["status"] == "new"
        assert body["balances"]["cash_held"] == "190.02"  # only the GTC order's reservation
        expired = await audit_events(api, "trading:order:expired")
        assert [e["data"]["order_id"] for e in expired] == [day.json()["id"]]


@pytest.mark.spec("PRE-4")
class TestNothingMatchesWhileClosed:
    async def test_a_crossing_order_after_the_close_waits_for_the_open_and_books_there(
        self, api: Api
    ) -> None:
        await add_instrument(api, "AAPL", "200.00")
        services = trading_of(api)
        async with api.client() as client_a, api.client("198.51.100.9") as client_b:
            alice = await signed_in_trader(api, client_a, "alice")
            bob = await signed_in_trader(api, client_b, "bob")
            a_account = await funded_account(api, alice, "10000.00")
            b_account = await funded_account(api, bob, "10000.00")
            # Alice owns shares, bought from the street during the session.
            street = await street_order(api, "AAPL", Side.SELL, 5, "200.00")
            bought = await alice.order(
                a_account,
                client_order_id="b0",
                symbol="AAPL",
                side="buy",
                type="limit",
                quantity=5,
                limit_price="200.00",
            )
            await withdraw(api, "AAPL", street)
            assert bought.json()["status"] == "filled"
            move_to(api, 2026, 1, 5, 21, 30)  # Monday 16:30 New York: closed
            await alice.sign_in_again()
            await bob.sign_in_again()
            sell = await alice.order(
                a_account,
                client_order_id="s1",
                symbol="AAPL",
                side="sell",
                type="limit",
                time_in_force="gtc",
                quantity=5,
                limit_price="199.00",
            )
            buy = await bob.order(
                b_account,
                client_order_id="b1",
                symbol="AAPL",
                side="buy",
                type="limit",
                time_in_force="gtc",
                quantity=5,
                limit_price="199.00",
            )
            assert sell.json()["status"] == "new"
            assert buy.json()["status"] == "new"
            move_to(api, 2026, 1, 6, 14, 31)  # Tuesday 09:31: the session is open
            assert await open_the_market(services, was_open=False)
            await bob.sign_in_again()
            after = await bob.get(f"/api/v1/accounts/{b_account}/orders/{buy.json()['id']}")
            executions = await bob.get(f"/api/v1/accounts/{b_account}/executions")
        assert after.json()["status"] == "filled"
        assert executions.json()[0]["trading_date"] == "2026-01-06"
        assert executions.json()[0]["settlement_date"] == "2026-01-07"


class TestAlwaysOpenMarket:
    @pytest.fixture
    def settings(self, tmp_path: Path) -> Settings:
        return Settings(data_dir=tmp_path / "var", market_hours="always", _env_file=None)  # type: ignore[call-arg]

    @pytest.mark.spec("PRE-4")
    async def test_a_weekend_day_trade_books_to_monday_and_counts_for_pdt(self, api: Api) -> None:
        await add_instrument(api, "AAPL", "200.00")
        move_to(api, 2026, 1, 10, 15)  # Saturday
        async with api.client() as client:
            bob = await signed_in_trader(api, client, "bob")
            margin = await funded_account(api, bob, "20000.00", AccountType.MARGIN)
            for side, street_side, cid in (("buy", Side.SELL, "b"), ("sell", Side.BUY, "s")):
                street = await street_order(api, "AAPL", street_side, 5, "200.00")
                done = await bob.order(
                    margin,
                    client_order_id=cid,
                    symbol="AAPL",
                    side=side,
                    type="limit",
                    quantity=5,
                    limit_price="200.00",
                )
                await withdraw(api, "AAPL", street)
                assert done.json()["status"] == "filled", done.text
            body = (await bob.get(f"/api/v1/accounts/{margin}")).json()
            executions = (await bob.get(f"/api/v1/accounts/{margin}/executions")).json()
        assert body["day_trades_in_window"] == 1
        assert {e["trading_date"] for e in executions} == {"2026-01-12"}
        assert {e["settlement_date"] for e in executions} == {"2026-01-13"}
