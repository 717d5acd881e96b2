"""MAN-3 through the real stream (SQLite and PostgreSQL): a pump and dump traded through the
trading core in a penny stock becomes a PUMP_AND_DUMP alert with its evidence and ledger
event, exactly what the pure engine finds over the same ledger; the honest trader in the
same stock is in none."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.surveillance.support import (
    MONDAY_OPEN,
    chain,
    customer,
    expected_alerts,
    order,
    surveillance_of,
)
from tests.support.api import Api, audit_events, running_api
from tests.support.trading import add_instrument, street_order, trading_of, withdraw
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.core.orders import Side
from tradeguard.db.engine import unit_of_work
from tradeguard.surveillance.domain import AlertType
from tradeguard.surveillance.models import SurveillanceAlert
from tradeguard.trading.models import Execution, Order


@pytest.fixture
async def api(settings: Settings, engine: AsyncEngine) -> AsyncIterator[Api]:
    async with running_api(settings, engine, FrozenClock(MONDAY_OPEN)) as running:
        yield running


@pytest.mark.spec("MAN-3")
class TestPumpAndDumpStream:
    async def test_a_pump_and_dump_traded_through_the_core_is_alerted_by_the_stream(
        self, api: Api
    ) -> None:
        # A penny stock: the collar around 0.50 is 0.35-0.65 (LULD: the lesser of $0.15 or
        # 75% below $0.75), room for a 28% rise.
        await add_instrument(api, "PMPX", "0.50")
        gus = await customer(api, "gus", accounts=2)  # one owner, two accounts
        nina = await customer(api, "nina")  # another user's new account, not linked
        rita = await customer(api, "rita")  # an honest trader who buys and holds
        g1, g2 = gus.accounts
        (n1,) = nina.accounts
        (r1,) = rita.accounts
        ask = await street_order(api, "PMPX", Side.SELL, 20_000, "0.50")
        for who, account in ((gus, g1), (gus, g2), (nina, n1)):
            await order(api, who, account, "buy", 5000, "0.50", symbol="PMPX")
            api.clock.advance(seconds=60)
        # The price climbs: the street offers higher and higher, the group keeps buying,
        # Rita buys a little on the way up.
        for price in ("0.53", "0.56", "0.59", "0.62", "0.64"):
            await withdraw(api, "PMPX", ask)
            ask = await street_order(api, "PMPX", Side.SELL, 20_000, price)
            await order(api, gus, g1, "buy", 1000, price, symbol="PMPX")
            await order(api, rita, r1, "buy", 100, price, symbol="PMPX")
            api.clock.advance(seconds=900)
        await withdraw(api, "PMPX", ask)
        # The dump: the street bids 0.62, the group sells everything there.
        await street_order(api, "PMPX", Side.BUY, 50_000, "0.62")
        sales = [
            await order(api, gus, g1, "sell", 10_000, "0.62", symbol="PMPX"),
            await order(api, gus, g2, "sell", 5000, "0.62", symbol="PMPX"),
            await order(api, nina, n1, "sell", 5000, "0.62", symbol="PMPX"),
        ]
        api.clock.advance(seconds=60)
        await chain(api)
        await surveillance_of(api).consumer.run()

        async with surveillance_of(api).unit_of_work() as session:
            query = select(SurveillanceAlert).order_by(SurveillanceAlert.first_trigger_seq)
            alerts = list((await session.execute(query)).scalars().all())
        assert {a.alert_type for a in alerts} == {AlertType.PUMP_AND_DUMP.value}
        assert {a.owner for a in alerts} == {gus.user_id, nina.user_id}
        assert all(a.detector == "MAN-3" for a in alerts)
        assert rita.user_id not in {a.owner for a in alerts}
        last = max(alerts, key=lambda a: a.latest_trigger_seq)
        ev = last.evidence
        assert last.accounts == sorted([g1, g2, n1])
        assert ev["base_price"] == "0.50"
        assert ev["peak_price"] == "0.64"
        assert ev["group_bought"] == 20_000
        assert ev["group_sold_near_peak"] == 20_000
        assert set(sales) <= set(last.order_ids)
        # The trades behind it: the group's sales at 0.62 to the street, as recorded.
        sold = {o["order_id"]: o for o in ev["orders"] if o["order_id"] in sales}
        assert [(sold[s]["side"], sold[s]["quantity"], sold[s]["price"]) for s in sales] == [
            ("sell", 10_000, "0.62"),
            ("sell", 5000, "0.62"),
            ("sell", 5000, "0.62"),
        ]
        assert {sold[s]["status"] for s in sales} == {"filled"}
        bought = [x for x in ev["executions"] if x["side"] == "buy"]
        assert {x["price"] for x in bought} >= {"0.50", "0.64"}
        assert all(x["counterparty"] == "street" for x in ev["executions"])
        # The evidence names the trading core's own orders and executions.
        async with unit_of_work(trading_of(api).sessions) as session:
            for alert in alerts:
                orders = await session.scalar(
                    select(func.count()).select_from(Order).where(Order.id.in_(alert.order_ids))
                )
                executions = await session.scalar(
                    select(func.count())
                    .select_from(Execution)
                    .where(Execution.id.in_(alert.execution_ids))
                )
                assert orders == len(alert.order_ids)
                assert executions == len(alert.execution_ids)
        raised = await audit_events(api, "surveillance:alert:raised")
        assert sorted(e["data"]["alert_id"] for e in raised) == sorted(a.id for a in alerts)
        # What the stream stored is what one uninterrupted pass of the engine finds.
        expected = await expected_alerts(api)
        assert sorted(
            (a.alert_type.value, a.first.trigger_seq, a.occurrences) for a in expected
        ) == (sorted((a.alert_type, a.first_trigger_seq, a.occurrences) for a in alerts))

    async def test_a_group_that_buys_a_rising_penny_stock_and_holds_is_not_alerted(
        self, api: Api
    ) -> None:
        """The twin: the same accounts buy the same way and the price rises the same, but
        nobody sells near the peak (they hold, or one sells a little): no dump."""
        await add_instrument(api, "PMPX", "0.50")
        gus = await customer(api, "gus", accounts=2)
        nina = await customer(api, "nina")
        g1, g2 = gus.accounts
        (n1,) = nina.accounts
        ask = await street_order(api, "PMPX", Side.SELL, 20_000, "0.50")
        for who, account in ((gus, g1), (gus, g2), (nina, n1)):
            await order(api, who, account, "buy", 5000, "0.50", symbol="PMPX")
            api.clock.advance(seconds=60)
        for price in ("0.53", "0.56", "0.59", "0.62", "0.64"):
            await withdraw(api, "PMPX", ask)
            ask = await street_order(api, "PMPX", Side.SELL, 20_000, price)
            await order(api, gus, g1, "buy", 1000, price, symbol="PMPX")
            api.clock.advance(seconds=900)
        await withdraw(api, "PMPX", ask)
        await street_order(api, "PMPX", Side.BUY, 50_000, "0.62")
        # Nina takes a small profit (500 of her 5,000); Gus holds.
        await order(api, nina, n1, "sell", 500, "0.62", symbol="PMPX")
        api.clock.advance(seconds=60)
        await chain(api)
        result = await surveillance_of(api).consumer.run()
        assert result.market_events > 0
        async with surveillance_of(api).unit_of_work() as session:
            alerts = list((await session.execute(select(SurveillanceAlert))).scalars().all())
        assert alerts == []
        assert await expected_alerts(api) == []
