"""MAN-2 through the real stream when the spoof is the last thing that happened (SQLite and
PostgreSQL): the stream, caught up and idle, concludes it by the clock (its tick), commits
the alert once, and a consumer restarted after the tick, or events that follow, never raise
it again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.surveillance.support import (
    MONDAY_OPEN,
    cancel,
    chain,
    customer,
    fresh_surveillance,
    order,
    surveillance_of,
)
from tests.support.api import Api, audit_events, running_api
from tests.support.trading import add_instrument, street_order
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.core.orders import Side
from tradeguard.surveillance.models import SurveillanceAlert
from tradeguard.surveillance.tasks import run_stream, stream_tracker


@pytest.fixture
async def api(settings: Settings, engine: AsyncEngine) -> AsyncIterator[Api]:
    async with running_api(settings, engine, FrozenClock(MONDAY_OPEN)) as running:
        yield running


async def spoof_as_the_last_event(api: Api) -> str:
    await add_instrument(api, "ACME", "50.00")
    await street_order(api, "ACME", Side.SELL, 50_000, "50.02")
    await street_order(api, "ACME", Side.BUY, 50_000, "49.98")
    sam = await customer(api, "sam")
    (s1,) = sam.accounts
    await order(api, sam, s1, "buy", 300, "50.02")
    api.clock.advance(seconds=30)
    spoof = await order(api, sam, s1, "buy", 5000, "49.97")
    api.clock.advance(seconds=2)
    await order(api, sam, s1, "sell", 300, "49.98")
    api.clock.advance(seconds=1.5)
    await cancel(api, sam, s1, spoof)
    await chain(api)
    return spoof


async def alerts(api: Api) -> list[SurveillanceAlert]:
    async with surveillance_of(api).unit_of_work() as session:
        return list((await session.execute(select(SurveillanceAlert))).scalars().all())


@pytest.mark.spec("MAN-2", "MAN-5")
class TestTick:
    async def test_an_idle_stream_reports_a_spoof_whose_cancel_was_the_last_event_once(
        self, api: Api
    ) -> None:
        spoof = await spoof_as_the_last_event(api)
        consumer = surveillance_of(api).consumer
        await consumer.run()
        assert await alerts(api) == []
        # The re-quote window (1 s) and the tick's grace (2 s) not yet over: nothing.
        api.clock.advance(seconds=2)
        assert (await consumer.tick()).alerts == 0
        api.clock.advance(seconds=2)
        ticked = await consumer.tick()
        assert ticked.alerts == 1
        [alert] = await alerts(api)
        assert alert.alert_type == "SPOOFING"
        assert alert.evidence["cancelled_order_ids"] == [spoof]
        assert [o["status"] for o in alert.evidence["orders"] if o["order_id"] == spoof] == [
            "cancelled"
        ]
        assert (await consumer.tick()).alerts == 0
        # A new process rebuilds the engine from the ledger (the spoof is held again) and
        # ticks: the alert is not raised or folded twice.
        again = fresh_surveillance(api, batch_size=100).consumer
        await again.run()
        api.clock.advance(seconds=5)
        await again.tick()
        # Trading goes on: the next events release nothing more either.
        await street_order(api, "ACME", Side.BUY, 100, "49.98")
        await chain(api)
        await again.run()
        await consumer.run()
        [still] = await alerts(api)
        assert (still.id, still.occurrences) == (alert.id, 1)
        raised = await audit_events(api, "surveillance:alert:raised")
        assert [e["data"]["alert_id"] for e in raised] == [alert.id]
        assert await audit_events(api, "surveillance:alert:extended") == []

    async def test_the_running_stream_ticks_when_caught_up(self, api: Api) -> None:
        await spoof_as_the_last_event(api)
        api.clock.advance(seconds=5)
        consumer = fresh_surveillance(api, batch_size=100).consumer
        stop = asyncio.Event()
        task = asyncio.create_task(
            run_stream(
                consumer,
                interval_seconds=0.01,
                stop=stop,
                tracker=stream_tracker(api.clock, 0.01),
            )
        )
        for _ in range(500):
            if await alerts(api):
                break
            await asyncio.sleep(0.01)
        stop.set()
        await task
        assert [a.alert_type for a in await alerts(api)] == ["SPOOFING"]
