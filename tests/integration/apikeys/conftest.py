"""API key tests run against the real app and database, at a moment the NYSE is open, with
signed requests sent from their own client addresses."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pyotp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import REDIS_URL, require_service
from tests.support.api import (
    Api,
    enrol_totp,
    login,
    login_with_totp,
    register_verified,
    running_api,
)
from tests.support.trading import Trader
from tradeguard.apikeys.signing import sign_headers
from tradeguard.config import Settings
from tradeguard.core.clock import NS_PER_SECOND, FrozenClock

# Monday 5 January 2026, 10:00 in New York (15:00 UTC): a regular session is open.
MONDAY_OPEN = int(datetime(2026, 1, 5, 15, 0, tzinfo=UTC).timestamp()) * NS_PER_SECOND
BOT_IP = "198.51.100.20"
BOT_NETWORK = "198.51.100.0/24"
OTHER_IP = "192.0.2.55"


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(MONDAY_OPEN)


@pytest.fixture
def leak_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(params=["memory", "redis"])
async def nonce_backend(request: pytest.FixtureRequest) -> str | None:
    if request.param == "memory":
        return None
    client: Redis = Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except Exception as exc:  # redis-py raises its own ConnectionError
        require_service("Redis", exc)
    finally:
        await client.aclose()
    return REDIS_URL


@pytest.fixture
def redis_url() -> str | None:
    return None


@pytest.fixture
async def api(
    settings: Settings,
    engine: AsyncEngine,
    clock: FrozenClock,
    leak_key: ec.EllipticCurvePrivateKey,
    redis_url: str | None,
) -> AsyncIterator[Api]:
    pem = (
        leak_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    configured = settings.model_copy(
        update={"apikeys_leak_report_public_key": pem, "redis_url": redis_url}
    )
    async with running_api(configured, engine, clock) as running:
        yield running


@dataclass
class Owner:
    trader: Trader
    totp: pyotp.TOTP


async def owner(api: Api, client: httpx.AsyncClient, username: str = "alice") -> Owner:
    """A trader signed in with TOTP just now (a fresh second factor)."""
    await register_verified(api, client, username)
    first = await login(client, username)
    totp = await enrol_totp(api, client, first["access_token"])
    tokens = await login_with_totp(api, client, totp, username)
    claims = api.services.verifier.verify(tokens["access_token"])
    return Owner(Trader(username, claims.subject, tokens["access_token"], client), totp)


async def create_key(
    owner: Owner, scope: str = "trade", allowlist: list[str] | None = None
) -> dict[str, Any]:
    response = await owner.trader.post(
        "/api/v1/apikeys",
        {
            "name": f"{scope} bot",
            "scope": scope,
            "ip_allowlist": [BOT_NETWORK] if allowlist is None else allowlist,
        },
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def bot_client(api: Api, ip: str = BOT_IP) -> httpx.AsyncClient:
    return api.client(ip)


async def signed(
    api: Api,
    client: httpx.AsyncClient,
    key: dict[str, Any],
    method: str,
    path: str,
    body: Any = None,
    *,
    query: str = "",
    nonce: str | None = None,
    timestamp_ms: int | None = None,
    secret: str | None = None,
) -> httpx.Response:
    raw = json.dumps(body).encode() if body is not None else b""
    headers = sign_headers(
        key_id=key["key"]["id"],
        secret=secret or key["secret"],
        method=method,
        path=path,
        query=query,
        body=raw,
        timestamp_ms=timestamp_ms if timestamp_ms is not None else api.clock.now_ns() // 10**6,
        nonce=nonce,
    )
    if raw:
        headers["content-type"] = "application/json"
    url = path + (f"?{query}" if query else "")
    return await client.request(method, url, content=raw, headers=headers)
