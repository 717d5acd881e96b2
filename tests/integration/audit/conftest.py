"""Audit API tests run against the real app and database (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.api import Api, running_api
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock


@pytest.fixture
async def api(settings: Settings, engine: AsyncEngine, clock: FrozenClock) -> AsyncIterator[Api]:
    """The real app over a migrated SQLite or PostgreSQL database (workers off: the tests
    chain events and sign checkpoints when they choose)."""
    async with running_api(settings, engine, clock) as running:
        yield running
