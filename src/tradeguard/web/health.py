"""Liveness, readiness and metrics endpoints: public, cheap, and free of internal detail."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable
from typing import Annotated, Final, Literal

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tradeguard.core.clock import Clock
from tradeguard.core.errors import ServiceUnavailable
from tradeguard.core.workers import FailureObserver, FailureTracker, failure_name
from tradeguard.db.engine import read_only
from tradeguard.web.metrics import HttpMetrics
from tradeguard.web.outage import RETRY_AFTER_SECONDS
from tradeguard.web.problems import problem_response
from tradeguard.web.route_policy import public
from tradeguard.web.runtime import Runtime, get_runtime

READY_CHECK_TIMEOUT_SECONDS: Final = 2.0
DATABASE: Final = "database"
REDIS: Final = "redis"
OK: Final = "ok"
UNAVAILABLE: Final = "unavailable"

_LIVE_BODY: Final = b'{"status":"ok"}'

logger = logging.getLogger("tradeguard.web.health")

router = APIRouter(tags=["health"])


class Readiness:
    """One FailureTracker per dependency the readiness probe checks: a failing dependency is
    logged when it starts and when it ends (not on every probe) and shows in the metrics as
    component `readiness-<name>`."""

    def __init__(self, *, clock: Clock, observer: FailureObserver | None = None) -> None:
        self._clock = clock
        self._observer = observer
        self._trackers: dict[str, FailureTracker] = {}

    def tracker(self, dependency: str) -> FailureTracker:
        if dependency not in self._trackers:
            self._trackers[dependency] = FailureTracker(
                f"readiness-{dependency}",
                logger=logger,
                clock=self._clock,
                observer=self._observer,
                # The exception text can hold a URL (with its password) or SQL parameters, so
                # neither the client nor the log gets it: the type is enough to start looking.
                describe=lambda error: f"{dependency} not answering: {failure_name(error)}",
            )
        return self._trackers[dependency]


class Live(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["ok"]


class Ready(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["ready"]
    checks: dict[str, Literal["ok", "unavailable"]]


# The handlers return prebuilt bytes (the liveness probe is the benchmark target); the models
# document them.
@router.get("/health/live", openapi_extra=public(), response_model=Live, operation_id="health.live")
async def live() -> Response:
    """Liveness: the process is up and serving.

    Touches nothing else (the benchmark target).
    """
    return Response(_LIVE_BODY, media_type="application/json")


@router.get(
    "/health/ready",
    openapi_extra=public(),
    response_model=Ready,
    operation_id="health.ready",
    responses={503: {"description": "A dependency is not available (named in `checks`)"}},
)
async def ready(request: Request, runtime: Annotated[Runtime, Depends(get_runtime)]) -> Response:
    """Readiness: every dependency answers.

    Within the timeout: the database (`SELECT 1`) and, when TRADEGUARD_REDIS_URL is set,
    Redis (`PING`). 503 problem+json naming each otherwise.
    """
    probes: dict[str, Awaitable[None]] = {DATABASE: _database_answers(runtime.engine)}
    if runtime.redis is not None:
        probes[REDIS] = _redis_answers(runtime.redis)
    outcomes = await asyncio.gather(*probes.values(), return_exceptions=True)
    readiness: Readiness = request.app.state.readiness
    checks: dict[str, str] = {}
    for dependency, outcome in zip(probes, outcomes, strict=True):
        tracker = readiness.tracker(dependency)
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, Exception):
                raise outcome  # cancellation and the like are not a dependency's failure
            tracker.failed(outcome)
            checks[dependency] = UNAVAILABLE
        else:
            tracker.succeeded()
            checks[dependency] = OK
    failing = [dependency for dependency, status in checks.items() if status != OK]
    if failing:
        error = ServiceUnavailable(f"Not ready: {', '.join(failing)} unavailable", checks=checks)
        return problem_response(
            error,
            instance=request.url.path,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    body = {"status": "ready", "checks": checks}
    return Response(json.dumps(body, separators=(",", ":")).encode(), media_type="application/json")


async def _database_answers(engine: AsyncEngine) -> None:
    async with asyncio.timeout(READY_CHECK_TIMEOUT_SECONDS):
        async with engine.connect() as connection:
            await read_only(connection)
            await connection.execute(text("SELECT 1"))


async def _redis_answers(redis: Redis) -> None:
    async with asyncio.timeout(READY_CHECK_TIMEOUT_SECONDS):
        await redis.ping()


@router.get(
    "/metrics",
    openapi_extra=public(),
    response_class=Response,
    operation_id="health.metrics",
    responses={
        200: {
            "description": "Prometheus text exposition format 0.0.4",
            "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(request: Request) -> Response:
    """Prometheus metrics of this process (requests by route template and status)."""
    http_metrics: HttpMetrics = request.app.state.metrics
    return Response(generate_latest(http_metrics.registry), media_type=CONTENT_TYPE_LATEST)
