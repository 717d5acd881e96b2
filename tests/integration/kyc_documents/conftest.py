"""Identity document tests run against the real app, database, ledger and keyring; the
applicant's declared identity comes from their real application (tests/support/kyc.py
`declared`: a draft saved through the customer API)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.api import Api, running_api
from tradeguard.config import Settings
from tradeguard.core.clock import NS_PER_SECOND, FrozenClock

# Monday 5 January 2026, 15:00 UTC.
MONDAY = int(datetime(2026, 1, 5, 15, 0, tzinfo=UTC).timestamp()) * NS_PER_SECOND


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Small limits so that the oversize and quota cases stay fast."""
    return settings.model_copy(
        update={
            # Above the global 1 MiB body limit: the upload path has its own.
            "kyc_document_max_bytes": 2 * 1024 * 1024,
            "kyc_document_uploads_per_day": 4,
            "kyc_documents_on_file": 6,
        }
    )


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(MONDAY)


@pytest.fixture
async def api(settings: Settings, engine: AsyncEngine, clock: FrozenClock) -> AsyncIterator[Api]:
    async with running_api(settings, engine, clock) as running:
        yield running
