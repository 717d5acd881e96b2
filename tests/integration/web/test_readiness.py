"""Readiness against real dependencies: the database (SQLite and PostgreSQL) and, when
configured, the real Redis on 127.0.0.1:6379 or a port where nothing listens."""

from __future__ import annotations

import logging
import socket
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import REDIS_URL, require_service
from tests.unit.web.conftest import serving, settings_with
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.core.errors import PROBLEM_BASE
from tradeguard.web.app import create_app
from tradeguard.web.problems import PROBLEM_CONTENT_TYPE

HEALTH_LOGGER = "tradeguard.web.health"


@pytest.fixture
async def live_redis_url() -> str:
    """The test Redis (database 15), if it answers; skipped (failed in CI) otherwise."""
    client: Redis = Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except Exception as exc:  # redis-py raises its own ConnectionError, not OSError
        await client.aclose()
        require_service("Redis", exc)
    await client.aclose()
    return REDIS_URL


@pytest.fixture
def dead_redis_url() -> str:
    """A password-bearing URL to a loopback port where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://:redis-secret-pw@127.0.0.1:{port}/15"


class TestReadinessWithRedis:
    @pytest.mark.redis
    @pytest.mark.spec("IR-1")
    async def test_ready_when_the_database_and_redis_answer(
        self, settings: Settings, clock: FrozenClock, engine: AsyncEngine, live_redis_url: str
    ) -> None:
        app = create_app(
            settings_with(settings, redis_url=live_redis_url), clock=clock, engine=engine
        )
        async with serving(app) as client:
            response = await client.get("/health/ready")
        assert response.status_code == 200
        assert response.json() == {"status": "ready", "checks": {"database": "ok", "redis": "ok"}}

    @pytest.mark.spec("IR-1")
    async def test_a_dead_redis_makes_the_instance_not_ready_and_is_named_without_its_url(
        self,
        settings: Settings,
        clock: FrozenClock,
        engine: AsyncEngine,
        dead_redis_url: str,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.INFO)
        app = create_app(
            settings_with(settings, redis_url=dead_redis_url), clock=clock, engine=engine
        )
        async with serving(app) as client:
            responses = [await client.get("/health/ready") for _ in range(3)]
            exposition = (await client.get("/metrics")).text
        for response in responses:
            assert response.status_code == 503
            assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
            assert "retry-after" in response.headers
            body = response.json()
            assert body["type"] == PROBLEM_BASE + "service-unavailable"
            assert body["checks"] == {"database": "ok", "redis": "unavailable"}
            assert "redis" in body["detail"]
        port = str(urlsplit(dead_redis_url).port)
        for secret in ("redis-secret-pw", f":{port}", "redis://"):
            assert all(secret not in response.text for response in responses)
            assert secret not in caplog.text
        # One line when Redis went missing, not one per probe.
        (line,) = [r for r in caplog.records if r.name == HEALTH_LOGGER]
        assert line.getMessage().startswith("readiness-redis failing: redis not answering:")
        assert 'tradeguard_component_failing{component="readiness-redis"} 1.0' in exposition

    @pytest.mark.spec("IR-1")
    async def test_without_a_redis_url_redis_is_not_checked(
        self, settings: Settings, clock: FrozenClock, engine: AsyncEngine
    ) -> None:
        async with serving(create_app(settings, clock=clock, engine=engine)) as client:
            response = await client.get("/health/ready")
        assert response.status_code == 200
        assert response.json()["checks"] == {"database": "ok"}
