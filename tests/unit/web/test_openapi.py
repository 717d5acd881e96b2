"""The OpenAPI document: ids, summaries, the bearer scheme, problem+json errors, models."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.core.errors import ConfigurationError
from tradeguard.web.app import create_app
from tradeguard.web.openapi import OPERATION_ID_PATTERN, build_openapi
from tradeguard.web.problems import PROBLEM_CONTENT_TYPE
from tradeguard.web.route_policy import PUBLIC

ERROR_SCHEMAS = {
    "#/components/schemas/Problem",
    "#/components/schemas/ValidationProblem",
    "#/components/schemas/ThrottledProblem",
    "#/components/schemas/MalformedJsonProblem",
}


@pytest.fixture
async def document(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


class TestOperations:
    def test_every_operation_has_a_unique_readable_id(self, document: dict[str, Any]) -> None:
        ids = [operation["operationId"] for _, _, operation in operations(document)]
        assert len(ids) == len(set(ids))
        assert all(OPERATION_ID_PATTERN.fullmatch(i) for i in ids), ids
        assert {"auth.login", "auth.mfa.verify", "health.live"} <= set(ids)

    def test_every_operation_has_a_written_summary(self, document: dict[str, Any]) -> None:
        for method, path, operation in operations(document):
            summary = operation["summary"]
            # FastAPI's fallback is the function name in title case ("Verify Mfa").
            assert summary[0].isupper(), (method, path, summary)
            assert " " in summary, (method, path, summary)
            assert summary != summary.title(), (method, path, summary)

    def test_guarded_operations_use_the_bearer_scheme_and_public_ones_none(
        self, document: dict[str, Any]
    ) -> None:
        scheme = document["components"]["securitySchemes"]["bearerAuth"]
        assert scheme == {**scheme, "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
        for method, path, operation in operations(document):
            if operation["x-permission"] == PUBLIC:
                assert operation["security"] == [], (method, path)
            else:
                assert operation["security"] == [{"bearerAuth": []}], (method, path)
                assert {"401", "403"} <= set(operation["responses"]), (method, path)

    def test_every_2xx_with_a_body_has_a_schema(self, document: dict[str, Any]) -> None:
        for method, path, operation in operations(document):
            for status, response in operation["responses"].items():
                if not status.startswith("2") or status == "204":
                    continue
                # One media type, or several a client chooses from (the access review: JSON
                # or CSV); each has its schema.
                assert response["content"], (method, path, status)
                for media_type, content in response["content"].items():
                    assert content["schema"] not in ({}, None), (method, path, status, media_type)

    def test_login_answers_tokens_or_an_mfa_challenge_told_apart_by_status(
        self, document: dict[str, Any]
    ) -> None:
        login = document["paths"]["/api/v1/auth/login"]["post"]
        schema = login["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema["discriminator"]["propertyName"] == "status"
        assert len(schema["oneOf"]) == 2

    def test_email_fields_declare_the_email_format(self, document: dict[str, Any]) -> None:
        schemas = document["components"]["schemas"]
        assert schemas["RegisterRequest"]["properties"]["email"]["format"] == "email"
        assert schemas["PasswordResetRequest"]["properties"]["email"]["format"] == "email"
        assert schemas["EmailChangeRequest"]["properties"]["new_email"]["format"] == "email"


class TestErrorResponses:
    def test_every_error_is_documented_as_problem_json(self, document: dict[str, Any]) -> None:
        assert "HTTPValidationError" not in document["components"]["schemas"]
        for method, path, operation in operations(document):
            for status, response in operation["responses"].items():
                if int(status) < 400:
                    continue
                assert list(response["content"]) == [PROBLEM_CONTENT_TYPE], (method, path, status)
                schema = response["content"][PROBLEM_CONTENT_TYPE]["schema"]
                assert schema["$ref"] in ERROR_SCHEMAS, (method, path, status)

    def test_the_usual_errors_are_documented_where_they_can_happen(
        self, document: dict[str, Any]
    ) -> None:
        paths = document["paths"]
        revoke = paths["/api/v1/auth/devices/{device_id}"]["delete"]["responses"]
        login = paths["/api/v1/auth/login"]["post"]["responses"]
        register = paths["/api/v1/auth/register"]["post"]["responses"]
        assert {"401", "403", "404", "422"} <= set(revoke)
        assert {"400", "401", "413", "415", "422", "429"} <= set(login)
        assert {"409", "429"} <= set(register)

    def test_429_documents_retry_after_and_401_the_bearer_challenge(
        self, document: dict[str, Any]
    ) -> None:
        for method, path, operation in operations(document):
            responses = operation["responses"]
            if "429" in responses:
                assert responses["429"]["headers"]["Retry-After"]["required"], (method, path)
            if "401" in responses:
                assert "WWW-Authenticate" in responses["401"]["headers"], (method, path)

    def test_the_problem_schema_is_rfc_9457(self, document: dict[str, Any]) -> None:
        problem = document["components"]["schemas"]["Problem"]
        assert {"type", "title", "status", "detail"} <= set(problem["required"])
        assert problem["additionalProperties"] is True


class TestOperationIds:
    def test_two_operations_with_one_id_stop_the_document(
        self, settings: Settings, clock: FrozenClock
    ) -> None:
        app = create_app(settings, clock=clock)

        @app.get("/one", operation_id="same.id")
        async def one() -> None:
            """One."""

        @app.get("/two", operation_id="same.id")
        async def two() -> None:
            """Two."""

        with pytest.raises(ConfigurationError, match="already used"):
            build_openapi(app, description="")

    def test_a_route_without_an_id_gets_one_from_its_path(
        self, settings: Settings, clock: FrozenClock
    ) -> None:
        app: FastAPI = create_app(settings, clock=clock)

        @app.get("/api/v1/auth/me")
        async def me() -> dict[str, str]:
            """Who you are."""
            return {}

        document = build_openapi(app, description="")
        operation = document["paths"]["/api/v1/auth/me"]["get"]
        assert operation["operationId"] == "auth.me.get"
        assert operation["summary"] == "Who you are"
