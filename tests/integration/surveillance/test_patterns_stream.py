"""PRE-3 marking the close through the real stream (SQLite and PostgreSQL): one-sided
buying through the trading core in the last minutes of Monday's session that lifts the
price becomes a MARKING_THE_CLOSE alert with its evidence, exactly what the pure engine
finds over the same ledger; a fund buying more at the close without moving the price, and
the same buying earlier in the day, are in none."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.surveillance.support import (
    MONDAY_OPEN,
    cancel,
    chain,
    customer,
    expected_alerts,
    order,
    surveillance_of,
)
from tests.support.api import Api, audit_events, running_api
from tests.support.trading import add_instrument, street_order, withdraw
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.core.orders import Side
from tradeguard.surveillance.domain import AlertType
from tradeguard.surveillance.models import SurveillanceAlert


@pytest.fixture
async def api(settings: Settings, engine: AsyncEngine) -> AsyncIterator[Api]:
    async with running_api(settings, engine, FrozenClock(MONDAY_OPEN)) as running:
        yield running


@pytest.mark.spec("PRE-3")
class TestMarkingTheCloseStream:
    async def test_buying_that_lifts_the_close_is_alerted_and_honest_buying_is_not(
        self, api: Api
    ) -> None:
        await add_instrument(api, "ACME", "50.00")
        await add_instrument(api, "BETA", "20.00")
        acme = await street_order(api, "ACME", Side.SELL, 100_000, "50.00")
        beta = await street_order(api, "BETA", Side.SELL, 100_000, "20.00")
        marker = await customer(api, "marker")
        fund = await customer(api, "fund")
        early = await customer(api, "early")
        (m1,) = marker.accounts
        (f1,) = fund.accounts
        (e1,) = early.accounts
        # 10:00 New York: the same lifting buys in BETA, hours before the close.
        for price in ("20.10", "20.30"):
            await withdraw(api, "BETA", beta)
            beta = await street_order(api, "BETA", Side.SELL, 100_000, price)
            await order(api, early, e1, "buy", 300, price, symbol="BETA")
            api.clock.advance(seconds=60)
        # 15:50: the last prices before the closing window (16:00, from the calendar).
        api.clock.advance(seconds=5 * 3600 + 48 * 60)
        await order(api, fund, f1, "buy", 100, "50.00")
        await order(api, fund, f1, "buy", 100, "20.30", symbol="BETA")
        # 15:57: the marker takes the street's offer as it climbs 1.1%; the fund buys 2,000
        # BETA at the price it had (the street still offers it there).
        api.clock.advance(seconds=7 * 60)
        for price in ("50.25", "50.55"):
            await withdraw(api, "ACME", acme)
            acme = await street_order(api, "ACME", Side.SELL, 100_000, price)
            await order(api, marker, m1, "buy", 300, price)
            await order(api, fund, f1, "buy", 1000, "20.30", symbol="BETA")
            api.clock.advance(seconds=60)
        await chain(api)
        await surveillance_of(api).consumer.run()

        async with surveillance_of(api).unit_of_work() as session:
            query = select(SurveillanceAlert).order_by(SurveillanceAlert.first_trigger_seq)
            alerts = list((await session.execute(query)).scalars().all())
        assert [(a.alert_type, a.symbol, a.owner) for a in alerts] == [
            (AlertType.MARKING_THE_CLOSE.value, "ACME", marker.user_id)
        ]
        (alert,) = alerts
        assert alert.detector == "PRE-3"
        assert alert.accounts == [m1]
        ev = alert.evidence
        assert ev["side"] == "buy"
        assert ev["taken_quantity"] == 600
        assert ev["reference_price"] == "50.00"
        assert ev["price"] == "50.55"
        assert ev["move_fraction"] == "0.0110"
        assert 0 < ev["minutes_before_close"] < 5
        # The trades behind it: the marker's two lifting buys, taken from the street.
        assert [(o["side"], o["quantity"], o["price"], o["status"]) for o in ev["orders"]] == [
            ("buy", 300, "50.25", "filled"),
            ("buy", 300, "50.55", "filled"),
        ]
        assert [(x["price"], x["quantity"], x["counterparty"]) for x in ev["executions"]] == [
            ("50.25", 300, "street"),
            ("50.55", 300, "street"),
        ]
        assert all(x["time"].endswith("Z") and x["account_id"] == m1 for x in ev["executions"])
        raised = await audit_events(api, "surveillance:alert:raised")
        assert [e["data"]["alert_id"] for e in raised] == [alert.id]
        # What the stream stored is what one uninterrupted pass of the engine finds.
        expected = await expected_alerts(api)
        assert [(a.alert_type.value, a.first.trigger_seq) for a in expected] == [
            (alert.alert_type, alert.first_trigger_seq)
        ]


@pytest.fixture
async def fast_api(settings: Settings, engine: AsyncEngine) -> AsyncIterator[Api]:
    """The API with the order throttles at the most the settings allow (64 orders a second)
    and duplicate detection down to a millisecond: what a burst of quotes needs to pass the
    pre-trade checks at all."""
    fast = settings.model_copy(
        update={
            "risk_max_orders_per_second": 64,
            "risk_burst_max_orders": 64,
            "risk_burst_window_seconds": 1,
            "risk_duplicate_window_ms": 1,
        }
    )
    async with running_api(fast, engine, FrozenClock(MONDAY_OPEN)) as running:
        yield running


@pytest.mark.spec("PRE-3")
class TestQuoteStuffingStream:
    async def test_a_burst_of_placed_and_cancelled_orders_is_alerted_and_a_slower_one_is_not(
        self, fast_api: Api
    ) -> None:
        api = fast_api
        await add_instrument(api, "ACME", "50.00")
        await street_order(api, "ACME", Side.SELL, 100_000, "50.00")
        stuffer = await customer(api, "stuffer")
        steady = await customer(api, "steady")
        (s1,) = stuffer.accounts
        (t1,) = steady.accounts
        # 55 resting bids placed and cancelled within 0.55 s by one account (110 messages);
        # another places and cancels 24 in the same time (48 messages, below the model's 50).
        for n in range(55):
            placed = await order(api, stuffer, s1, "buy", 100, f"49.{n:02d}")
            await cancel(api, stuffer, s1, placed)
            if n < 24:
                other = await order(api, steady, t1, "buy", 100, f"48.{n:02d}")
                await cancel(api, steady, t1, other)
            api.clock.advance(ns=10_000_000)
        await chain(api)
        await surveillance_of(api).consumer.run()

        async with surveillance_of(api).unit_of_work() as session:
            alerts = list((await session.execute(select(SurveillanceAlert))).scalars().all())
        assert [(a.alert_type, a.symbol, a.owner) for a in alerts] == [
            (AlertType.QUOTE_STUFFING.value, "ACME", stuffer.user_id)
        ]
        (alert,) = alerts
        assert alert.detector == "PRE-3"
        assert alert.accounts == [s1]
        # The trades behind it: the stuffer's bids, each placed and cancelled, none filled.
        orders = alert.evidence["orders"]
        assert len(orders) == len(alert.order_ids) >= 20
        assert [o["order_id"] for o in orders] == alert.order_ids
        assert {(o["side"], o["quantity"], o["status"]) for o in orders} == {
            ("buy", 100, "cancelled")
        }
        assert all(o["price"].startswith("49.") and o["account_id"] == s1 for o in orders)
        assert alert.evidence["executions"] == []
        expected = await expected_alerts(api)
        assert [(a.alert_type.value, a.first.trigger_seq) for a in expected] == [
            (alert.alert_type, alert.first_trigger_seq)
        ]
