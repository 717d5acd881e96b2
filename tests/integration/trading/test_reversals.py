"""Reversing an execution by compensating entries (ATO-3), through trading's service: a
purchase undone (its shares out, its cost and fee back), a later settlement, once only,
refused while orders in the symbol are open, and reconciliation balancing throughout
(SQLite and PostgreSQL)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from tests.support.api import Api, audit_events
from tests.support.trading import (
    add_instrument,
    funded_account,
    reconcile,
    signed_in_trader,
    street_order,
    trading_of,
)
from tradeguard.core.orders import Side
from tradeguard.db.engine import unit_of_work
from tradeguard.ledger.domain import Party
from tradeguard.trading.models import Execution, Position
from tradeguard.trading.reversals import AlreadyReversed, ExecutionNotFound, ReversalRefused

STAFF = Party("staff", "0190a3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b")


async def cash_and_shares(api: Api, account_id: str) -> tuple[Decimal, Decimal, int]:
    services = trading_of(api)
    async with unit_of_work(services.sessions) as session:
        account = await services.accounts.get(session, account_id)
        balances = await services.accounts.balances(session, account)
        position = await session.get(Position, (account_id, "ACME"))
    return balances.cash_settled, balances.cash_unsettled, position.quantity if position else 0


class TestReverseExecution:
    @pytest.mark.spec("ATO-3")
    async def test_a_purchase_is_undone_once_and_the_books_still_reconcile(self, api: Api) -> None:
        await add_instrument(api, "ACME", "10.00")
        trader = await signed_in_trader(api, api.client(), "carol")
        account = await funded_account(api, trader, "5000.00")
        await street_order(api, "ACME", Side.SELL, 30, "10.00")
        bought = await trader.order(
            account,
            client_order_id="b1",
            symbol="ACME",
            side="buy",
            type="limit",
            quantity=30,
            limit_price="10.00",
        )
        assert bought.status_code == 201, bought.text
        services = trading_of(api)
        async with unit_of_work(services.sessions) as session:
            [execution] = (
                (await session.execute(select(Execution).where(Execution.account_id == account)))
                .scalars()
                .all()
            )
            cost = execution.notional + execution.fee
        settled, unsettled, shares = await cash_and_shares(api, account)
        assert (settled, unsettled, shares) == (Decimal("5000.00"), -cost, 30)

        # A resting order in the symbol: its reservation was sized on the position.
        resting = await trader.order(
            account,
            client_order_id="s-rest",
            symbol="ACME",
            side="sell",
            type="limit",
            quantity=10,
            limit_price="10.40",
        )
        assert resting.status_code == 201, resting.text
        async with unit_of_work(services.sessions) as session:
            with pytest.raises(ReversalRefused):
                await services.reversals.reverse_execution(
                    session, execution.id, reason="fraudulent", actor=STAFF
                )
        cancelled = await trader.delete(f"/api/v1/accounts/{account}/orders/{resting.json()['id']}")
        assert cancelled.status_code in {200, 202, 204}, cancelled.text

        async with unit_of_work(services.sessions) as session:
            with pytest.raises(ExecutionNotFound):
                await services.reversals.reverse_execution(
                    session, execution.id, reason="elsewhere", actor=STAFF, account_ids=frozenset()
                )
            reversal = await services.reversals.reverse_execution(
                session, execution.id, reason="bought by an intruder", actor=STAFF
            )
        assert reversal.cash == cost
        assert reversal.position_after == 0
        settled, unsettled, shares = await cash_and_shares(api, account)
        assert (settled + unsettled, shares) == (Decimal("5000.00"), 0)
        assert (await reconcile(api))["ok"]
        async with unit_of_work(services.sessions) as session:
            with pytest.raises(AlreadyReversed):
                await services.reversals.reverse_execution(
                    session, execution.id, reason="again", actor=STAFF
                )
        # Settlement still moves the original's cash on its date; the books stay whole.
        api.clock.advance(seconds=3 * 86_400)
        async with unit_of_work(services.sessions) as session:
            await services.settlement.settle_due(session)
        settled, unsettled, shares = await cash_and_shares(api, account)
        assert (settled, unsettled, shares) == (Decimal("5000.00"), Decimal(0), 0)
        report = await reconcile(api)
        assert report["ok"], report["problems"]
        [event] = await audit_events(api, "trading:execution:reversed")
        assert event["data"]["execution_id"] == execution.id
        assert event["subject"] == {"kind": "account", "id": account}
