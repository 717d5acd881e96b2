"""Trading sessions from the NYSE calendar: market orders refused when closed, DAY orders
expiring at the close while GTC orders stay."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.support.api import Api, audit_events
from tests.support.trading import add_instrument, funded_account, signed_in_trader, trading_of
from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.trading.tasks import run_maintenance_once


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
        assert body["balances"]["cash_held"] == "190.015"  # only the GTC order's reservation
        expired = await audit_events(api, "trading:order:expired")
        assert [e["data"]["order_id"] for e in expired] == [day.json()["id"]]
