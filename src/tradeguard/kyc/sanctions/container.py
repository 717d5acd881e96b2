"""Builds the sanctions service once per process (app, CLI command, test)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tradeguard.config import Settings
from tradeguard.core.clock import Clock
from tradeguard.core.ids import IdGenerator
from tradeguard.crypto.keyring import Keyring
from tradeguard.kyc.sanctions.common import SanctionsDeps
from tradeguard.kyc.sanctions.scoring import Thresholds
from tradeguard.kyc.sanctions.service import SanctionsService
from tradeguard.ledger.service import Ledger


@dataclass(slots=True)
class SanctionsServices:
    deps: SanctionsDeps
    sessions: async_sessionmaker[AsyncSession]
    service: SanctionsService
    # Re-screenings running in the background of this process (the API starts them).
    jobs: set[asyncio.Task[None]] = field(default_factory=set)


def build_sanctions(
    settings: Settings,
    *,
    clock: Clock,
    ids: IdGenerator,
    ledger: Ledger,
    keyring: Keyring,
    sessions: async_sessionmaker[AsyncSession],
) -> SanctionsServices:
    deps = SanctionsDeps(
        clock=clock,
        ids=ids,
        ledger=ledger,
        keyring=keyring,
        thresholds=Thresholds(
            block=settings.sanctions_block_threshold, review=settings.sanctions_review_threshold
        ),
        source=settings.sanctions_list_source,
        max_file_bytes=settings.sanctions_max_file_bytes,
        fetch_timeout_seconds=settings.sanctions_fetch_timeout_seconds,
        max_shrink_fraction=settings.sanctions_max_shrink_fraction,
    )
    return SanctionsServices(deps=deps, sessions=sessions, service=SanctionsService(deps))
