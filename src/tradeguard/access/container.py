"""Builds the access services once per process (app, CLI command, test)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tradeguard.access.breakglass import BreakGlassService
from tradeguard.access.common import AccessDeps, AccessPolicy, in_transaction
from tradeguard.access.grants import GrantService
from tradeguard.access.levels import LevelService
from tradeguard.access.review import ReviewService
from tradeguard.config import Settings
from tradeguard.core.clock import Clock
from tradeguard.core.ids import IdGenerator
from tradeguard.ledger.service import Ledger
from tradeguard.notify.service import Notifier

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AccessServices:
    deps: AccessDeps
    grants: GrantService
    breakglass: BreakGlassService
    levels: LevelService
    review: ReviewService

    async def run(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """One use case in one unit of work (a policy refusal still commits its audit event)."""
        return await in_transaction(self.deps, work)


def build_access(
    settings: Settings,
    *,
    clock: Clock,
    ids: IdGenerator,
    ledger: Ledger,
    notifier: Notifier,
    sessions: async_sessionmaker[AsyncSession],
) -> AccessServices:
    """Wire access control; the notifier must seal with the key the dispatcher opens with
    (identity's), so the app and the CLI pass identity's."""
    deps = AccessDeps(
        clock=clock,
        ids=ids,
        ledger=ledger,
        notifier=notifier,
        policy=AccessPolicy.from_settings(settings),
        sessions=sessions,
    )
    return AccessServices(
        deps=deps,
        grants=GrantService(deps),
        breakglass=BreakGlassService(deps),
        levels=LevelService(deps),
        review=ReviewService(deps),
    )
