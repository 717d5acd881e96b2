"""Fixtures for the web layer: an app with its lifespan running, and an ASGI client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.migrated import copy_migrated_sqlite
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.db.engine import create_engine
from tradeguard.web.app import create_app

BASE_URL = "https://testserver"


@pytest.fixture
async def sqlite_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A migrated SQLite database, for tests that are not about the database backend."""
    path = tmp_path / "web.db"
    await copy_migrated_sqlite(path)
    engine = create_engine(f"sqlite:///{path}")
    yield engine
    await engine.dispose()


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan (httpx's ASGI transport does not) and yield a client for it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            yield client


@pytest.fixture
def app(settings: Settings, clock: FrozenClock, sqlite_engine: AsyncEngine) -> FastAPI:
    return create_app(settings, clock=clock, engine=sqlite_engine)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(app) as api_client:
        yield api_client


def settings_with(settings: Settings, **changes: object) -> Settings:
    """A copy of the test settings with some values changed (Settings is frozen)."""
    values = {**settings.model_dump(), **changes}
    return Settings(_env_file=None, **values)
