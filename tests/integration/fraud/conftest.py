"""Takeover tests run against the real app and database, at a moment the NYSE is open (the
unusual-trading scenario trades)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.api import Api, running_api
from tradeguard.config import Settings
from tradeguard.core.clock import NS_PER_SECOND, FrozenClock

MONDAY_OPEN = int(datetime(2026, 1, 5, 15, 0, tzinfo=UTC).timestamp()) * NS_PER_SECOND


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(MONDAY_OPEN)


@pytest.fixture
async def api(settings: Settings, engine: AsyncEngine, clock: FrozenClock) -> AsyncIterator[Api]:
    async with running_api(settings, engine, clock) as running:
        yield running
