"""Property-based contract test: schemathesis against the live app, over every operation.

Cases come from the app's own OpenAPI document (positive and negative data, a bounded and
derandomized set per operation) and are sent in process to the real app on the real
database, SQLite and PostgreSQL, through the same ASGI stack a server runs. Guarded
operations are called with the access token of a real user with a second factor (a fresh
user per operation, so what one operation does to its user, such as signing out or locking
the account, cannot change what the next one sees). Every response must: not be a 5xx,
have a documented status, content type and headers, match the documented schema, reject
schema-violating input, and be problem+json whenever it is an error.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Final

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, CheckContext, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.vault.conftest import vault_database, vault_engine
from tests.support.api import Api, bearer, login_with_totp, running_api, user_with_totp
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.web.problems import PROBLEM_CONTENT_TYPE

# Per operation and mode, 2 cases (derandomized): about 4 requests per operation and database.
EXAMPLES_PER_MODE: Final = 2
BASE_URL: Final = "https://testserver"


def problem_json_for_errors(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Every error is RFC 9457 problem+json whose `status` is the HTTP status."""
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith(PROBLEM_CONTENT_TYPE), f"error as {content_type!r}"
    body = json.loads(response.content)
    assert body.get("status") == response.status_code, "problem status differs from HTTP status"
    assert str(body.get("type", "")).startswith("https://tradeguard.dev/problems/"), body
    assert body.get("title"), body
    assert body.get("detail"), body
    return True


CHECKS: Final = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    problem_json_for_errors,
]


def generated_cases(operation: Any, mode: GenerationMode) -> list[Case]:
    """A fixed set of cases: derandomized, so every run sends the same requests."""
    cases: list[Case] = []

    @settings(
        max_examples=EXAMPLES_PER_MODE,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(operation.as_strategy(generation_mode=mode))
    def collect(case: Case) -> None:
        cases.append(case)

    try:
        collect()
    except Unsatisfiable:
        # An operation without parameters or body has no invalid input to make.
        if mode is GenerationMode.POSITIVE:
            raise
    return cases


async def send(client: httpx.AsyncClient, case: Case, token: str | None) -> httpx.Response:
    request = case.as_transport_kwargs(base_url=BASE_URL)
    headers = dict(request.get("headers") or {})
    # Schemathesis fills the bearer scheme's header with a made-up value; a real session's
    # token replaces it. A negative case without the header stays without it (that is what
    # it tests).
    if token is not None and "Authorization" in headers:
        headers["Authorization"] = f"Bearer {token}"
    body: dict[str, Any] = {}
    if "json" in request:
        body["content"] = json.dumps(request["json"]).encode()
    elif request.get("data") is not None:
        data = request["data"]
        body["content"] = data.encode() if isinstance(data, str) else data
    return await client.request(
        request["method"],
        request["url"],
        headers=headers,
        params=request.get("params") or None,
        **body,
    )


__all__ = ["vault_database", "vault_engine"]


@pytest.fixture
async def api(
    settings: Settings, engine: AsyncEngine, vault_engine: AsyncEngine, clock: FrozenClock
) -> AsyncIterator[Api]:
    """The app with its in-process card vault, so the card operations answer for real."""
    async with running_api(settings, engine, clock, vault_engine=vault_engine) as running:
        yield running


class Sessions:
    """Real sessions for guarded operations: a user with TOTP, signed in with it.

    The session is probed before each operation and replaced (with a new user) once a
    previous operation ended it, so an operation such as logout cannot turn the next one's
    cases into plain 401s. Replacing only then keeps setup requests few.
    """

    def __init__(self, api: Api) -> None:
        self.api = api
        self.users = 0
        self.token: str | None = None

    async def usable_token(self, client: httpx.AsyncClient) -> str:
        if self.token is not None:
            probe = await client.get("/api/v1/auth/mfa", headers=bearer(self.token))
            if probe.status_code == 200:
                return self.token
        self.users += 1
        username = f"fuzz{self.users}"
        async with self.api.client(ip=f"198.51.100.{self.users}") as own:
            access, totp = await user_with_totp(self.api, own, username=username)
            await own.post("/api/v1/auth/logout", headers=bearer(access))
            tokens = await login_with_totp(self.api, own, totp, username=username)
        self.token = str(tokens["access_token"])
        return self.token


class TestSchemathesis:
    async def test_every_operation_keeps_its_documented_contract(self, api: Api) -> None:
        schema = schemathesis.openapi.from_dict(api.app.openapi())
        failures: list[str] = []
        sent = 0
        sessions = Sessions(api)
        async with api.client() as client:
            for result in schema.get_all_operations():
                operation = result.ok()
                guarded = bool(operation.definition.raw.get("security"))
                token = await sessions.usable_token(client) if guarded else None
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                    for case in generated_cases(operation, mode):
                        response = await send(client, case, token)
                        sent += 1
                        try:
                            case.validate_response(response, checks=CHECKS)
                        except FailureGroup as failure:
                            failures.append(f"{operation.label} ({mode.value}): {failure}")
        assert sent >= 39 * 2
        assert failures == [], "\n".join(failures)
