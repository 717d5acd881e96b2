"""Onboarding tests run against the real app and database with the onboarding gate on
(kyc_required), and the real sanctions screening and identity documents the app wires in
(kyc/container.py): evidence is uploaded documents, screening the loaded OFAC sample."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.api import Api, running_api
from tests.support.kyc import verified_documents
from tests.support.kyc_applications import COMPLETE
from tests.support.trading import Trader, signed_in_staff, signed_in_trader
from tradeguard.access.domain import Role
from tradeguard.config import Settings
from tradeguard.core.clock import NS_PER_SECOND, FrozenClock
from tradeguard.kyc.onboarding.container import OnboardingServices

# Monday 5 January 2026, 10:00 in New York (15:00 UTC).
MONDAY_OPEN = int(datetime(2026, 1, 5, 15, 0, tzinfo=UTC).timestamp()) * NS_PER_SECOND
APPLICATION = "/api/v1/kyc/application"
ADMIN = "/api/v1/admin/kyc/applications"


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(MONDAY_OPEN)


@pytest.fixture
def gated(settings: Settings) -> Settings:
    return settings.model_copy(update={"kyc_required": True})


@pytest.fixture
async def api(
    gated: Settings,
    engine: AsyncEngine,
    clock: FrozenClock,
) -> AsyncIterator[Api]:
    async with running_api(gated, engine, clock) as running:
        yield running


def onboarding_of(api: Api) -> OnboardingServices:
    services: OnboardingServices = api.app.state.onboarding
    return services


@dataclass
class Desk:
    """A customer and two compliance reviewers, each with their own client."""

    api: Api
    customer: Trader
    reviewer: Trader
    second: Trader

    async def save(self, body: dict[str, Any], who: Trader | None = None) -> httpx.Response:
        return await (who or self.customer).put(APPLICATION, body)

    async def submitted(self, body: dict[str, Any], who: Trader | None = None) -> str:
        saved = await self.save(body, who)
        assert saved.status_code == 200, saved.text
        done = await (who or self.customer).post(f"{APPLICATION}/submit")
        assert done.status_code == 200, done.text
        return str(done.json()["id"])

    async def verified(
        self, who: Trader | None = None, identity: dict[str, Any] | None = None
    ) -> None:
        """The customer's passport (an MRZ made for their application) and proof of
        address, uploaded and verified by the real documents checks."""
        await verified_documents(self.api, who or self.customer, identity or COMPLETE["identity"])

    async def staff(
        self, path: str, body: dict[str, Any] | None = None, who: Trader | None = None
    ) -> httpx.Response:
        return await (who or self.reviewer).post(f"{ADMIN}/{path}", body)


@pytest.fixture
async def desk(api: Api) -> AsyncIterator[Desk]:
    async with api.client() as one, api.client() as two, api.client() as three:
        customer = await signed_in_trader(api, one, "alice")
        reviewer = await signed_in_staff(api, two, "carol", Role.COMPLIANCE)
        second = await signed_in_staff(api, three, "dave", Role.COMPLIANCE)
        yield Desk(api, customer, reviewer, second)
