"""AML tests run against the real app, database, ledger, funds and sandbox processor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.api import Api, running_api
from tradeguard.config import Settings
from tradeguard.core.clock import NS_PER_SECOND, FrozenClock

# Monday 5 January 2026, 10:00 in New York (15:00 UTC).
MONDAY_OPEN = int(datetime(2026, 1, 5, 15, 0, tzinfo=UTC).timestamp()) * NS_PER_SECOND


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(MONDAY_OPEN)


@pytest.fixture
async def api(settings: Settings, engine: AsyncEngine, clock: FrozenClock) -> AsyncIterator[Api]:
    filer = settings.model_copy(
        update={
            "aml_filer_name": "Tradeguard Securities LLC",
            "aml_filer_tin": "987654321",
            "aml_filer_street": "100 Broad Street",
            "aml_filer_city": "New York",
            "aml_filer_state": "NY",
            "aml_filer_zip": "10004",
            "aml_filer_contact_office": "AML Compliance",
            "aml_filer_phone": "2125550100",
            "aml_filer_tcc": "TBSATEST",
        }
    )
    async with running_api(filer, engine, clock) as running:
        yield running
