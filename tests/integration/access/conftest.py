from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.api import Api, running_api
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock


@pytest.fixture
async def api(settings: Settings, engine: AsyncEngine, clock: FrozenClock) -> AsyncIterator[Api]:
    async with running_api(settings, engine, clock) as running:
        yield running
