"""Liveness, readiness and metrics endpoints: public, cheap, and free of internal detail."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Final, Literal

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict
from sqlalchemy import text

from tradeguard.core.errors import ServiceUnavailable
from tradeguard.web.metrics import HttpMetrics
from tradeguard.web.route_policy import public
from tradeguard.web.runtime import Runtime, get_runtime

READY_CHECK_TIMEOUT_SECONDS: Final = 2.0

_LIVE_BODY: Final = b'{"status":"ok"}'

logger = logging.getLogger("tradeguard.web.health")

router = APIRouter(tags=["health"])


class Live(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["ok"]


class Ready(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["ready"]


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
    responses={503: {"description": "The database is not available"}},
)
async def ready(runtime: Annotated[Runtime, Depends(get_runtime)]) -> Response:
    """Readiness: the database answers.

    The database must answer `SELECT 1` within the timeout; 503 problem+json otherwise.
    """
    try:
        async with asyncio.timeout(READY_CHECK_TIMEOUT_SECONDS):
            async with runtime.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
    except Exception as exc:
        # The exception text can hold the database URL (with its password) or SQL parameters,
        # so neither the client nor the log gets it: the type is enough to start looking.
        logger.warning(
            "readiness check failed: database unavailable", extra={"error": type(exc).__name__}
        )
        raise ServiceUnavailable("The database is not available") from None
    return Response(b'{"status":"ready"}', media_type="application/json")


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
