"""Identity document tests run against the real app, database, ledger and keyring, with a
stand-in applicant directory (tests/support/kyc_applicants_stand_in.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.api import Api, running_api
from tests.support.kyc_applicants_stand_in import StandInApplicants
from tradeguard.config import Settings
from tradeguard.core.clock import NS_PER_SECOND, FrozenClock
from tradeguard.kyc.documents.container import DocumentServices

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
def applicants() -> StandInApplicants:
    return StandInApplicants()


@pytest.fixture
async def api(
    settings: Settings, engine: AsyncEngine, clock: FrozenClock, applicants: StandInApplicants
) -> AsyncIterator[Api]:
    async with running_api(settings, engine, clock) as running:
        services: DocumentServices = running.app.state.kyc_documents
        services.deps.applicants = applicants
        yield running
