"""The app factory: problem+json errors, health and metrics endpoints, lifespan, route policy."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.unit.web.conftest import serving, settings_with
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.core.errors import PROBLEM_BASE, Conflict
from tradeguard.db.engine import create_engine
from tradeguard.db.migrate import upgrade
from tradeguard.web.app import create_app
from tradeguard.web.problems import PROBLEM_CONTENT_TYPE, _malformed_json
from tradeguard.web.route_policy import PERMISSION_EXTENSION, PUBLIC, route_permissions
from tradeguard.web.runtime import Runtime


class LoginAttempt(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str
    password: str = Field(min_length=12)
    pin: int


def add_test_routes(app: FastAPI) -> None:
    @app.post("/login")
    async def login(attempt: LoginAttempt) -> dict[str, str]:
        return {"user": attempt.username}

    @app.post("/orders/{order_id}")
    async def conflicting(order_id: int) -> None:
        raise Conflict("The order was already cancelled", order_id=order_id)

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        return {"item": item_id}


@pytest.fixture
def app(settings: Settings, clock: FrozenClock, sqlite_engine: AsyncEngine) -> FastAPI:
    application = create_app(settings, clock=clock, engine=sqlite_engine)
    add_test_routes(application)
    return application


class TestProblemDetails:
    async def test_unknown_route_is_a_404_problem(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/no/such/route?token=abc")
        assert response.status_code == 404
        assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
        body = response.json()
        assert body["type"] == PROBLEM_BASE + "not-found"
        assert body["status"] == 404
        assert body["title"]
        assert body["instance"] == "/no/such/route"

    async def test_wrong_method_is_a_405_problem_with_allow(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.delete("/health/live")
        assert response.status_code == 405
        assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
        assert response.json()["type"] == PROBLEM_BASE + "method-not-allowed"
        assert "GET" in response.headers["allow"]

    async def test_tradeguard_error_keeps_its_type_detail_and_extensions(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.post("/orders/7")
        assert response.status_code == 409
        assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
        body = response.json()
        assert body["type"] == PROBLEM_BASE + "conflict"
        assert body["detail"] == "The order was already cancelled"
        assert body["order_id"] == 7
        assert body["instance"] == "/orders/7"

    async def test_validation_errors_say_where_but_never_echo_the_input(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.post(
            "/login",
            json={
                "username": "alice",
                "password": "hunter2",
                "pin": "4111 1111 1111 1111",
                "card_number": "5500-0000-0000-0004",
            },
        )
        assert response.status_code == 422
        assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
        body = response.json()
        assert body["type"] == PROBLEM_BASE + "invalid-input"
        locations = {tuple(error["loc"]) for error in body["errors"]}
        assert ("body", "password") in locations
        assert ("body", "pin") in locations
        assert all(set(error) == {"loc", "msg"} for error in body["errors"])
        for secret in ("hunter2", "4111", "5500-0000"):
            assert secret not in response.text

    async def test_malformed_json_does_not_echo_the_document(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.post(
            "/login",
            content=b'{"username": "alice",\n "password": "correct-horse-battery',
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 400
        assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
        body = response.json()
        assert body["type"] == PROBLEM_BASE + "malformed-json"
        assert (body["line"], body["column"]) == (2, 14)
        assert "Unterminated string starting at (line 2, column 14)" in body["detail"]
        assert "correct-horse" not in response.text
        assert "alice" not in response.text

    async def test_a_body_sent_without_the_json_content_type_is_415(
        self, client: httpx.AsyncClient
    ) -> None:
        document = b'{"username": "alice", "password": "correct-horse-battery", "pin": 1}'
        untyped = await client.post("/login", content=document)
        as_text = await client.post(
            "/login", content=document, headers={"content-type": "text/plain"}
        )
        as_json = await client.post(
            "/login", content=document, headers={"content-type": "application/json"}
        )
        for response in (untyped, as_text):
            assert response.status_code == 415
            assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
            assert response.json()["type"] == PROBLEM_BASE + "unsupported-media-type"
            assert "Content-Type: application/json" in response.json()["detail"]
            assert "correct-horse" not in response.text
        assert as_json.status_code == 200

    async def test_a_body_that_is_not_utf8_is_malformed_json(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.post(
            "/login",
            content=b'{"username": "\xff\xfe"}',
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 400
        assert response.json()["type"] == PROBLEM_BASE + "malformed-json"

    async def test_a_parser_message_outside_the_known_set_is_not_passed_on(self) -> None:
        error = RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", 3),
                    "msg": "JSON decode error",
                    "ctx": {"error": "unexpected 'hunter2'"},
                }
            ],
            body="ab\ncd",
        )
        malformed = _malformed_json(error)
        assert malformed is not None
        assert "hunter2" not in malformed.detail
        assert malformed.extensions == {"line": 2, "column": 1}


class TestHealth:
    @pytest.mark.spec("IR-1")
    async def test_live_is_ok(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/health/live")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}
        assert response.headers["content-type"] == "application/json"

    @pytest.mark.spec("IR-1")
    async def test_ready_when_the_database_answers(
        self, settings: Settings, clock: FrozenClock, engine: AsyncEngine
    ) -> None:
        async with serving(create_app(settings, clock=clock, engine=engine)) as client:
            response = await client.get("/health/ready")
        assert response.status_code == 200
        assert response.json() == {"status": "ready", "checks": {"database": "ok"}}

    @pytest.mark.spec("IR-1")
    async def test_not_ready_is_a_503_problem_without_database_details(
        self, settings: Settings, clock: FrozenClock, tmp_path: Path
    ) -> None:
        # A directory is not a database file: every connection attempt fails.
        broken = create_engine(f"sqlite:///{tmp_path}")
        try:
            async with serving(create_app(settings, clock=clock, engine=broken)) as client:
                response = await client.get("/health/ready")
        finally:
            await broken.dispose()
        assert response.status_code == 503
        assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
        assert response.json()["type"] == PROBLEM_BASE + "service-unavailable"
        assert response.json()["checks"] == {"database": "unavailable"}
        assert str(tmp_path) not in response.text
        assert "sqlite" not in response.text.lower()


class TestMetrics:
    @pytest.mark.spec("IR-1")
    async def test_requests_are_counted_by_route_template_not_raw_path(
        self, client: httpx.AsyncClient
    ) -> None:
        await client.get("/items/acct-9981")
        await client.get("/items/acct-1234")
        await client.get("/unknown/secret-path-5555")
        response = await client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        text = response.text
        assert (
            'tradeguard_http_requests_total{method="GET",route="/items/{item_id}",status="200"} 2.0'
            in text
        )
        assert 'route="<unmatched>",status="404"' in text
        assert "tradeguard_http_request_duration_seconds_bucket" in text
        for raw in ("acct-9981", "acct-1234", "secret-path-5555"):
            assert raw not in text

    @pytest.mark.spec("IR-1")
    async def test_each_app_has_its_own_registry(
        self, settings: Settings, clock: FrozenClock, sqlite_engine: AsyncEngine
    ) -> None:
        first = create_app(settings, clock=clock, engine=sqlite_engine)
        second = create_app(settings, clock=clock, engine=sqlite_engine)
        async with serving(first) as client:
            await client.get("/health/live")
        async with serving(second) as client:
            text = (await client.get("/metrics")).text
        assert 'route="/health/live"' not in text


class TestApiDocs:
    async def test_docs_and_schema_are_absent_when_disabled(
        self, settings: Settings, clock: FrozenClock, sqlite_engine: AsyncEngine
    ) -> None:
        app = create_app(
            settings_with(settings, enable_api_docs=False), clock=clock, engine=sqlite_engine
        )
        async with serving(app) as client:
            docs = await client.get("/docs")
            schema = await client.get("/openapi.json")
        assert docs.status_code == 404
        assert schema.status_code == 404

    @pytest.mark.spec("RBAC-4")
    async def test_schema_shows_the_public_declaration(self, client: httpx.AsyncClient) -> None:
        schema = (await client.get("/openapi.json")).json()
        assert schema["paths"]["/health/live"]["get"]["x-permission"] == PUBLIC


class TestRoutePolicy:
    @pytest.mark.spec("RBAC-4")
    def test_platform_routes_declare_that_they_are_public(
        self, settings: Settings, clock: FrozenClock
    ) -> None:
        app = create_app(settings_with(settings, enable_api_docs=False), clock=clock)
        declared = {route.path: route.permission for route in route_permissions(app)}
        health = {"/health/live": PUBLIC, "/health/ready": PUBLIC, "/metrics": PUBLIC}
        assert health.items() <= declared.items()
        assert None not in declared.values()

    @pytest.mark.spec("RBAC-4")
    def test_included_routes_are_listed_with_their_prefix(
        self, settings: Settings, clock: FrozenClock
    ) -> None:
        app = create_app(settings_with(settings, enable_api_docs=False), clock=clock)
        router = APIRouter()

        @router.get("/accounts/{account_id}", openapi_extra={PERMISSION_EXTENSION: "account:view"})
        async def account(account_id: str) -> None:
            return None

        @router.get("/undeclared")
        async def undeclared() -> None:
            return None

        app.include_router(router, prefix="/v1")
        declared = {route.path: route.permission for route in route_permissions(app)}
        assert declared["/v1/accounts/{account_id}"] == "account:view"
        assert declared["/v1/undeclared"] is None

    @pytest.mark.spec("IR-1")
    async def test_metrics_use_the_full_template_of_included_routes(
        self, settings: Settings, clock: FrozenClock, sqlite_engine: AsyncEngine
    ) -> None:
        app = create_app(settings, clock=clock, engine=sqlite_engine)
        router = APIRouter()

        @router.get("/orders/{order_id}")
        async def order(order_id: str) -> dict[str, str]:
            return {"order": order_id}

        app.include_router(router, prefix="/v1")
        async with serving(app) as client:
            await client.get("/v1/orders/ord-777")
            text = (await client.get("/metrics")).text
        assert 'route="/v1/orders/{order_id}"' in text
        assert "ord-777" not in text


class TestLifespan:
    @pytest.mark.spec("AUD-1")
    async def test_runtime_is_published_and_the_sequencer_runs_until_shutdown(
        self, app: FastAPI, sqlite_engine: AsyncEngine, clock: FrozenClock
    ) -> None:
        def sequencer_tasks() -> list[asyncio.Task[object]]:
            return [t for t in asyncio.all_tasks() if t.get_name() == "ledger-sequencer"]

        async with serving(app):
            runtime = app.state.runtime
            assert isinstance(runtime, Runtime)
            assert runtime.engine is sqlite_engine
            assert runtime.clock is clock
            (task,) = sequencer_tasks()
            assert not task.done()
        # Shutdown asks the workers to stop and lets the pass in progress finish.
        assert task.done()
        assert not task.cancelled()
        assert task.exception() is None
        assert sequencer_tasks() == []

    @pytest.mark.spec("IR-1")
    async def test_without_an_engine_it_opens_the_configured_database(
        self, settings: Settings, clock: FrozenClock
    ) -> None:
        prepared = create_engine(settings.main_database_url)
        await upgrade(prepared)
        await prepared.dispose()
        app = create_app(settings, clock=clock)
        async with serving(app) as client:
            response = await client.get("/health/ready")
            engine = app.state.runtime.engine
            assert str(settings.data_dir) in str(engine.url)
        assert response.status_code == 200
