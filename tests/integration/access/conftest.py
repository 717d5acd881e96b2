"""Access alert tests run against the real app and database at 10:00 on a Monday in New York,
with small limits so that each rule is reached in a few requests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.access.support import MONDAY_10AM
from tests.support.api import Api, running_api
from tests.support.webauthn_authenticator import default_metadata_document
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(MONDAY_10AM)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # Staff register attested keys of the test vendor (IAC-3): trust it, as tests/conftest.py.
    metadata = tmp_path / "staff-authenticators.json"
    metadata.write_text(default_metadata_document())
    return Settings(  # type: ignore[call-arg]
        data_dir=tmp_path / "var",
        _env_file=None,
        webauthn_staff_metadata_file=metadata,
        access_alert_max_customers=3,
        access_alert_customers_window_seconds=600,
        access_alert_max_denials=2,
        access_alert_denials_window_seconds=300,
        access_alert_new_network_days=30,
        access_working_hours="08:00-18:00",
        access_working_timezone="America/New_York",
    )


@pytest.fixture
async def api(settings: Settings, engine: AsyncEngine, clock: FrozenClock) -> AsyncIterator[Api]:
    async with running_api(settings, engine, clock) as running:
        yield running
