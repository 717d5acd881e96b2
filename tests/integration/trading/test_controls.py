"""Controls that close what the black-box review of issue #7 found: market short sales
reserve cleanly, locates stop at the desk's inventory, account limits are validated and
shown, restriction and closing-only cancel opening orders, cash debits count unsettled
purchases, a halt's cancellations are no duplicates, the market halt view names no staff."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.support.api import Api
from tests.support.trading import (
    account_body,
    add_instrument,
    funded_account,
    reconcile,
    signed_in_staff,
    signed_in_trader,
    street_order,
    withdraw,
)
from tradeguard.core.orders import Side
from tradeguard.risk.domain import AccountType


@pytest.mark.spec("REG-3", "PRE-2")
class TestShortSaleReservations:
    async def test_a_market_short_sale_off_an_uneven_reference_price_is_reserved_and_fills(
        self, api: Api
    ) -> None:
        await add_instrument(api, "F", "11.00", easy_to_borrow=True)
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            margin = await funded_account(api, alice, "10000.00", AccountType.MARGIN)
            # Trades at 10.99 and 11.00 move the five-minute mean (the reference price) off
            # the tick grid: 11.00, 10.99, 11.00, 11.00 average 10.9975.
            for n, (price, qty) in enumerate((("10.99", 1), ("11.00", 2))):
                offer = await street_order(api, "F", Side.SELL, qty, price)
                await alice.order(
                    margin,
                    client_order_id=f"buy-{n}",
                    symbol="F",
                    side="buy",
                    type="limit",
                    quantity=qty,
                    limit_price=price,
                )
                await withdraw(api, "F", offer)
            bid = await street_order(api, "F", Side.BUY, 300, "10.99")
            response = await alice.order(
                margin,
                client_order_id="short-1",
                symbol="F",
                side="sell_short",
                type="market",
                quantity=7,
            )
            await withdraw(api, "F", bid)
            body = await account_body(alice, margin)
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "filled"
        assert Decimal(body["balances"]["cash_held"]) == 0
        # Bought 1 at 10.99 and 2 at 11.00 (fees 0.00 and 0.01), sold 7 short at 10.99 (0.04).
        assert body["balances"]["cash_unsettled"] == "43.89"
        assert (await reconcile(api))["ok"]


@pytest.mark.spec("REG-3")
class TestLocates:
    async def test_the_desk_never_promises_more_shares_than_it_can_lend(self, api: Api) -> None:
        await add_instrument(api, "GME", "30.00", tier=2, easy_to_borrow=False)
        async with (
            api.client() as client_a,
            api.client("198.51.100.9") as client_b,
            api.client("198.51.100.20") as staff_client,
        ):
            alice = await signed_in_trader(api, client_a, "alice")
            bob = await signed_in_trader(api, client_b, "bob")
            ada = await signed_in_staff(api, staff_client)
            a_margin = await funded_account(api, alice, "10000.00", AccountType.MARGIN)
            b_margin = await funded_account(api, bob, "10000.00", AccountType.MARGIN)
            await ada.put("/api/v1/admin/stock-loan/GME", {"available": 100})
            first = await alice.post(
                f"/api/v1/accounts/{a_margin}/locates", {"symbol": "GME", "quantity": 60}
            )
            second = await bob.post(
                f"/api/v1/accounts/{b_margin}/locates", {"symbol": "GME", "quantity": 60}
            )
            rest = await bob.post(
                f"/api/v1/accounts/{b_margin}/locates", {"symbol": "GME", "quantity": 40}
            )
        assert first.status_code == 201
        assert second.status_code == 422
        assert second.json()["available"] == 40
        assert rest.status_code == 201


class TestAccountControls:
    async def test_limits_must_be_positive_and_the_limits_in_force_are_shown(
        self, api: Api
    ) -> None:
        async with api.client() as client, api.client("198.51.100.20") as staff_client:
            alice = await signed_in_trader(api, client, "alice")
            ada = await signed_in_staff(api, staff_client)
            account = await funded_account(api, alice, "1000.00")
            refused = [
                await ada.put(
                    f"/api/v1/admin/accounts/{account}/limits", {field: value, "reason": "test"}
                )
                for field, value in (
                    ("max_order_notional", "-5.00"),
                    ("max_order_notional", "0"),
                    ("gross_exposure_cap", "-1.00"),
                    ("daily_loss_limit", "-1.00"),
                )
            ]
            set_ok = await ada.put(
                f"/api/v1/admin/accounts/{account}/limits",
                {"max_order_notional": "2500.00", "reason": "new customer"},
            )
            shown = await account_body(alice, account)
        assert [r.status_code for r in refused] == [422] * 4
        assert set_ok.status_code == 200
        assert shown["limits"]["max_order_notional"] == "2500.00"
        assert shown["limits"]["max_order_quantity"] == 50_000

    @pytest.mark.spec("PRE-4")
    async def test_restricting_a_symbol_cancels_opening_orders_but_keeps_closing_ones(
        self, api: Api
    ) -> None:
        await add_instrument(api, "KO", "60.00")
        async with api.client() as client, api.client("198.51.100.20") as staff_client:
            alice = await signed_in_trader(api, client, "alice")
            ada = await signed_in_staff(api, staff_client)
            account = await funded_account(api, alice, "10000.00")
            street = await street_order(api, "KO", Side.SELL, 10, "60.00")
            await alice.order(
                account,
                client_order_id="own",
                symbol="KO",
                side="buy",
                type="limit",
                quantity=10,
                limit_price="60.00",
            )
            await withdraw(api, "KO", street)
            opening = await alice.order(
                account,
                client_order_id="more",
                symbol="KO",
                side="buy",
                type="limit",
                quantity=5,
                limit_price="59.00",
            )
            closing = await alice.order(
                account,
                client_order_id="out",
                symbol="KO",
                side="sell",
                type="limit",
                quantity=10,
                limit_price="61.00",
            )
            restricted = await ada.put(
                "/api/v1/admin/restricted-list/KO", {"reason": "research coverage"}
            )
            path = f"/api/v1/accounts/{account}/orders"
            opening_after = await alice.get(f"{path}/{opening.json()['id']}")
            closing_after = await alice.get(f"{path}/{closing.json()['id']}")
        assert restricted.status_code == 201
        assert opening_after.json()["status"] == "cancelled"
        assert opening_after.json()["cancel_reason"] == "restricted"
        assert closing_after.json()["status"] == "new"
        assert (await reconcile(api))["ok"]

    async def test_closing_only_cancels_the_accounts_opening_orders(self, api: Api) -> None:
        await add_instrument(api, "KO", "60.00")
        async with api.client() as client, api.client("198.51.100.20") as staff_client:
            alice = await signed_in_trader(api, client, "alice")
            ada = await signed_in_staff(api, staff_client)
            account = await funded_account(api, alice, "10000.00")
            opening = await alice.order(
                account,
                client_order_id="o",
                symbol="KO",
                side="buy",
                type="limit",
                quantity=5,
                limit_price="59.00",
            )
            changed = await ada.patch(
                f"/api/v1/admin/accounts/{account}",
                {"status": "closing_only", "reason": "customer asked to wind down"},
            )
            after = await alice.get(f"/api/v1/accounts/{account}/orders/{opening.json()['id']}")
        assert changed.status_code == 200, changed.text
        assert after.json()["status"] == "cancelled"
        assert after.json()["cancel_reason"] == "account_status"

    async def test_a_cash_debit_counts_unsettled_purchases(self, api: Api) -> None:
        await add_instrument(api, "AAPL", "200.00")
        async with api.client() as client, api.client("198.51.100.20") as staff_client:
            alice = await signed_in_trader(api, client, "alice")
            ada = await signed_in_staff(api, staff_client)
            account = await funded_account(api, alice, "1000.00")
            street = await street_order(api, "AAPL", Side.SELL, 4, "200.00")
            await alice.order(
                account,
                client_order_id="b",
                symbol="AAPL",
                side="buy",
                type="limit",
                quantity=4,
                limit_price="200.00",
            )
            await withdraw(api, "AAPL", street)
            too_much = await ada.post(
                f"/api/v1/admin/accounts/{account}/adjustments",
                {"amount": "-500.00", "reason": "correction"},
            )
            fits = await ada.post(
                f"/api/v1/admin/accounts/{account}/adjustments",
                {"amount": "-199.00", "reason": "correction"},
            )
        assert too_much.status_code == 422
        assert fits.status_code == 201


@pytest.mark.spec("PRE-4")
class TestAfterAHalt:
    async def test_re_placing_an_order_a_halt_cancelled_is_no_duplicate_and_halts_name_no_staff(
        self, api: Api
    ) -> None:
        await add_instrument(api, "AAPL", "200.00")
        async with api.client() as client, api.client("198.51.100.20") as staff_client:
            alice = await signed_in_trader(api, client, "alice")
            ada = await signed_in_staff(api, staff_client)
            account = await funded_account(api, alice, "10000.00")
            fields = dict(symbol="AAPL", side="buy", type="limit", quantity=3, limit_price="199.00")
            await alice.order(account, client_order_id="a", **fields)
            await ada.post(
                "/api/v1/admin/halts", {"scope": "symbol", "target": "AAPL", "reason": "news"}
            )
            public = await alice.get("/api/v1/market/halts")
            await ada.post(
                "/api/v1/admin/halts/resume",
                {"scope": "symbol", "target": "AAPL", "reason": "news out"},
            )
            again = await alice.order(account, client_order_id="b", **fields)
        assert again.status_code == 201, again.text
        assert public.json() == [
            {
                "scope": "symbol",
                "target": "AAPL",
                "reason": "news",
                "halted_at": public.json()[0]["halted_at"],
            }
        ]
