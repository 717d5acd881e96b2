"""The ASGI application factory."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.routing import iter_route_contexts
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.routing import BaseRoute

from tradeguard import __version__
from tradeguard.access import alerts_api as access_alerts_api
from tradeguard.access import api as access_api
from tradeguard.access.alerts_container import build_access_alerts
from tradeguard.access.alerts_tasks import COMPONENT as ACCESS_DETECTOR_COMPONENT
from tradeguard.access.alerts_tasks import start_detector as start_access_detector
from tradeguard.access.container import build_access
from tradeguard.access.tasks import expiry_tracker, run_expiry
from tradeguard.aml import api as aml_api
from tradeguard.aml.container import build_aml
from tradeguard.aml.tasks import COMPONENTS as AML_COMPONENTS
from tradeguard.aml.tasks import start_tasks as start_aml_tasks
from tradeguard.apikeys import api as apikeys_api
from tradeguard.apikeys.container import build_apikeys
from tradeguard.apikeys.tasks import reminder_loop as apikeys_reminder_loop
from tradeguard.audit import search_api as audit_search_api
from tradeguard.audit import tree_api as audit_tree_api
from tradeguard.backoffice import api as backoffice_api
from tradeguard.backoffice.container import build_backoffice, install_staff_access_log
from tradeguard.config import Settings
from tradeguard.core.clock import Clock, SystemClock
from tradeguard.core.ids import IdGenerator
from tradeguard.core.workers import FailureTracker
from tradeguard.crypto.keyring import KeyringNotLoaded
from tradeguard.crypto.tasks import VAULT_COMPONENT, KeyringWorker, open_keyring
from tradeguard.db.availability import unavailable_reason
from tradeguard.db.engine import create_engine, session_factory
from tradeguard.db.redis import create_redis
from tradeguard.fraud import api as fraud_api
from tradeguard.fraud import recovery_api
from tradeguard.fraud.container import build_fraud, watch_sign_ins
from tradeguard.fraud.tasks import COMPONENT as TAKEOVER_COMPONENT
from tradeguard.fraud.tasks import start_sweep as start_takeover_sweep
from tradeguard.funds import api as funds_api
from tradeguard.funds.bank_accounts import PayeeSubjects
from tradeguard.funds.container import build_funds
from tradeguard.funds.tasks import COMPONENTS as FUNDS_COMPONENTS
from tradeguard.funds.tasks import start_tasks as start_funds_tasks
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
from tradeguard.kyc.container import build_kyc
from tradeguard.kyc.contracts import SubjectKind
from tradeguard.kyc.documents import api as kyc_documents_api
from tradeguard.kyc.documents.upload import ENVELOPE_BYTES as UPLOAD_ENVELOPE_BYTES
from tradeguard.kyc.onboarding import api as onboarding_api
from tradeguard.kyc.sanctions import api as sanctions_api
from tradeguard.ledger.sequencer import LedgerSequencer
from tradeguard.ledger.tree.service import LedgerTree
from tradeguard.ledger.tree.tasks import Checkpointer
from tradeguard.ledger.tree.witness import witness_from_setting
from tradeguard.notify.senders import Senders, senders_from_settings
from tradeguard.notify.tasks import OutboxDispatcher
from tradeguard.surveillance import api as surveillance_api
from tradeguard.surveillance.container import build_surveillance
from tradeguard.surveillance.tasks import COMPONENT as SURVEILLANCE_COMPONENT
from tradeguard.surveillance.tasks import LINKS_COMPONENT as OWNER_LINKS_COMPONENT
from tradeguard.surveillance.tasks import VERIFY_COMPONENT as SURVEILLANCE_VERIFY_COMPONENT
from tradeguard.surveillance.tasks import start_link_derivation
from tradeguard.surveillance.tasks import start_stream as start_surveillance_stream
from tradeguard.surveillance.tasks import start_verification as start_surveillance_verification
from tradeguard.trading import admin_api as trading_admin_api
from tradeguard.trading import api as trading_api
from tradeguard.trading import stream_api as trading_stream_api
from tradeguard.trading.container import build_trading
from tradeguard.trading.tasks import COMPONENTS as TRADING_COMPONENTS
from tradeguard.trading.tasks import start_tasks as start_trading_tasks
from tradeguard.trading.tasks import sync_reference
from tradeguard.vault import api as vault_api
from tradeguard.vault.container import build_vault
from tradeguard.web import health, outage, pages
from tradeguard.web.docs import DOCS_URL, docs_routes
from tradeguard.web.metrics import (
    ComponentMetrics,
    ConnectionMetrics,
    HttpMetrics,
    SecurityMetrics,
)
from tradeguard.web.middleware import RequestBodyGuardMiddleware, RequestContextMiddleware
from tradeguard.web.openapi import install_openapi, operation_id_from_path
from tradeguard.web.problems import install_problem_handlers, problem_response
from tradeguard.web.query_parameters import strict_query
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


async def _keys_not_read(request: Request, exc: Exception) -> Response:
    """The keyring was never read (the database was down when the process started): passed
    on to the outage middleware, which reads it now and runs the request again, or answers
    503 with Retry-After while the database is still down. Its subclasses (a pepper that is
    nowhere to be had once the keys are read) are answered as problems, as before."""
    assert isinstance(exc, KeyringNotLoaded)  # noqa: S101 - registered for this type only
    if type(exc) is KeyringNotLoaded:
        raise exc
    return problem_response(exc, instance=request.url.path)


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    engine: AsyncEngine | None = None,
    argon2: Argon2Parameters | None = None,
    run_workers: bool = True,
    vault_engine: AsyncEngine | None = None,
) -> FastAPI:
    """Build the API app. Its lifespan opens the database (unless `engine` is given, which
    the caller then owns; likewise the in-process vault's `vault_engine`) and runs the
    audit-ledger sequencer in the background."""
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
            vault_engine=vault_engine,
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
    # Security signals for the alert rules (deploy/prometheus/tradeguard-alerts.yml),
    # connected to the services where the events happen when the lifespan builds them.
    app.state.security_metrics = SecurityMetrics(metrics.registry)
    install_problem_handlers(app)
    app.add_exception_handler(KeyringNotLoaded, _keys_not_read)
    install_openapi(app, description=API_DESCRIPTION)
    front, back = _platform_routes()
    app.router.routes.extend(front)
    if docs:
        app.router.routes.extend(docs_routes(title=app.title, openapi_url=OPENAPI_URL))
    app.router.routes.extend(back)
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
        # Identity documents are larger than any other body; the upload route counts the
        # file itself against its own limit as it streams in (kyc/documents/upload.py).
        path_limits={
            kyc_documents_api.PREFIX: max(
                settings.max_body_bytes, settings.kyc_document_max_bytes + UPLOAD_ENVELOPE_BYTES
            )
        },
    )
    components.register(outage.COMPONENT)

    async def read_keys_now(error: BaseException) -> bool:  # see _keys_not_read
        # The keyring could not be read at start (database down): a request that needs it
        # reads it now, so it is answered as the database allows (503 while it is down).
        identity = getattr(app.state, "identity", None)
        if not isinstance(error, KeyringNotLoaded) or identity is None:
            return False
        if identity.deps.keyring.loaded:
            return False  # loaded, yet unusable (a pepper nowhere to be had): the error stands
        await open_keyring(identity.key_management, app.state.runtime.sessions)
        return True

    app.add_middleware(
        outage.DatabaseOutageMiddleware,
        tracker=FailureTracker(
            outage.COMPONENT,
            logger=outage.logger,
            clock=clock,
            observer=components,
            describe=unavailable_reason,
        ),
        recover=read_keys_now,
    )
    app.add_middleware(
        RequestContextMiddleware,
        clock=clock,
        ids=ids,
        metrics=metrics,
        docs_paths=frozenset({DOCS_URL}) if docs else frozenset(),
    )
    return app


@functools.cache
def _platform_routes() -> tuple[tuple[BaseRoute, ...], tuple[BaseRoute, ...]]:
    """The API's routes, before and after the docs pages, built once per process.

    FastAPI resolves an included router's routes (their dependencies, parameters and
    response models) the first time an app uses them: about 0.3 s of CPU for these 150
    routes. The resolved routes hold nothing of any one app (services are read from the
    request's app at call time), so every app of the process shares them: the server builds
    one app, but the test suite builds one per test.
    """
    front = APIRouter(generate_unique_id_function=operation_id_from_path)
    # Health probes take no input and are not held to it: a load balancer may add a
    # cache-busting parameter.
    front.include_router(health.router)
    # The router tries routes in the order they were added, each a pattern match (about 4 µs
    # apiece): the trading API, whose order placement is the hot path, goes right after the
    # health probes instead of behind some sixty identity and console routes. The order
    # changes nothing else: a route table in which an earlier route would capture a later
    # one is refused at start-up (web/routing.py).
    front.include_router(strict_query(trading_api.router))
    front.include_router(strict_query(identity_api.router))
    front.include_router(strict_query(identity_api.jwks_router))
    front.include_router(strict_query(webauthn_api.router))
    front.include_router(strict_query(staff_enrolment_api.router))
    # The emailed links' pages are opened from mail clients, which may add tracking
    # parameters: they read only the token and must still open.
    front.include_router(pages.router)
    # The "was this you?" answer: its emailed token is its only authority (no sign-in).
    front.include_router(strict_query(fraud_api.public_router))
    back = APIRouter(generate_unique_id_function=operation_id_from_path)
    back.include_router(strict_query(trading_admin_api.router))
    back.include_router(strict_query(trading_stream_api.router))
    back.include_router(strict_query(backoffice_api.router))
    back.include_router(strict_query(backoffice_api.me_router))
    back.include_router(strict_query(access_alerts_api.router))
    back.include_router(strict_query(access_api.router))
    back.include_router(strict_query(audit_tree_api.router))
    back.include_router(strict_query(audit_search_api.router))
    back.include_router(strict_query(surveillance_api.router))
    back.include_router(strict_query(fraud_api.staff_router))
    back.include_router(strict_query(recovery_api.router))
    back.include_router(strict_query(vault_api.router))
    back.include_router(strict_query(funds_api.router))
    back.include_router(strict_query(funds_api.staff_router))
    back.include_router(strict_query(kyc_documents_api.router))
    back.include_router(strict_query(kyc_documents_api.staff_router))
    back.include_router(strict_query(apikeys_api.router))
    back.include_router(strict_query(apikeys_api.staff_router))
    back.include_router(strict_query(onboarding_api.router))
    back.include_router(strict_query(onboarding_api.staff_router))
    back.include_router(strict_query(sanctions_api.router))
    back.include_router(strict_query(aml_api.router))
    for router in (front, back):
        # Resolved here, once: later apps find them resolved.
        for _context in iter_route_contexts(router.routes):
            pass
    return tuple(front.routes), tuple(back.routes)


def _start_funds(app: FastAPI, settings: Settings, identity: IdentityServices) -> None:
    """Money movement: funds screens a new bank account's holder as a payee through the
    sanctions Screener (KYC-2), and every payee is re-screened on a new list version."""
    app.state.funds = build_funds(
        settings,
        identity=identity,
        accounts=app.state.trading.accounts,
        sessions=app.state.runtime.sessions,
    )
    app.state.funds.deps.screener = app.state.sanctions.service
    app.state.sanctions.service.register_source(
        SubjectKind.PAYEE, PayeeSubjects(app.state.funds.banks)
    )


async def _close_services(app: FastAPI) -> None:
    """Stop sanctions re-screenings still running (one cut short is marked failed by its
    own handler and is re-run by hand), then close the vault's connections."""
    for job in list(app.state.sanctions.jobs):
        job.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await job
    await app.state.vault.close()


async def _start_fraud(app: FastAPI, settings: Settings, identity: IdentityServices) -> None:
    """The account-takeover defence (ATO-1, ATO-2): every sign-in is assessed in its own
    transaction; sessions it ends leave this process's session cache at once."""
    fraud = build_fraud(
        settings,
        identity=identity,
        trading=app.state.trading,
        applicants=app.state.onboarding.applicants,
        evidence=app.state.kyc_documents.evidence,
    )
    fraud.defence.on_sessions_ended = lambda ended: app.state.session_cache.drop(*ended)
    fraud.recovery.on_sessions_ended = lambda ended: app.state.session_cache.drop(*ended)
    app.state.fraud = fraud
    if settings.takeover_enabled:
        watch_sign_ins(identity, fraud)
        await fraud.warm()


def _start_customer_records(app: FastAPI, settings: Settings, identity: IdentityServices) -> None:
    """The back office, and KYC (KYC-1/KYC-2): onboarding, with kyc_required accounts wait
    PENDING for an approved application, and identity documents, wired to each other
    (kyc/container.py)."""
    app.state.backoffice = build_backoffice(identity, app.state.trading.accounts)
    kyc = build_kyc(
        settings,
        identity=identity,
        accounts=app.state.trading.accounts,
        sessions=app.state.runtime.sessions,
    )
    app.state.kyc = kyc
    app.state.onboarding = kyc.onboarding
    app.state.kyc_documents = kyc.documents
    app.state.sanctions = kyc.sanctions


async def _start_vault(
    app: FastAPI,
    settings: Settings,
    *,
    clock: Clock,
    ids: IdGenerator,
    vault_engine: AsyncEngine | None,
) -> None:
    """The card vault (PCI-2): in process on its own database, or a client of the vault
    server over mutual TLS (PCI-3). Built last, once the security metrics can observe it."""
    identity: IdentityServices = app.state.identity
    app.state.vault = build_vault(
        settings,
        clock=clock,
        ids=ids,
        ledger=identity.deps.ledger,
        sessions=app.state.runtime.sessions,
        vault_engine=vault_engine,
    )
    _observe_security_signals(app)
    try:
        await app.state.vault.start()
    except Exception as exc:
        logger.warning(
            "card vault not ready at start (%s); card routes answer 503 until it is",
            type(exc).__name__,
        )


def _observe_security_signals(app: FastAPI) -> None:
    """Connect the security metrics to where the events happen: every ledger of this
    process, the field keyrings (the platform's and the in-process vault's) and the
    access-token verifier."""
    security: SecurityMetrics = app.state.security_metrics
    identity: IdentityServices = app.state.identity
    identity.deps.ledger.on_appended = security.ledger_event
    app.state.trading.deps.ledger.on_appended = security.ledger_event
    identity.deps.keyring.on_decryption_failed = security.decryption_failed
    identity.verifier.on_refused = security.token_refused
    if app.state.vault.store is not None:
        app.state.vault.store.keyring.on_decryption_failed = security.decryption_failed


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


async def _start_monitoring(app: FastAPI, settings: Settings, identity: IdentityServices) -> None:
    """The fraud package's takeover defence and the AML monitor (AML-1..3), which reads
    customers' risk profiles and, for filings, their identity from onboarding
    (kyc/contracts.py)."""
    await _start_fraud(app, settings, identity)
    app.state.aml = build_aml(
        settings,
        identity=identity,
        accounts=app.state.trading.accounts,
        withdrawals=app.state.funds.withdrawals,
        sessions=app.state.runtime.sessions,
        profiles=app.state.onboarding.profiles,
        subjects=app.state.onboarding.filings,
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
    vault_engine: AsyncEngine | None = None,
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
        try:
            await open_keyring(identity.key_management, app.state.runtime.sessions)
        except Exception as exc:
            # As for reference data below: with the database down at start, requests that
            # encrypt answer 503 until the keyring worker has read the keys.
            logger.warning(
                "keyring not loaded at start (%s); retrying in the background",
                type(exc).__name__,
            )
        _install_guard_hooks(app, settings, identity, redis)
        app.state.access_alerts = build_access_alerts(settings, identity=identity)
        app.state.trading = build_trading(
            settings,
            clock=clock,
            ids=ids,
            sessions=app.state.runtime.sessions,
            registry=app.state.metrics.registry,
            street=run_workers and settings.market_simulator,
        )
        _start_customer_records(app, settings, identity)
        _start_funds(app, settings, identity)
        app.state.surveillance = build_surveillance(
            settings,
            clock=clock,
            ids=ids,
            sessions=app.state.runtime.sessions,
            ledger=app.state.trading.deps.ledger,
            accounts=app.state.trading.accounts,
            orders=app.state.trading.orders,
            staff=identity.accounts,
            contacts=identity.accounts,
            mail=identity.deps.notifier,
            registry=app.state.metrics.registry,
            sign_ins=identity.sign_ins,
            bank_accounts=app.state.funds.banks,
        )
        # AML monitoring (AML-1..3): the KYC profiles and filing subjects are wired by the
        # KYC package when it provides them (kyc/contracts.py); until then firm defaults.
        # Orders an automatic surveillance action cancelled leave the venue's books too.
        app.state.surveillance.consumer.on_cancelled = app.state.trading.desk.after_cancel
        install_staff_access_log(app.state.trading, app.state.backoffice)
        await _start_monitoring(app, settings, identity)
        app.state.ledger_tree = LedgerTree.from_settings(settings, active_engine, clock=clock)
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
        await _start_vault(app, settings, clock=clock, ids=ids, vault_engine=vault_engine)
        # Card deposits charge stored cards through the vault's payment service; withdrawals
        # ask the takeover defence (ATO-1/ATO-2).
        app.state.funds.deps.cards = app.state.vault.cards
        app.state.funds.deps.takeover = app.state.fraud.defence
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
            await _close_services(app)
            if redis is not None:
                await redis.aclose()
            if owned:
                await active_engine.dispose()

    return lifespan


def _install_guard_hooks(
    app: FastAPI, settings: Settings, identity: IdentityServices, redis: Redis | None
) -> None:
    """What the route guard calls back, never imports."""
    app.state.session_cache.on_drop = identity.verifier.forget_sessions
    # Signed API-key requests (issue #14): the route guard calls them through its
    # KeyAuthenticator protocol; nonces are shared through Redis when it is configured.
    app.state.apikeys = build_apikeys(settings, identity=identity, redis=redis)
    app.state.api_key_authenticator = app.state.apikeys.keys


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
    # API key expiry reminders (7 days and 1 day before, once each).
    tasks.append(
        asyncio.create_task(
            apikeys_reminder_loop(app.state.apikeys, stop), name="apikeys-reminders"
        )
    )
    # Field-encryption keys: re-read every few seconds (a rotation by `tradeguard keys
    # rotate` in another process is seen before it activates), rotated when due.
    keyring_worker = KeyringWorker(identity.key_management, app.state.runtime.sessions)
    keyring_tracker = keyring_worker.failure_tracker(components)
    components.register(keyring_tracker.component)
    tasks.append(
        asyncio.create_task(
            keyring_worker.run_forever(stop, tracker=keyring_tracker), name="keyring"
        )
    )
    if app.state.vault.store is not None:
        # The in-process card vault's keys, the same way on its own database: re-read (a
        # `tradeguard vault rotate-key` or `retire` is seen), rotated when due (PCI-4).
        vault_store = app.state.vault.store
        vault_keys = KeyringWorker(
            vault_store.keys, vault_store.sessions, component=VAULT_COMPONENT
        )
        vault_keys_tracker = vault_keys.failure_tracker(components)
        components.register(vault_keys_tracker.component)
        tasks.append(
            asyncio.create_task(
                vault_keys.run_forever(stop, tracker=vault_keys_tracker), name="vault-keyring"
            )
        )
    # Signed tree heads of the audit ledger, published to the witness (docs/audit.md).
    checkpointer = Checkpointer(
        app.state.ledger_tree,
        every_events=settings.ledger_checkpoint_every_events,
        interval_ms=settings.ledger_checkpoint_interval_ms,
        witness=witness_from_setting(
            settings.ledger_witness, timeout_seconds=settings.ledger_witness_timeout_seconds
        ),
    )
    checkpoint_tracker = checkpointer.failure_tracker(components)
    components.register(checkpoint_tracker.component)
    tasks.append(
        asyncio.create_task(
            checkpointer.run_forever(stop, tracker=checkpoint_tracker), name="ledger-checkpointer"
        )
    )
    for component in TRADING_COMPONENTS:
        components.register(component)
    tasks.extend(
        start_trading_tasks(
            app.state.trading, stop, tick_ms=settings.market_tick_ms, observer=components
        )
    )
    for component in FUNDS_COMPONENTS:
        components.register(component)
    tasks.extend(start_funds_tasks(app.state.funds, stop, clock=clock, observer=components))
    tasks.extend(_monitoring_workers(app, settings, clock=clock, stop=stop, components=components))
    for task in tasks:
        task.add_done_callback(_report_worker_exit)
    return tasks


def _monitoring_workers(
    app: FastAPI,
    settings: Settings,
    *,
    clock: Clock,
    stop: asyncio.Event,
    components: ComponentMetrics,
) -> list[asyncio.Task[None]]:
    """The detectors: AML monitoring, staff access alerts, market surveillance and its
    checks, the takeover sweep; each as its settings switch it on."""
    tasks: list[asyncio.Task[None]] = []
    if settings.aml_enabled:
        # AML monitoring tails the ledger behind its checkpoint; SAR deadline reminders.
        for component in AML_COMPONENTS:
            components.register(component)
        tasks.extend(
            start_aml_tasks(
                app.state.aml,
                stop,
                interval_ms=settings.aml_interval_ms,
                clock=clock,
                observer=components,
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
    if settings.surveillance_enabled:
        # Market surveillance (MAN-1, MAN-2) tails the ledger behind its checkpoint.
        components.register(SURVEILLANCE_COMPONENT)
        tasks.append(
            start_surveillance_stream(
                app.state.surveillance.consumer,
                stop,
                interval_ms=settings.surveillance_interval_ms,
                clock=clock,
                observer=components,
            )
        )
        if settings.surveillance_verify_interval_seconds:
            # The surveillance tables checked against the ledger (docs/surveillance.md).
            components.register(SURVEILLANCE_VERIFY_COMPONENT)
            tasks.append(
                start_surveillance_verification(
                    app.state.surveillance,
                    stop,
                    interval_seconds=settings.surveillance_verify_interval_seconds,
                    clock=clock,
                    observer=components,
                )
            )
        deriver = app.state.surveillance.deriver
        if settings.surveillance_links_enabled and deriver is not None:
            # Beneficial-owner links from shared devices and networks (docs/surveillance.md).
            components.register(OWNER_LINKS_COMPONENT)
            tasks.append(
                start_link_derivation(
                    deriver,
                    stop,
                    interval_seconds=settings.surveillance_links_interval_seconds,
                    clock=clock,
                    observer=components,
                )
            )
    if settings.takeover_enabled:
        # Unusual trading after a risky sign-in (ATO-1), every sweep interval.
        components.register(TAKEOVER_COMPONENT)
        tasks.append(start_takeover_sweep(app.state.fraud, stop, clock=clock, observer=components))
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
