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
from tradeguard.access import alerts_api as access_alerts_api
from tradeguard.access import api as access_api
from tradeguard.access.alerts_container import build_access_alerts
from tradeguard.access.alerts_tasks import COMPONENT as ACCESS_DETECTOR_COMPONENT
from tradeguard.access.alerts_tasks import start_detector as start_access_detector
from tradeguard.access.container import build_access
from tradeguard.access.tasks import expiry_tracker, run_expiry
from tradeguard.backoffice import api as backoffice_api
from tradeguard.backoffice.container import build_backoffice
from tradeguard.config import Settings
from tradeguard.core.clock import Clock, SystemClock
from tradeguard.core.ids import IdGenerator
from tradeguard.core.workers import FailureTracker
from tradeguard.db.availability import unavailable_reason
from tradeguard.db.engine import create_engine, session_factory
from tradeguard.db.redis import create_redis
from tradeguard.identity import api as identity_api
from tradeguard.identity import staff_enrolment_api, webauthn_api
from tradeguard.identity.authenticator_metadata import AuthenticatorMetadataFile
from tradeguard.identity.container import IdentityServices, build_identity
from tradeguard.identity.guard import SessionStateCache
from tradeguard.identity.keystore import SigningKeyWatcher, watch_signing_keys
from tradeguard.identity.password_hashing import Argon2Parameters
from tradeguard.identity.staff_enrolment import StaffEnrolmentService
from tradeguard.identity.tasks import housekeeping_tracker, run_housekeeping
from tradeguard.identity.webauthn_service import WebAuthnService
from tradeguard.ledger.sequencer import LedgerSequencer
from tradeguard.notify.senders import Senders, senders_from_settings
from tradeguard.notify.tasks import OutboxDispatcher
from tradeguard.trading import admin_api as trading_admin_api
from tradeguard.trading import api as trading_api
from tradeguard.trading import stream_api as trading_stream_api
from tradeguard.trading.container import build_trading
from tradeguard.trading.tasks import COMPONENTS as TRADING_COMPONENTS
from tradeguard.trading.tasks import start_tasks as start_trading_tasks
from tradeguard.trading.tasks import sync_reference
from tradeguard.web import health, outage, pages
from tradeguard.web.docs import DOCS_URL, docs_routes
from tradeguard.web.metrics import ComponentMetrics, ConnectionMetrics, HttpMetrics
from tradeguard.web.middleware import RequestBodyGuardMiddleware, RequestContextMiddleware
from tradeguard.web.openapi import install_openapi, operation_id_from_path
from tradeguard.web.problems import install_problem_handlers
from tradeguard.web.routing import RouteResolutionMiddleware, RouteTable
from tradeguard.web.runtime import Runtime

WORKER_STOP_SECONDS = 10.0
OPENAPI_URL = "/openapi.json"
API_DESCRIPTION = (
    "The tradeguard API. Every error is RFC 9457 `application/problem+json` with a stable "
    "`type` URI; 401 answers carry a Bearer challenge and 429 answers a Retry-After header. "
    "Protected operations take an access token as `Authorization: Bearer <token>`."
)

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
    components = ComponentMetrics(metrics.registry)
    docs = settings.enable_api_docs
    app = FastAPI(
        title="tradeguard",
        version=__version__,
        lifespan=_lifespan(
            settings,
            clock=clock,
            ids=ids,
            engine=engine,
            argon2=argon2,
            run_workers=run_workers,
            components=components,
        ),
        # Swagger UI is served from the installed package by docs_router, never from a CDN.
        docs_url=None,
        openapi_url=OPENAPI_URL if docs else None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        generate_unique_id_function=operation_id_from_path,
    )
    app.state.metrics = metrics
    app.state.readiness = health.Readiness(clock=clock, observer=components)
    # The TLS server's connection guard counts into the same registry (web/server.py).
    app.state.connection_metrics = ConnectionMetrics(metrics.registry)
    install_problem_handlers(app)
    install_openapi(app, description=API_DESCRIPTION)
    app.include_router(health.router)
    app.include_router(identity_api.router)
    app.include_router(identity_api.jwks_router)
    app.include_router(webauthn_api.router)
    app.include_router(staff_enrolment_api.router)
    app.include_router(pages.router)
    if docs:
        app.router.routes.extend(docs_routes(title=app.title, openapi_url=OPENAPI_URL))
    app.include_router(trading_api.router)
    app.include_router(trading_admin_api.router)
    app.include_router(trading_stream_api.router)
    app.include_router(backoffice_api.router)
    app.include_router(backoffice_api.me_router)
    app.include_router(access_alerts_api.router)
    app.include_router(access_api.router)
    app.state.session_cache = SessionStateCache(clock)
    # add_middleware wraps: the last added is outermost. The context middleware must be
    # outside the others so that 413/408/503 answers also get security headers and ids; the
    # outage middleware is outside the body guard so a retried request's body is replayed
    # through the guard again; route resolution (405, OPTIONS) is innermost, after the body
    # limits.
    app.add_middleware(RouteResolutionMiddleware)
    app.add_middleware(
        RequestBodyGuardMiddleware,
        max_body_bytes=settings.max_body_bytes,
        read_timeout_seconds=settings.body_read_timeout_seconds,
        clock=clock,
    )
    components.register(outage.COMPONENT)
    app.add_middleware(
        outage.DatabaseOutageMiddleware,
        tracker=FailureTracker(
            outage.COMPONENT,
            logger=outage.logger,
            clock=clock,
            observer=components,
            describe=unavailable_reason,
        ),
    )
    app.add_middleware(
        RequestContextMiddleware,
        clock=clock,
        ids=ids,
        metrics=metrics,
        docs_paths=frozenset({DOCS_URL}) if docs else frozenset(),
    )
    return app


def _webauthn_services(app: FastAPI, settings: Settings, identity: IdentityServices) -> None:
    """Security keys and passkeys, and the staff enrolment that registers attested ones."""
    app.state.webauthn = WebAuthnService(
        identity.deps,
        auth=identity.auth,
        factors=identity.factors,
        allowed_aaguids=settings.webauthn_allowed_aaguids or None,
        staff_models=AuthenticatorMetadataFile(settings.webauthn_staff_metadata_file),
    )
    app.state.staff_enrolment = StaffEnrolmentService(
        identity.deps,
        accounts=identity.accounts,
        auth=identity.auth,
        webauthn=app.state.webauthn,
        token_seconds=settings.staff_enrolment_seconds,
    )


def _lifespan(
    settings: Settings,
    *,
    clock: Clock,
    ids: IdGenerator,
    engine: AsyncEngine | None,
    argon2: Argon2Parameters | None,
    run_workers: bool,
    components: ComponentMetrics,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A route table where a parameter route captures a fixed one refuses to start.
        RouteTable.of_routes(app.routes)
        owned = engine is None
        active_engine = (
            engine
            if engine is not None
            else create_engine(
                settings.main_database_url,
                command_timeout=settings.database_command_timeout_seconds,
            )
        )
        redis = create_redis(settings.redis_url) if settings.redis_url else None
        app.state.runtime = Runtime(
            settings=settings,
            clock=clock,
            ids=ids,
            engine=active_engine,
            sessions=session_factory(active_engine),
            redis=redis,
        )
        app.state.identity = build_identity(
            settings, clock=clock, ids=ids, sessions=app.state.runtime.sessions, argon2=argon2
        )
        identity = app.state.identity
        app.state.session_cache.on_drop = identity.verifier.forget_sessions
        app.state.access_alerts = build_access_alerts(settings, identity=identity)
        app.state.trading = build_trading(
            settings,
            clock=clock,
            ids=ids,
            sessions=app.state.runtime.sessions,
            registry=app.state.metrics.registry,
            street=run_workers and settings.market_simulator,
        )
        app.state.backoffice = build_backoffice(identity, app.state.trading.accounts)
        try:
            await sync_reference(app.state.trading, rebuild=True)
        except Exception as exc:
            # The database may be down at start (requests then answer 503): the trading
            # control watch loads reference data and rebuilds the books once it is back.
            logger.warning(
                "trading reference data not loaded at start (%s); retrying in the background",
                type(exc).__name__,
            )
        app.state.access = build_access(
            settings,
            clock=clock,
            ids=ids,
            ledger=identity.deps.ledger,
            notifier=identity.deps.notifier,
            sessions=app.state.runtime.sessions,
        )
        _webauthn_services(app, settings, identity)
        tasks: list[asyncio.Task[None]] = []
        stop = asyncio.Event()
        if run_workers:
            tasks = _start_workers(
                app,
                settings,
                clock=clock,
                engine=active_engine,
                stop=stop,
                components=components,
            )
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
            if redis is not None:
                await redis.aclose()
            if owned:
                await active_engine.dispose()

    return lifespan


def _start_workers(
    app: FastAPI,
    settings: Settings,
    *,
    clock: Clock,
    engine: AsyncEngine,
    stop: asyncio.Event,
    components: ComponentMetrics,
) -> list[asyncio.Task[None]]:
    """The background workers of a serving process; each stops when `stop` is set."""
    identity: IdentityServices = app.state.identity
    tasks: list[asyncio.Task[None]] = []
    sequencer = LedgerSequencer(
        engine, interval_ms=settings.ledger_sequencer_interval_ms, clock=clock
    )
    senders = notify_senders(settings, clock)
    dispatcher = OutboxDispatcher(
        engine=engine,
        keyring=identity.deps.keyring,  # the key the Notifier sealed messages with
        email_sender=senders.email,
        sms_provider=senders.sms,
        clock=clock,
    )
    trackers = (
        sequencer.failure_tracker(components),
        dispatcher.failure_tracker(components),
        housekeeping_tracker(clock, observer=components),
        expiry_tracker(clock, observer=components),
    )
    for tracker in trackers:
        components.register(tracker.component)
    tasks.append(
        asyncio.create_task(
            sequencer.run_forever(stop, tracker=trackers[0]), name="ledger-sequencer"
        )
    )
    tasks.append(
        asyncio.create_task(
            dispatcher.run_forever(settings.notify_dispatch_interval_ms, stop, tracker=trackers[1]),
            name="notify-dispatcher",
        )
    )
    tasks.append(
        asyncio.create_task(
            run_housekeeping(
                app.state.runtime.sessions,
                clock,
                stop=stop,
                pending_factor_seconds=settings.pending_factor_seconds,
                tracker=trackers[2],
            ),
            name="identity-housekeeping",
        )
    )
    tasks.append(
        asyncio.create_task(
            run_expiry(app.state.access, stop=stop, tracker=trackers[3]),
            name="access-expiry",
        )
    )
    # `tradeguard keys rotate-jwt` writes new key files; this process signs with the
    # new key (and still verifies with the old ones) without a restart.
    key_watcher = SigningKeyWatcher(settings.jwt_keys_dir, identity.keys)
    tasks.append(
        asyncio.create_task(watch_signing_keys(key_watcher, stop=stop), name="signing-key-watcher")
    )
    for component in TRADING_COMPONENTS:
        components.register(component)
    tasks.extend(
        start_trading_tasks(
            app.state.trading, stop, tick_ms=settings.market_tick_ms, observer=components
        )
    )
    if settings.access_alerts_enabled:
        components.register(ACCESS_DETECTOR_COMPONENT)
        tasks.append(
            start_access_detector(
                app.state.access_alerts.detector,
                stop,
                interval_ms=settings.access_alert_scan_interval_ms,
                clock=clock,
                observer=components,
            )
        )
    for task in tasks:
        task.add_done_callback(_report_worker_exit)
    return tasks


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
