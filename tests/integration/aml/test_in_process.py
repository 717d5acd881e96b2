"""The AML monitor runs inside the server (TRADEGUARD_AML_ENABLED, on by default): deposits
become CTRs and alerts without anyone running a command, and a second server goes on from
the stored checkpoint without counting anything twice; switched off, no monitor runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.aml.conftest import MONDAY_OPEN
from tests.support.api import TEST_ARGON2, Api, running_api
from tests.support.funds import add_bank, customer
from tests.support.trading import funded_account
from tradeguard.aml.models import AmlAlert, AmlCheckpoint, AmlCtr, AmlMovement
from tradeguard.aml.tasks import MONITOR_COMPONENT
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.db.engine import session_factory, unit_of_work
from tradeguard.web.app import create_app


@asynccontextmanager
async def serving(settings: Settings, engine: AsyncEngine, **changes: object) -> AsyncIterator[Api]:
    configured = settings.model_copy(
        update={"market_simulator": False, "aml_interval_ms": 20, **changes}
    )
    clock = FrozenClock(MONDAY_OPEN + 3600 * 10**9)
    app = create_app(configured, clock=clock, engine=engine, argon2=TEST_ARGON2, run_workers=True)
    async with app.router.lifespan_context(app):
        yield Api(app, clock, engine)


def monitor_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == MONITOR_COMPONENT]


async def split_deposits(settings: Settings, engine: AsyncEngine, keys: tuple[str, str]) -> None:
    async with (
        running_api(settings, engine, FrozenClock(MONDAY_OPEN)) as quiet,
        quiet.client() as client,
    ):
        jane = await customer(quiet, client, "jane", phone="+14155550141", cash="0")
        await add_bank(quiet, jane)
        second = await funded_account(quiet, jane.trader, "0")
        for key, account in zip(keys, (jane.account_id, second), strict=True):
            made = await jane.post(
                "/api/v1/funds/deposits",
                {
                    "account_id": account,
                    "bank_account_id": jane.bank_account_id,
                    "rail": "ach",
                    "amount": "6000.00",
                    "idempotency_key": key,
                },
            )
            assert made.status_code == 201, made.text


async def counts(engine: AsyncEngine) -> tuple[int, int, int, int]:
    async with unit_of_work(session_factory(engine)) as session:
        movements = len((await session.execute(select(AmlMovement))).scalars().all())
        alerts = len((await session.execute(select(AmlAlert))).scalars().all())
        ctrs = len((await session.execute(select(AmlCtr))).scalars().all())
        mark = await session.get(AmlCheckpoint, "aml")
        return movements, alerts, ctrs, (mark.last_seq if mark is not None else 0)


class TestInProcess:
    async def test_the_running_server_monitors_and_a_restart_resumes(
        self, settings: Settings, engine: AsyncEngine
    ) -> None:
        await split_deposits(settings, engine, ("a", "b"))
        async with serving(settings, engine):
            assert len(monitor_tasks()) == 1
            for _ in range(400):  # the sequencer chains, the monitor reads: within seconds
                if (await counts(engine))[2] == 1:
                    break
                await asyncio.sleep(0.05)
        movements, alerts, ctrs, first_mark = await counts(engine)
        assert (movements, alerts, ctrs) == (2, 1, 1)
        assert monitor_tasks() == []
        # A new server process: it starts at the stored checkpoint and counts nothing twice.
        async with serving(settings, engine):
            for _ in range(100):
                if (await counts(engine))[3] > first_mark:
                    break
                await asyncio.sleep(0.05)
        assert (await counts(engine))[:3] == (2, 1, 1)

    async def test_switched_off_no_monitor_runs(
        self, settings: Settings, engine: AsyncEngine
    ) -> None:
        async with serving(settings, engine, aml_enabled=False):
            assert monitor_tasks() == []
