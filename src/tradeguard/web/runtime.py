"""What one running app shares across requests: settings, clock, ids, the database and Redis."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.requests import HTTPConnection

from tradeguard.config import Settings
from tradeguard.core.clock import Clock
from tradeguard.core.ids import IdGenerator


@dataclass(frozen=True, slots=True)
class Runtime:
    """Stored on `app.state.runtime` by the lifespan; read by routes through get_runtime."""

    settings: Settings
    clock: Clock
    ids: IdGenerator
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    # Set when TRADEGUARD_REDIS_URL is configured; owned (and closed) by the app's lifespan.
    redis: Redis | None = None


async def get_runtime(connection: HTTPConnection) -> Runtime:
    """FastAPI dependency: the runtime of the app serving this request (`async`, though it
    waits for nothing: FastAPI runs a plain `def` dependency on a worker thread)."""
    runtime: Runtime = connection.app.state.runtime
    return runtime
