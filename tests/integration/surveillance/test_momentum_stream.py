"""PRE-3 momentum ignition through the real stream (SQLite and PostgreSQL): a burst of
aggressive buys through the trading core that lifts the price through four levels, then a
resting sale at the moved price filled by the street, becomes a MOMENTUM_IGNITION alert with
its evidence, exactly what the pure engine finds over the same ledger; a fund buying as hard
in another symbol and holding is in none. The alert's latency (event to committed alert,
by the injected clock) is on /metrics."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
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
from tests.support.trading import add_instrument, street_order, withdraw
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.core.orders import Side
from tradeguard.surveillance.domain import AlertType
from tradeguard.surveillance.models import SurveillanceAlert

LATENCY = "tradeguard_surveillance_alert_latency_seconds"


@pytest.fixture
async def api(settings: Settings, engine: AsyncEngine) -> AsyncIterator[Api]:
    async with running_api(settings, engine, FrozenClock(MONDAY_OPEN)) as running:
        yield running


def sample(exposition: str, name: str, detector: str) -> float:
    match = re.search(rf'^{name}{{detector="{detector}"}} (\S+)$', exposition, re.MULTILINE)
    assert match is not None, f"{name} for {detector} is not exported"
    return float(match.group(1))


@pytest.mark.spec("PRE-3")
class TestMomentumIgnitionStream:
    async def test_an_ignition_and_its_unwind_are_alerted_and_a_buyer_who_holds_is_not(
        self, api: Api
    ) -> None:
        await add_instrument(api, "ACME", "50.00")
        await add_instrument(api, "BETA", "20.00")
        acme = await street_order(api, "ACME", Side.SELL, 10_000, "50.00")
        beta = await street_order(api, "BETA", Side.SELL, 10_000, "20.00")
        igniter = await customer(api, "igniter")
        fund = await customer(api, "fund")
        retail = await customer(api, "retail")
        (i1,) = igniter.accounts
        (f1,) = fund.accounts
        (r1,) = retail.accounts
        await order(api, retail, r1, "buy", 100, "50.00")
        await order(api, retail, r1, "buy", 100, "20.00", symbol="BETA")
        api.clock.advance(seconds=5)
        # The burst: the igniter takes the street's offer four times in 40 seconds as it
        # climbs 1.2%; the fund does the same in BETA.
        burst = []
        for acme_price, beta_price in (
            ("50.10", "20.04"),
            ("50.25", "20.10"),
            ("50.40", "20.16"),
            ("50.60", "20.24"),
        ):
            await withdraw(api, "ACME", acme)
            acme = await street_order(api, "ACME", Side.SELL, 10_000, acme_price)
            burst.append(await order(api, igniter, i1, "buy", 300, acme_price))
            await withdraw(api, "BETA", beta)
            beta = await street_order(api, "BETA", Side.SELL, 10_000, beta_price)
            await order(api, fund, f1, "buy", 300, beta_price, symbol="BETA")
            api.clock.advance(seconds=10)
        await withdraw(api, "ACME", acme)
        await withdraw(api, "BETA", beta)
        # A minute later the igniter offers everything at 50.70, and the street (others
        # following the move) takes it; the fund holds.
        api.clock.advance(seconds=60)
        unwind = await order(api, igniter, i1, "sell", 1200, "50.70")
        await street_order(api, "ACME", Side.BUY, 1200, "50.70")
        await chain(api)
        # The stream reads the ledger two seconds after the unwind's execution.
        api.clock.advance(seconds=2)
        await surveillance_of(api).consumer.run()

        async with surveillance_of(api).unit_of_work() as session:
            query = select(SurveillanceAlert).order_by(SurveillanceAlert.first_trigger_seq)
            alerts = list((await session.execute(query)).scalars().all())
        assert [(a.alert_type, a.symbol, a.owner, a.detector) for a in alerts] == [
            (AlertType.MOMENTUM_IGNITION.value, "ACME", igniter.user_id, "PRE-3")
        ]
        (alert,) = alerts
        ev = alert.evidence
        assert alert.accounts == [i1]
        assert ev["side"] == "buy"
        assert ev["price_before"] == "50.00"
        assert ev["price_after"] == "50.60"
        assert ev["ignition_orders"] == 4
        assert ev["ignition_quantity"] == 1200
        assert ev["ignition_levels"] == 4
        assert ev["unwound_quantity"] == 1200
        assert ev["unwound_passive_quantity"] == 1200
        assert ev["average_unwind_price"] == "50.7000"
        assert set(ev["ignition_order_ids"]) == set(burst)
        assert ev["unwind_order_ids"] == [unwind]
        assert set(alert.order_ids) == {*burst, unwind}
        raised = await audit_events(api, "surveillance:alert:raised")
        assert [e["data"]["alert_id"] for e in raised] == [alert.id]
        expected = await expected_alerts(api)
        assert [(a.alert_type.value, a.first.trigger_seq) for a in expected] == [
            (alert.alert_type, alert.first_trigger_seq)
        ]
        # Alert latency: one sample for PRE-3, two seconds by the injected clock (the
        # unwind's execution was recorded at the frozen time, the commit two seconds on).
        assert alert.latency_ns == 2_000_000_000
        async with api.client() as client:
            exposition = (await client.get("/metrics")).text
        assert sample(exposition, f"{LATENCY}_count", "PRE-3") == 1.0
        assert sample(exposition, f"{LATENCY}_sum", "PRE-3") == 2.0
        assert sample(exposition, f"{LATENCY}_count", "MAN-1") == 0.0
