"""Object-level access (IDOR), cancel-replace, and the kill switches (HALT-2)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.support.api import Api, audit_events
from tests.support.trading import (
    account_body,
    add_instrument,
    funded_account,
    reconcile,
    signed_in_staff,
    signed_in_trader,
)


class TestObjectLevelAccess:
    async def test_trader_b_cannot_read_cancel_or_replace_trader_a_orders_or_accounts(
        self, api: Api
    ) -> None:
        await add_instrument(api, "AAPL", "200.00")
        async with api.client() as client_a, api.client("198.51.100.9") as client_b:
            alice = await signed_in_trader(api, client_a, "alice")
            bob = await signed_in_trader(api, client_b, "bob")
            a_account = await funded_account(api, alice, "10000.00")
            b_account = await funded_account(api, bob, "10000.00")
            placed = await alice.order(
                a_account,
                client_order_id="a1",
                symbol="AAPL",
                side="buy",
                type="limit",
                quantity=5,
                limit_price="190.00",
            )
            order_id = placed.json()["id"]
            a_path = f"/api/v1/accounts/{a_account}"
            attempts = [
                await bob.get(a_path),
                await bob.get(f"{a_path}/orders"),
                await bob.get(f"{a_path}/orders/{order_id}"),
                await bob.get(f"{a_path}/positions"),
                await bob.get(f"{a_path}/executions"),
                await bob.get(f"{a_path}/journal"),
                await bob.delete(f"{a_path}/orders/{order_id}"),
                await bob.put(
                    f"{a_path}/orders/{order_id}",
                    {"client_order_id": "r1", "quantity": 1, "limit_price": "1.00"},
                ),
                await bob.order(
                    a_account,
                    client_order_id="b1",
                    symbol="AAPL",
                    side="buy",
                    type="limit",
                    quantity=1,
                    limit_price="190.00",
                ),
                # Alice's order id under Bob's own account is not found either.
                await bob.get(f"/api/v1/accounts/{b_account}/orders/{order_id}"),
                await bob.delete(f"/api/v1/accounts/{b_account}/orders/{order_id}"),
            ]
            still = await alice.get(f"{a_path}/orders/{order_id}")
            bobs = await bob.get("/api/v1/accounts")
        assert [r.status_code for r in attempts] == [404] * len(attempts)
        assert all("alice" not in r.text for r in attempts)
        assert still.json()["status"] == "new"
        assert [a["id"] for a in bobs.json()] == [b_account]


@pytest.mark.spec("PRE-2")
class TestCancelReplace:
    async def test_a_replace_moves_the_order_and_its_reservation(self, api: Api) -> None:
        await add_instrument(api, "AAPL", "200.00")
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            account = await funded_account(api, alice, "10000.00")
            placed = await alice.order(
                account,
                client_order_id="o1",
                symbol="AAPL",
                side="buy",
                type="limit",
                quantity=10,
                limit_price="190.00",
            )
            old_id = placed.json()["id"]
            replaced = await alice.put(
                f"/api/v1/accounts/{account}/orders/{old_id}",
                {"client_order_id": "o2", "quantity": 20, "limit_price": "191.00"},
            )
            old = await alice.get(f"/api/v1/accounts/{account}/orders/{old_id}")
            body = await account_body(alice, account)
        assert replaced.status_code == 200, replaced.text
        assert replaced.json()["replaces_order_id"] == old_id
        assert old.json()["status"] == "replaced"
        assert old.json()["replaced_by_order_id"] == replaced.json()["id"]
        assert Decimal(body["balances"]["cash_held"]) == Decimal("3820.10")
        assert (await reconcile(api))["ok"]

    async def test_a_refused_replace_leaves_the_original_exactly_as_it_was(self, api: Api) -> None:
        await add_instrument(api, "AAPL", "200.00")
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            account = await funded_account(api, alice, "3000.00")
            placed = await alice.order(
                account,
                client_order_id="o1",
                symbol="AAPL",
                side="buy",
                type="limit",
                quantity=10,
                limit_price="190.00",
            )
            old_id = placed.json()["id"]
            refused = await alice.put(
                f"/api/v1/accounts/{account}/orders/{old_id}",
                {"client_order_id": "o2", "quantity": 100, "limit_price": "190.00"},
            )
            old = await alice.get(f"/api/v1/accounts/{account}/orders/{old_id}")
            body = await account_body(alice, account)
        assert refused.status_code == 422
        assert refused.json()["code"] == "RISK_BUYING_POWER"
        assert old.json()["status"] == "new"
        assert Decimal(body["balances"]["cash_held"]) == Decimal("1900.05")
        assert (await reconcile(api))["ok"]


@pytest.mark.spec("PRE-4")
class TestKillSwitches:
    async def test_a_symbol_halt_cancels_resting_orders_refuses_new_ones_and_is_latched(
        self, api: Api
    ) -> None:
        await add_instrument(api, "AAPL", "200.00")
        await add_instrument(api, "MSFT", "400.00")
        async with api.client() as client, api.client("198.51.100.20") as staff_client:
            alice = await signed_in_trader(api, client, "alice")
            ada = await signed_in_staff(api, staff_client, "ada")
            account = await funded_account(api, alice, "20000.00")
            resting = await alice.order(
                account,
                client_order_id="r1",
                symbol="AAPL",
                side="buy",
                type="limit",
                quantity=10,
                limit_price="190.00",
            )
            other = await alice.order(
                account,
                client_order_id="r2",
                symbol="MSFT",
                side="buy",
                type="limit",
                quantity=1,
                limit_price="390.00",
            )
            halted = await ada.post(
                "/api/v1/admin/halts",
                {"scope": "symbol", "target": "AAPL", "reason": "erroneous prints"},
            )
            again = await ada.post(
                "/api/v1/admin/halts",
                {"scope": "symbol", "target": "AAPL", "reason": "twice"},
            )
            refused = await alice.order(
                account,
                client_order_id="r3",
                symbol="AAPL",
                side="buy",
                type="limit",
                quantity=1,
                limit_price="190.00",
            )
            cancelled = await alice.get(f"/api/v1/accounts/{account}/orders/{resting.json()['id']}")
            msft = await alice.get(f"/api/v1/accounts/{account}/orders/{other.json()['id']}")
            # Cancels always pass, halt or not.
            cancel_other = await alice.delete(
                f"/api/v1/accounts/{account}/orders/{other.json()['id']}"
            )
            resumed = await ada.post(
                "/api/v1/admin/halts/resume",
                {"scope": "symbol", "target": "AAPL", "reason": "prints corrected"},
            )
            after = await alice.order(
                account,
                client_order_id="r4",
                symbol="AAPL",
                side="buy",
                type="limit",
                quantity=1,
                limit_price="190.00",
            )
        assert halted.status_code == 201, halted.text
        assert halted.json()["cancelled_orders"] == 1
        assert again.status_code == 409
        assert refused.status_code == 422
        assert refused.json()["code"] == "SYMBOL_HALTED"
        assert cancelled.json()["status"] == "cancelled"
        assert cancelled.json()["cancel_reason"] == "halt"
        assert msft.json()["status"] == "new"
        assert cancel_other.status_code == 200
        assert resumed.status_code == 200, resumed.text
        assert after.status_code == 201
        started = await audit_events(api, "trading:halt:started")
        assert started[-1]["data"]["reason"] == "erroneous prints"
        assert (await audit_events(api, "trading:halt:resumed"))[-1]["actor"]["kind"] == "staff"
        assert (await reconcile(api))["ok"]

    async def test_a_market_wide_halt_stops_everyone_and_an_account_halt_only_that_account(
        self, api: Api
    ) -> None:
        await add_instrument(api, "AAPL", "200.00")
        async with api.client() as client, api.client("198.51.100.20") as staff_client:
            alice = await signed_in_trader(api, client, "alice")
            ada = await signed_in_staff(api, staff_client, "ada")
            a1 = await funded_account(api, alice, "20000.00")
            a2 = await funded_account(api, alice, "20000.00")
            await ada.post("/api/v1/admin/halts", {"scope": "market", "reason": "exchange outage"})
            market = await alice.order(
                a1,
                client_order_id="m",
                symbol="AAPL",
                side="buy",
                type="limit",
                quantity=1,
                limit_price="200.00",
            )
            await ada.post("/api/v1/admin/halts/resume", {"scope": "market", "reason": "restored"})
            await ada.post(
                "/api/v1/admin/halts",
                {"scope": "account", "target": a1, "reason": "suspected takeover"},
            )
            halted_account = await alice.order(
                a1,
                client_order_id="h",
                symbol="AAPL",
                side="buy",
                type="limit",
                quantity=1,
                limit_price="200.00",
            )
            other_account = await alice.order(
                a2,
                client_order_id="o",
                symbol="AAPL",
                side="buy",
                type="limit",
                quantity=1,
                limit_price="200.00",
            )
            state = await account_body(alice, a1)
        assert market.json()["code"] == "MARKET_HALTED"
        assert halted_account.json()["code"] == "ACCOUNT_HALTED"
        assert state["trading_state"] == "HALTED"
        assert other_account.status_code == 201

    async def test_a_trader_cannot_use_the_kill_switch(self, api: Api) -> None:
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            response = await alice.post(
                "/api/v1/admin/halts", {"scope": "market", "reason": "let me out"}
            )
        assert response.status_code == 403
        denied = await audit_events(api, "access:permission:checked")
        assert denied[-1]["data"] == {
            "permission": "admin:config",
            "allowed": False,
            "route": "/api/v1/admin/halts",
            "method": "POST",
        }
