"""The vault's own HTTP API, served by `tradeguard vault serve` over mutual TLS only (PCI-3).

The caller's vault role comes from its client certificate, verified by the TLS layer
against the vault's own CA (vault/certs.py, vault/serving.py) and put in the request scope
by the connection; nothing the client sends can change it. A request without that scope
entry (no verified certificate) is refused before it reaches a route. Errors are RFC 9457
problem+json and never carry request input: a card number sent to the wrong field is not
echoed back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tradeguard.core.errors import Forbidden, InvalidInput, NotFound, TradeguardError
from tradeguard.crypto.tasks import VAULT_COMPONENT, KeyringWorker
from tradeguard.vault.domain import VaultAccessDenied, VaultOperation, VaultRole
from tradeguard.vault.metrics import VaultMetrics
from tradeguard.vault.schemas import (
    AuthorizationIn,
    AuthorizationOut,
    DescribedOut,
    DescribeIn,
    ForgottenOut,
    RevealedOut,
    TokenIn,
    TokenizedOut,
    TokenizeIn,
)
from tradeguard.vault.store import CardVaultStore, VaultCaller

# The request scope key where the serving connection puts the verified client's role.
log = logging.getLogger(__name__)

CLIENT_ROLE_SCOPE: Final = "tradeguard.vault.client_role"
PROBLEM_JSON: Final = "application/problem+json"


class ClientCertificateRequired(Forbidden):
    slug = "vault-client-certificate-required"
    title = "The vault answers only clients with a vault client certificate"


def problem_response(error: TradeguardError, instance: str | None = None) -> JSONResponse:
    if error.operator_detail:
        # The body has the title only (no key names, versions or classes): the detail is
        # for the vault's log.
        log.error("problem detail withheld from the client: %s: %s", error.slug, error.detail)
    return JSONResponse(
        error.to_problem(instance=instance),
        status_code=error.status,
        media_type=PROBLEM_JSON,
        headers=error.headers(),
    )


def _role(request: Request) -> VaultRole:
    role = request.scope.get(CLIENT_ROLE_SCOPE)
    if not isinstance(role, VaultRole):
        raise ClientCertificateRequired
    return role


async def _on_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TradeguardError)  # noqa: S101 - registered for this type only
    return problem_response(exc, request.url.path)


# The names a location may repeat: the request's parts and the fields of the vault's own
# request models. Anything else in a location is a key the client made up (an unknown
# field), which could be a card number sent as a JSON key: never repeated.
_KNOWN_PARTS: Final = frozenset(
    {"body", "query", "path", "header"}
    | {
        name
        for model in (TokenizeIn, DescribeIn, TokenIn, AuthorizationIn)
        for name in model.model_fields
    }
)
UNKNOWN_FIELD: Final = "(unknown field)"


def _location_part(part: object) -> str:
    if isinstance(part, int) or (isinstance(part, str) and part in _KNOWN_PARTS):
        return str(part)
    return UNKNOWN_FIELD


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for this type only
    # Where and what only: pydantic's `input` and `ctx` would echo what was sent, and a
    # location only names what the vault's models name.
    fields = [
        {
            "location": [_location_part(p) for p in e.get("loc", ())],
            "message": str(e.get("msg", "")),
        }
        for e in exc.errors()
    ]
    return problem_response(InvalidInput(errors=fields), request.url.path)


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for this type only
    error: TradeguardError = NotFound() if exc.status_code == 404 else InvalidInput()
    return problem_response(error, request.url.path)


def outcome_of(error: BaseException | None) -> str:
    """The metrics outcome of an operation that ended with `error` (None: it was done)."""
    if error is None:
        return "allowed"
    if isinstance(error, VaultAccessDenied):
        return "denied"
    if isinstance(error, NotFound):
        return "not_found"
    if isinstance(error, InvalidInput):
        return "invalid"
    return "error"


@contextlib.contextmanager
def _measured(
    metrics: VaultMetrics | None, request: Request, operation: VaultOperation
) -> Iterator[None]:
    # Counted by operation, role and outcome only: never the token, the card or the party.
    started = time.perf_counter()
    error: BaseException | None = None
    try:
        yield
    except BaseException as exc:
        error = exc
        raise
    finally:
        if metrics is not None:
            metrics.operation(
                operation, _role(request), outcome_of(error), time.perf_counter() - started
            )


def _observe_decryption(store: CardVaultStore, metrics: VaultMetrics | None) -> None:
    if metrics is not None:
        store.keyring.on_decryption_failed = metrics.decryption_failed


def create_vault_app(store: CardVaultStore, metrics: VaultMetrics | None = None) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await store.start()
        # The vault's keys while it serves: re-read every few seconds (a rotation or a
        # retirement by a `tradeguard vault` command is seen before it matters) and rotated
        # when the cryptoperiod ends (PCI-4).
        stop = asyncio.Event()
        worker = KeyringWorker(store.keys, store.sessions, component=VAULT_COMPONENT)
        keys = asyncio.create_task(worker.run_forever(stop), name="vault-keyring")
        try:
            yield
        finally:
            stop.set()
            await keys
            await store.close()

    app = FastAPI(
        lifespan=lifespan,
        title="tradeguard vault",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.state.store = store
    _observe_decryption(store, metrics)

    app.add_exception_handler(TradeguardError, _on_error)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)

    @app.middleware("http")
    async def require_certificate(request: Request, call_next: Any) -> Any:
        # Before routing: a client without a verified certificate learns nothing, not even
        # which paths exist.
        if not isinstance(request.scope.get(CLIENT_ROLE_SCOPE), VaultRole):
            return problem_response(ClientCertificateRequired(), request.url.path)
        return await call_next(request)

    def caller(request: Request, on_behalf_of: str, request_id: str | None) -> VaultCaller:
        return VaultCaller(_role(request), on_behalf_of, request_id)

    def measured(request: Request, operation: VaultOperation) -> AbstractContextManager[None]:
        return _measured(metrics, request, operation)

    @app.get("/v1/health")
    async def health(request: Request) -> dict[str, str]:
        return {"status": "ok", "role": _role(request).value}

    @app.post("/v1/tokenize", status_code=201)
    async def tokenize(request: Request, body: TokenizeIn) -> TokenizedOut:
        with measured(request, VaultOperation.TOKENIZE):
            card = await store.tokenize(
                caller(request, body.on_behalf_of, body.request_id),
                pan=body.pan,
                expiry_month=body.expiry_month,
                expiry_year=body.expiry_year,
                token_format=body.token_format,
            )
        return TokenizedOut.of(card)

    @app.post("/v1/describe")
    async def describe(request: Request, body: DescribeIn) -> DescribedOut:
        with measured(request, VaultOperation.DESCRIBE):
            cards = await store.describe(
                caller(request, body.on_behalf_of, body.request_id), body.tokens
            )
        return DescribedOut(cards=[TokenizedOut.of(card) for card in cards])

    @app.post("/v1/detokenize")
    async def detokenize(request: Request, body: TokenIn) -> RevealedOut:
        with measured(request, VaultOperation.DETOKENIZE):
            card = await store.detokenize(
                caller(request, body.on_behalf_of, body.request_id), body.token
            )
        return RevealedOut.of(card)

    @app.post("/v1/authorization-card")
    async def authorization_card(request: Request, body: AuthorizationIn) -> AuthorizationOut:
        with measured(request, VaultOperation.AUTHORIZE):
            prepared = await store.authorization_card(
                caller(request, body.on_behalf_of, body.request_id), body.token, body.cvv
            )
        revealed = prepared.card
        return AuthorizationOut(
            token=revealed.token,
            pan=revealed.pan,
            brand=revealed.brand,
            expiry_month=revealed.expiry.month,
            expiry_year=revealed.expiry.year,
            cvv=prepared.secret.value,
        )

    @app.post("/v1/forget")
    async def forget(request: Request, body: TokenIn) -> ForgottenOut:
        with measured(request, VaultOperation.FORGET):
            forgotten = await store.forget(
                caller(request, body.on_behalf_of, body.request_id), body.token
            )
        return ForgottenOut(forgotten=forgotten)

    return app
