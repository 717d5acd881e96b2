"""Liveness, readiness and metrics endpoints: public, cheap, and free of internal detail."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from tradeguard.core.errors import ServiceUnavailable
from tradeguard.web.metrics import HttpMetrics
from tradeguard.web.route_policy import public
from tradeguard.web.runtime import Runtime, get_runtime

READY_CHECK_TIMEOUT_SECONDS: Final = 2.0

_LIVE_BODY: Final = b'{"status":"ok"}'

logger = logging.getLogger("tradeguard.web.health")

router = APIRouter(tags=["health"])


@router.get("/health/live", openapi_extra=public(), response_class=Response)
async def live() -> Response:
    """The process is up and serving; touches nothing else (the benchmark target)."""
    return Response(_LIVE_BODY, media_type="application/json")


@router.get("/health/ready", openapi_extra=public(), response_class=Response)
async def ready(runtime: Annotated[Runtime, Depends(get_runtime)]) -> Response:
    """The database answers `SELECT 1` within the timeout; 503 problem+json otherwise."""
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


@router.get("/metrics", openapi_extra=public(), response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus text exposition of this app's registry."""
    http_metrics: HttpMetrics = request.app.state.metrics
    return Response(generate_latest(http_metrics.registry), media_type=CONTENT_TYPE_LATEST)
