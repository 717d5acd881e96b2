"""T+1 settlement, Reg SHO (locates, pre-borrows, Rule 204 close-out) and FINRA 4210 PDT,
end to end through the API with the injectable clock."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tests.support.api import Api, audit_events
from tests.support.trading import (
    Trader,
    account_body,
    add_instrument,
    funded_account,
    reconcile,
    signed_in_staff,
    signed_in_trader,
    street_order,
    trading_of,
    withdraw,
)
from tradeguard.access.domain import Role
from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.core.orders import Side
from tradeguard.risk.domain import AccountType
from tradeguard.trading.tasks import run_maintenance_once


async def at(api: Api, when: tuple[int, ...], *people: Trader) -> None:
    """Move the frozen clock forward to a UTC moment; the people sign in again (their
    sessions ended while the clock moved)."""
    target = int(datetime(*when, tzinfo=UTC).timestamp()) * NS_PER_SECOND  # type: ignore[misc]
    api.clock.advance(ns=target - api.clock.now_ns())
    for person in people:
        await person.sign_in_again()


async def buy_from_street(
    api: Api, trader: Trader, account: str, symbol: str, qty: int, price: str, cid: str
) -> None:
    street = await street_order(api, symbol, Side.SELL, qty, price)
    response = await trader.order(
        account,
        client_order_id=cid,
        symbol=symbol,
        side="buy",
        type="limit",
        quantity=qty,
        limit_price=price,
    )
    await withdraw(api, symbol, street)
    assert response.json()["status"] == "filled", response.text


async def sell_to_street(
    api: Api,
    trader: Trader,
    account: str,
    symbol: str,
    qty: int,
    price: str,
    cid: str,
    side: str = "sell",
) -> dict[str, object]:
    street = await street_order(api, symbol, Side.BUY, qty, price)
    response = await trader.order(
        account,
        client_order_id=cid,
        symbol=symbol,
        side=side,
        type="limit",
        quantity=qty,
        limit_price=price,
    )
    await withdraw(api, symbol, street)
    assert response.status_code in (201, 422), response.text
    body: dict[str, object] = response.json()
    return body


class TestSettlement:
    async def test_trades_settle_on_the_next_business_day_moving_cash_from_unsettled(
        self, api: Api
    ) -> None:
        await add_instrument(api, "AAPL", "200.00")
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            account = await funded_account(api, alice, "10000.00")
            await buy_from_street(api, alice, account, "AAPL", 10, "200.00", "b1")
            before = await account_body(alice, account)
            await at(api, (2026, 1, 5, 22), alice)  # Monday evening: T+1 has not come
            await run_maintenance_once(trading_of(api))
            same_day = await account_body(alice, account)
            await at(api, (2026, 1, 6, 15), alice)  # Tuesday: settlement date
            await run_maintenance_once(trading_of(api))
            after = await account_body(alice, account)
            executions = await alice.get(f"/api/v1/accounts/{account}/executions")
        assert Decimal(before["balances"]["cash_unsettled"]) == Decimal("-2000.05")
        assert same_day["balances"] == before["balances"] | {
            "long_market_value": same_day["balances"]["long_market_value"],
            "short_market_value": same_day["balances"]["short_market_value"],
            "equity": same_day["balances"]["equity"],
            "buying_power": same_day["balances"]["buying_power"],
        }
        assert Decimal(after["balances"]["cash_unsettled"]) == 0
        assert Decimal(after["balances"]["cash_settled"]) == Decimal("7999.95")
        assert executions.json()[0]["settlement_date"] == "2026-01-06"
        assert executions.json()[0]["settled"] is True
        assert (await audit_events(api, "trading:settlement:posted"))[-1]["data"][
            "net"
        ] == "-2000.05"
        assert (await reconcile(api))["ok"]

    async def test_a_friday_trade_settles_on_monday_across_the_weekend(self, api: Api) -> None:
        await add_instrument(api, "AAPL", "200.00")
        await at(api, (2026, 1, 9, 15))  # Friday
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            account = await funded_account(api, alice, "10000.00")
            await buy_from_street(api, alice, account, "AAPL", 1, "200.00", "b1")
            executions = await alice.get(f"/api/v1/accounts/{account}/executions")
        assert executions.json()[0]["settlement_date"] == "2026-01-12"


@pytest.mark.spec("REG-3")
class TestRegSho:
    async def test_short_sales_need_margin_and_a_locate_and_consume_it(self, api: Api) -> None:
        await add_instrument(api, "GME", "30.00", tier=2, easy_to_borrow=False)
        async with api.client() as client, api.client("198.51.100.20") as staff_client:
            alice = await signed_in_trader(api, client, "alice")
            ada = await signed_in_staff(api, staff_client)
            cash = await funded_account(api, alice, "10000.00")
            margin = await funded_account(api, alice, "10000.00", AccountType.MARGIN)
            in_cash = await sell_to_street(api, alice, cash, "GME", 10, "30.00", "s1", "sell_short")
            no_locate = await sell_to_street(
                api, alice, margin, "GME", 10, "30.00", "s2", "sell_short"
            )
            await ada.put("/api/v1/admin/stock-loan/GME", {"available": 100})
            refused = await alice.post(
                f"/api/v1/accounts/{margin}/locates", {"symbol": "GME", "quantity": 500}
            )
            granted = await alice.post(
                f"/api/v1/accounts/{margin}/locates", {"symbol": "GME", "quantity": 10}
            )
            shorted = await sell_to_street(
                api, alice, margin, "GME", 10, "30.00", "s3", "sell_short"
            )
            spent = await sell_to_street(api, alice, margin, "GME", 1, "30.00", "s4", "sell_short")
            locates = await alice.get(f"/api/v1/accounts/{margin}/locates")
        assert in_cash["code"] == "SHORT_CASH_ACCOUNT"
        assert no_locate["code"] == "SHORT_NO_LOCATE"
        assert refused.status_code == 422
        assert refused.json()["available"] == 100
        assert granted.status_code == 201, granted.text
        assert granted.json()["source"]
        assert granted.json()["expires_at"]
        assert shorted["status"] == "filled"
        assert spent["code"] == "SHORT_NO_LOCATE"
        assert locates.json()[0]["used_quantity"] == 10
        assert (await audit_events(api, "risk:locate:refused"))[-1]["data"]["quantity"] == 500
        assert (await reconcile(api))["ok"]

    async def test_a_threshold_security_needs_a_pre_borrow(self, api: Api) -> None:
        await add_instrument(api, "AMC", "4.00", tier=2, easy_to_borrow=True, threshold=True)
        async with api.client() as client, api.client("198.51.100.20") as staff_client:
            alice = await signed_in_trader(api, client, "alice")
            ada = await signed_in_staff(api, staff_client)
            margin = await funded_account(api, alice, "10000.00", AccountType.MARGIN)
            await ada.put("/api/v1/admin/stock-loan/AMC", {"available": 1000})
            await alice.post(
                f"/api/v1/accounts/{margin}/locates", {"symbol": "AMC", "quantity": 100}
            )
            locate_only = await sell_to_street(
                api, alice, margin, "AMC", 100, "4.00", "t1", "sell_short"
            )
            await alice.post(
                f"/api/v1/accounts/{margin}/locates",
                {"symbol": "AMC", "quantity": 100, "preborrow": True},
            )
            preborrowed = await sell_to_street(
                api, alice, margin, "AMC", 100, "4.00", "t2", "sell_short"
            )
        assert locate_only["code"] == "SHORT_PREBORROW_REQUIRED"
        assert preborrowed["status"] == "filled"

    async def test_a_fail_to_deliver_is_closed_out_by_its_rule_204_deadline_or_alerted_and_boxed(
        self, api: Api
    ) -> None:
        await add_instrument(api, "GME", "30.00", tier=2, easy_to_borrow=False)
        services = trading_of(api)
        async with (
            api.client() as client,
            api.client("198.51.100.20") as staff_client,
            api.client("198.51.100.21") as compliance_client,
        ):
            alice = await signed_in_trader(api, client, "alice")
            ada = await signed_in_staff(api, staff_client)
            carol = await signed_in_staff(api, compliance_client, "carol", Role.COMPLIANCE)
            margin = await funded_account(api, alice, "20000.00", AccountType.MARGIN)
            await ada.put("/api/v1/admin/stock-loan/GME", {"available": 100})
            await alice.post(
                f"/api/v1/accounts/{margin}/locates", {"symbol": "GME", "quantity": 100}
            )
            shorted = await sell_to_street(
                api, alice, margin, "GME", 100, "30.00", "s1", "sell_short"
            )
            assert shorted["status"] == "filled"
            # The lender recalls: nothing can be borrowed by settlement (a locate is not a borrow).
            await ada.put("/api/v1/admin/stock-loan/GME", {"available": 0})
            await at(api, (2026, 1, 6, 15), alice, ada, carol)  # settlement date: the short fails
            await run_maintenance_once(services)
            opened = await audit_events(api, "risk:settlement_fail:opened")
            await at(api, (2026, 1, 7, 14, 29), alice, ada, carol)  # 09:29 New York, a minute early
            await run_maintenance_once(services)
            alerts_before = await carol.get("/api/v1/admin/alerts")
            await at(
                api, (2026, 1, 7, 14, 31), alice, ada, carol
            )  # 09:31: the deadline (the open) has passed
            await run_maintenance_once(services)
            alerts = await carol.get("/api/v1/admin/alerts")
            await ada.put("/api/v1/admin/stock-loan/GME", {"available": 1000})
            await alice.post(
                f"/api/v1/accounts/{margin}/locates", {"symbol": "GME", "quantity": 50}
            )
            boxed = await sell_to_street(api, alice, margin, "GME", 10, "30.00", "s2", "sell_short")
            await buy_from_street(api, alice, margin, "GME", 100, "30.00", "cover")
            closed = await audit_events(api, "risk:settlement_fail:closed")
        deadline = datetime(2026, 1, 7, 14, 30, tzinfo=UTC).timestamp() * NS_PER_SECOND
        assert opened[-1]["data"]["close_out_deadline_ns"] == str(int(deadline))
        assert alerts_before.json() == []
        assert alerts.json()[0]["kind"] == "REGSHO_CLOSE_OUT_MISSED"
        assert boxed["code"] == "SHORT_PENALTY_BOX"
        assert closed[-1]["data"]["quantity"] == 100
        assert (await reconcile(api))["ok"]


@pytest.mark.spec("PRE-4")
class TestPatternDayTrading:
    async def test_the_fourth_day_trade_in_five_business_days_is_refused_under_25000(
        self, api: Api
    ) -> None:
        await add_instrument(api, "AAPL", "200.00")
        # Thanksgiving week 2026: Thursday 26 November is an NYSE holiday.
        await at(api, (2026, 11, 23, 14, 30))
        async with api.client() as client:
            bob = await signed_in_trader(api, client, "bob")
            margin = await funded_account(api, bob, "20000.00", AccountType.MARGIN)
            days = [(2026, 11, 23), (2026, 11, 24), (2026, 11, 25)]
            for n, (y, m, d) in enumerate(days):
                await at(api, (y, m, d, 15), bob)
                await buy_from_street(api, bob, margin, "AAPL", 10, "200.00", f"b{n}")
                sold = await sell_to_street(api, bob, margin, "AAPL", 10, "200.00", f"s{n}")
                assert sold["day_trade"] is True, sold
            await at(api, (2026, 11, 27, 15), bob)  # Friday after the holiday: inside the window
            await buy_from_street(api, bob, margin, "AAPL", 10, "200.00", "b3")
            body = await account_body(bob, margin)
            fourth = await sell_to_street(api, bob, margin, "AAPL", 10, "200.00", "s3")
            # The next Tuesday the first day trade (23 Nov) has left the five-day window.
            await at(api, (2026, 12, 1, 15), bob)
            later = await sell_to_street(api, bob, margin, "AAPL", 10, "200.00", "s4")
        assert body["day_trades_in_window"] == 3
        assert fourth["code"] == "PDT_DAY_TRADE_LIMIT"
        assert later["status"] == "filled"
