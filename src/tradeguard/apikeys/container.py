"""Builds the API key service once per process (app, CLI command, test)."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec
from redis.asyncio import Redis

from tradeguard.apikeys.leaks import load_public_key
from tradeguard.apikeys.service import ApiKeyService, KeyPolicy
from tradeguard.apikeys.signing import MemoryNonceStore, NonceStore, RedisNonceStore
from tradeguard.config import Settings
from tradeguard.identity.container import IdentityServices


@dataclass(slots=True)
class ApiKeyServices:
    keys: ApiKeyService
    leak_key: ec.EllipticCurvePublicKey | None
    reminder_seconds: int


def build_apikeys(
    settings: Settings, *, identity: IdentityServices, redis: Redis | None = None
) -> ApiKeyServices:
    clock = identity.clock
    nonces: NonceStore = (
        RedisNonceStore(redis)
        if redis is not None
        else MemoryNonceStore(lambda: clock.monotonic_ns() // 1_000_000)
    )
    pem = settings.apikeys_leak_report_public_key
    return ApiKeyServices(
        keys=ApiKeyService(identity, policy=KeyPolicy.from_settings(settings), nonces=nonces),
        leak_key=load_public_key(pem) if pem else None,
        reminder_seconds=settings.apikeys_reminder_check_seconds,
    )
