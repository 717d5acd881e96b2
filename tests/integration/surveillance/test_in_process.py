"""The surveillance stream runs inside the server (TRADEGUARD_SURVEILLANCE_ENABLED, on by
default): what was traded becomes alerts without anyone running a command; switched off, no
stream task runs. So does the owner-link derivation (TRADEGUARD_SURVEILLANCE_LINKS_ENABLED)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.surveillance.support import (
    MONDAY_OPEN,
    customer,
    order,
    surveillance_of,
    trade_a_market,
)
from tests.support.api import TEST_ARGON2, Api, login, running_api
from tests.support.trading import add_instrument, street_order
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.core.orders import Side
from tradeguard.surveillance.models import SurveillanceAlert
from tradeguard.surveillance.tasks import COMPONENT, LINKS_COMPONENT
from tradeguard.web.app import create_app


@asynccontextmanager
async def serving(settings: Settings, engine: AsyncEngine, **changes: object) -> AsyncIterator[Api]:
    configured = settings.model_copy(
        update={"market_simulator": False, "surveillance_interval_ms": 20, **changes}
    )
    clock = FrozenClock(MONDAY_OPEN)
    app = create_app(configured, clock=clock, engine=engine, argon2=TEST_ARGON2, run_workers=True)
    async with app.router.lifespan_context(app):
        yield Api(app, clock, engine)


def stream_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == COMPONENT]


@pytest.mark.spec("MAN-5")
class TestInProcess:
    async def test_the_running_server_turns_the_ledger_into_alerts_by_itself(
        self, settings: Settings, engine: AsyncEngine
    ) -> None:
        # The market is traded first (the street's test liquidity does not survive the
        # running server's book rebuilds), then a server with its workers starts.
        async with running_api(settings, engine, FrozenClock(MONDAY_OPEN)) as quiet:
            await trade_a_market(quiet)
        async with serving(settings, engine) as api:
            assert len(stream_tasks()) == 1
            types: set[str] = set()
            for _ in range(400):  # the sequencer chains, the stream reads: within seconds
                async with surveillance_of(api).unit_of_work() as session:
                    rows = (await session.execute(select(SurveillanceAlert))).scalars().all()
                types = {row.alert_type for row in rows}
                if len(types) == 2:
                    break
                await asyncio.sleep(0.05)
            assert types == {"WASH_TRADE", "SPOOFING"}
        assert stream_tasks() == []

    async def test_switched_off_no_stream_runs(
        self, settings: Settings, engine: AsyncEngine
    ) -> None:
        async with serving(settings, engine, surveillance_enabled=False):
            assert stream_tasks() == []


def link_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == LINKS_COMPONENT]


class TestOwnerLinksInProcess:
    async def test_the_running_server_derives_owner_links_by_itself(
        self, settings: Settings, engine: AsyncEngine
    ) -> None:
        tablet = {"platform": "iPadOS", "screen": "1024x768"}
        async with running_api(settings, engine, FrozenClock(MONDAY_OPEN)) as quiet:
            await add_instrument(quiet, "ACME", "50.00")
            await street_order(quiet, "ACME", Side.SELL, 50_000, "50.02")
            for name, ip in (("ursula", "198.51.100.10"), ("victor", "192.0.2.44")):
                # Only users who traded are linked (a crowd of sign-ups cannot hide a pair).
                who = await customer(quiet, name)
                await order(quiet, who, who.accounts[0], "buy", 100, "50.02")
                async with quiet.client(ip) as client:
                    await login(client, name, device=tablet)
        async with serving(settings, engine) as api:
            assert len(link_tasks()) == 1
            kinds: list[str] = []
            for _ in range(200):
                async with surveillance_of(api).unit_of_work() as session:
                    kinds = [row.kind for row in await surveillance_of(api).links.all(session)]
                if kinds:
                    break
                await asyncio.sleep(0.05)
            assert kinds == ["device"]
        assert link_tasks() == []

    async def test_switched_off_no_derivation_runs(
        self, settings: Settings, engine: AsyncEngine
    ) -> None:
        async with serving(settings, engine, surveillance_links_enabled=False):
            assert link_tasks() == []
            assert len(stream_tasks()) == 1
