"""Concurrent orders against one account can never overspend, and random sequences of
orders, fills and cancels keep every invariant: held + spent <= buying power, positions
within limits, a balanced journal that reconciles. On SQLite and PostgreSQL both."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.api import Api
from tests.support.trading import (
    SETUP,
    account_body,
    add_instrument,
    funded_account,
    reconcile,
    signed_in_trader,
    street_order,
    trading_of,
    withdraw,
)
from tradeguard.core.orders import OrderType, Side, TimeInForce
from tradeguard.db.engine import unit_of_work
from tradeguard.ledger.domain import Party
from tradeguard.trading.accounts import balances_from
from tradeguard.trading.orders import OrderRequest


async def allow_bursts(api: Api, account_id: str) -> None:
    services = trading_of(api)
    async with unit_of_work(services.sessions) as session:
        await services.accounts.set_limits(
            session,
            account_id=account_id,
            limits={"max_orders_per_second": 64, "position_limit": 500},
            reason="concurrency test",
            actor=SETUP,
        )


@pytest.mark.spec("PRE-2", "REG-1")
class TestConcurrentOrders:
    async def test_thirty_concurrent_orders_reserve_atomically_and_never_overspend(
        self, api: Api
    ) -> None:
        await add_instrument(api, "AAPL", "100.00")
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            account = await funded_account(api, alice, "10000.00")
            await allow_bursts(api, account)
            responses = await asyncio.gather(
                *(
                    alice.order(
                        account,
                        client_order_id=f"c{i}",
                        symbol="AAPL",
                        side="buy",
                        type="limit",
                        quantity=10,
                        limit_price=f"{Decimal('100.00') - i * Decimal('0.01')}",
                    )
                    for i in range(30)
                )
            )
            body = await account_body(alice, account)
        accepted = [r.json() for r in responses if r.status_code == 201]
        rejected = [r.json() for r in responses if r.status_code == 422]
        assert len(accepted) + len(rejected) == 30
        assert {r["code"] for r in rejected} <= {"RISK_BUYING_POWER"}
        held = Decimal(body["balances"]["cash_held"])
        expected_held = sum(Decimal(o["limit_price"]) * 10 + Decimal("0.05") for o in accepted)
        assert held == expected_held <= Decimal("10000.00")
        available = Decimal("10000.00") - held
        # Every refused order really did not fit in what was left: refusals were not spurious.
        prices = {f"c{i}": Decimal("100.00") - i * Decimal("0.01") for i in range(30)}
        for refused in rejected:
            assert prices[refused["client_order_id"]] * 10 + Decimal("0.05") > available
        assert (await reconcile(api))["ok"]


Operation = tuple[str, int, int]
operations = st.lists(
    st.tuples(
        st.sampled_from(["buy", "sell", "cancel", "street_sell", "street_buy", "burst"]),
        st.integers(min_value=1, max_value=60),  # quantity
        st.integers(min_value=-20, max_value=20),  # price offset in cents
    ),
    min_size=5,
    max_size=18,
)


@pytest.mark.spec("PRE-2")
class TestRandomSequences:
    @settings(
        max_examples=6,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(program=operations)
    async def test_invariants_hold_after_every_step(
        self, api: Api, program: list[Operation]
    ) -> None:
        services = trading_of(api)
        if services.deps.reference.get("PROP") is None:
            await add_instrument(api, "PROP", "50.00")
        account = await _property_account(api)
        actor = Party("user", "prop")
        state: dict[str, Any] = {"n": 0}
        for kind, quantity, offset in program:
            api.clock.advance(seconds=1)
            price = Decimal("50.00") + Decimal(offset) / 100
            if kind in {"buy", "sell"}:
                await _place(services, account, actor, state, kind, quantity, price)
            elif kind == "burst":
                await asyncio.gather(
                    *(
                        _place(
                            services,
                            account,
                            actor,
                            state,
                            "buy",
                            quantity,
                            price - i / Decimal(100),
                        )
                        for i in range(6)
                    )
                )
            elif kind == "cancel":
                async with unit_of_work(services.sessions) as session:
                    open_orders = await services.orders.list(
                        session,
                        account_id=account,
                        user_id=None,
                        open_only=True,
                        before_ns=None,
                        limit=5,
                    )
                if open_orders:
                    await services.desk.cancel(
                        account_id=account, order_id=open_orders[0].id, user_id=None, actor=actor
                    )
            else:
                side = Side.SELL if kind == "street_sell" else Side.BUY
                street = await street_order(api, "PROP", side, quantity, str(price))
                await withdraw(api, "PROP", street)
            await _check_invariants(services, account)
        report = await reconcile(api)
        assert report["ok"], report["problems"]


async def _property_account(api: Api) -> str:
    services = trading_of(api)
    async with unit_of_work(services.sessions) as session:
        existing = await services.accounts.list_all(session)
    if existing:
        return existing[0].id
    async with api.client() as client:
        trader = await signed_in_trader(api, client, "prop")
    account = await funded_account(api, trader, "20000.00")
    await allow_bursts(api, account)
    return account


async def _place(
    services: Any,
    account: str,
    actor: Party,
    state: dict[str, Any],
    side: str,
    quantity: int,
    price: Decimal,
) -> None:
    state["n"] += 1
    await services.desk.place(
        account_id=account,
        user_id=None,
        request=OrderRequest(
            client_order_id=f"p{uuid.uuid4().hex}",
            symbol="PROP",
            side=Side(side),
            order_type=OrderType.LIMIT,
            time_in_force=TimeInForce.DAY,
            quantity=quantity,
            limit_price=price,
        ),
        actor=actor,
    )


async def _check_invariants(services: Any, account_id: str) -> None:
    async with unit_of_work(services.sessions) as session:
        account = await services.accounts.get(session, account_id)
        from tradeguard.trading import repository  # noqa: PLC0415 - a test peeks at the books

        balances = balances_from(
            account.id, account.currency, await repository.balances(session, account.id)
        )
        positions = await repository.positions(session, account.id)
    # Held plus spent never exceeds what the account had: its free cash is never negative.
    assert balances.cash_held >= 0
    assert balances.cash_settled + balances.cash_unsettled - balances.cash_held >= 0
    for position in positions:
        assert 0 <= position.quantity <= 500  # no shorts (cash account), within the limit
        assert 0 <= balances.shares_held.get(position.symbol, 0) <= position.quantity
