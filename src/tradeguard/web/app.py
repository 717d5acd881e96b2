"""The ASGI application factory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from tradeguard import __version__
from tradeguard.config import Settings
from tradeguard.core.clock import Clock, SystemClock
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory
from tradeguard.identity import api as identity_api
from tradeguard.identity import webauthn_api
from tradeguard.identity.container import build_identity
from tradeguard.identity.guard import SessionStateCache
from tradeguard.identity.password_hashing import Argon2Parameters
from tradeguard.identity.tasks import run_housekeeping
from tradeguard.identity.webauthn_service import WebAuthnService
from tradeguard.ledger.sequencer import LedgerSequencer
from tradeguard.notify.senders import Senders, senders_from_settings
from tradeguard.notify.tasks import OutboxDispatcher
from tradeguard.trading import admin_api as trading_admin_api
from tradeguard.trading import api as trading_api
from tradeguard.trading import stream_api as trading_stream_api
from tradeguard.trading.container import build_trading
from tradeguard.trading.tasks import start_tasks as start_trading_tasks
from tradeguard.trading.tasks import sync_reference
from tradeguard.web import health
from tradeguard.web.metrics import HttpMetrics
from tradeguard.web.middleware import RequestBodyGuardMiddleware, RequestContextMiddleware
from tradeguard.web.problems import install_problem_handlers
from tradeguard.web.runtime import Runtime

DOCS_URL = "/docs"
WORKER_STOP_SECONDS = 10.0
OPENAPI_URL = "/openapi.json"

logger = logging.getLogger("tradeguard.web")


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    engine: AsyncEngine | None = None,
    argon2: Argon2Parameters | None = None,
    run_workers: bool = True,
) -> FastAPI:
    """Build the API app. Its lifespan opens the database (unless `engine` is given, which
    the caller then owns) and runs the audit-ledger sequencer in the background."""
    clock = clock or SystemClock()
    ids = IdGenerator(clock)
    metrics = HttpMetrics()
    docs = settings.enable_api_docs
    app = FastAPI(
        title="tradeguard",
        version=__version__,
        lifespan=_lifespan(
            settings, clock=clock, ids=ids, engine=engine, argon2=argon2, run_workers=run_workers
        ),
        docs_url=DOCS_URL if docs else None,
        openapi_url=OPENAPI_URL if docs else None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.state.metrics = metrics
    install_problem_handlers(app)
    app.include_router(health.router)
    app.include_router(identity_api.router)
    app.include_router(identity_api.jwks_router)
    app.include_router(webauthn_api.router)
    app.include_router(trading_api.router)
    app.include_router(trading_admin_api.router)
    app.include_router(trading_stream_api.router)
    app.state.session_cache = SessionStateCache(clock)
    # add_middleware wraps: the last added is outermost. The context middleware must be
    # outside the body guard so that 413/408 answers also get security headers and ids.
    app.add_middleware(
        RequestBodyGuardMiddleware,
        max_body_bytes=settings.max_body_bytes,
        read_timeout_seconds=settings.body_read_timeout_seconds,
        clock=clock,
    )
    app.add_middleware(
        RequestContextMiddleware,
        clock=clock,
        ids=ids,
        metrics=metrics,
        docs_paths=frozenset({DOCS_URL}) if docs else frozenset(),
    )
    return app


def _lifespan(
    settings: Settings,
    *,
    clock: Clock,
    ids: IdGenerator,
    engine: AsyncEngine | None,
    argon2: Argon2Parameters | None,
    run_workers: bool,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = engine is None
        active_engine = engine if engine is not None else create_engine(settings.main_database_url)
        app.state.runtime = Runtime(
            settings=settings,
            clock=clock,
            ids=ids,
            engine=active_engine,
            sessions=session_factory(active_engine),
        )
        app.state.identity = build_identity(
            settings, clock=clock, ids=ids, sessions=app.state.runtime.sessions, argon2=argon2
        )
        identity = app.state.identity
        app.state.session_cache.on_drop = identity.verifier.forget_sessions
        app.state.trading = build_trading(
            settings,
            clock=clock,
            ids=ids,
            sessions=app.state.runtime.sessions,
            registry=app.state.metrics.registry,
            street=run_workers and settings.market_simulator,
        )
        await sync_reference(app.state.trading, rebuild=True)
        app.state.webauthn = WebAuthnService(
            identity.deps,
            auth=identity.auth,
            factors=identity.factors,
            allowed_aaguids=settings.webauthn_allowed_aaguids or None,
        )
        tasks: list[asyncio.Task[None]] = []
        stop = asyncio.Event()
        if run_workers:
            sequencer = LedgerSequencer(
                active_engine, interval_ms=settings.ledger_sequencer_interval_ms, clock=clock
            )
            senders = notify_senders(settings, clock)
            dispatcher = OutboxDispatcher(
                engine=active_engine,
                keyring=identity.deps.keyring,  # the key the Notifier sealed messages with
                email_sender=senders.email,
                sms_provider=senders.sms,
                clock=clock,
            )
            tasks.append(asyncio.create_task(sequencer.run_forever(stop), name="ledger-sequencer"))
            tasks.append(
                asyncio.create_task(
                    dispatcher.run_forever(settings.notify_dispatch_interval_ms, stop),
                    name="notify-dispatcher",
                )
            )
            tasks.append(
                asyncio.create_task(
                    run_housekeeping(app.state.runtime.sessions, clock, stop=stop),
                    name="identity-housekeeping",
                )
            )
            tasks.extend(
                start_trading_tasks(app.state.trading, stop, tick_ms=settings.market_tick_ms)
            )
            for task in tasks:
                task.add_done_callback(_report_worker_exit)
        try:
            yield
        finally:
            # Let each worker finish the pass it is in (a pass cancelled mid-query would leave
            # the driver's work running after the loop is gone); cancel only stragglers.
            stop.set()
            if tasks:
                _, pending = await asyncio.wait(tasks, timeout=WORKER_STOP_SECONDS)
                for task in pending:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            if owned:
                await active_engine.dispose()

    return lifespan


def _report_worker_exit(task: asyncio.Task[None]) -> None:
    # Workers only return by cancellation; anything else means audit events stop being
    # chained or notifications stop being sent, which operators must see at once.
    if not task.cancelled() and task.exception() is not None:
        logger.error("%s stopped", task.get_name(), exc_info=task.exception())


def notify_senders(settings: Settings, clock: Clock) -> Senders:
    return senders_from_settings(
        settings,
        smtp_host=settings.smtp_host,
        smtp_port=settings.smtp_port,
        smtp_security=settings.smtp_security,
        smtp_username=settings.smtp_username,
        smtp_password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        mail_from=settings.mail_from,
        smtp_timeout_seconds=settings.smtp_timeout_seconds,
        sms_provider=settings.sms_provider,
        clock=clock,
    )
