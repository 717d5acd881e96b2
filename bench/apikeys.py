"""Signed-request verification cost (API-3). Prints one JSON object.

    .venv/bin/python bench/apikeys.py [--calls N] [--rounds N]

Three figures, in interleaved batches of the same run so that load from other processes
shifts them alike:

- `bare_us`: the least any HMAC check can cost: `hmac.new(secret, canonical, sha256)` over
  an already-built canonical request and `hmac.compare_digest` with the presented MAC;
- `verify_us`: what the server does per request from the request's parts: build the
  canonical request (path and query encoding, the body's SHA-256) and compare in constant
  time (`canonical_request` + `signature_matches`);
- `authenticate_us`: the whole `ApiKeyService.authenticate` of a request with a cached key:
  header checks, the timestamp window, the signature, the allowlist, the in-memory nonce
  claim and the principal (no database: the key is cached and last-used was just written).

`verify_to_bare_ratio` (median of per-batch ratios) is the target: at most 2.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import secrets
import statistics
import time
from collections.abc import Callable
from typing import Any

from _machine import machine_info  # bench/ is on sys.path as the script's directory
from tradeguard.access.domain import Role
from tradeguard.apikeys.service import ApiKeyService, KeyPolicy, KeyRecord, Scope
from tradeguard.apikeys.signing import (
    MemoryNonceStore,
    canonical_request,
    new_key_id,
    new_secret,
    sign_headers,
    signature,
    signature_matches,
)
from tradeguard.core.clock import SystemClock

PATH = "/api/v1/accounts/0190c5a0-0000-7000-8000-000000000001/orders"
QUERY = "status=open&limit=50"
BODY = json.dumps(
    {
        "client_order_id": "bench-1",
        "symbol": "AAPL",
        "side": "buy",
        "type": "limit",
        "quantity": 10,
        "limit_price": "199.50",
        "time_in_force": "day",
    }
).encode()


def per_call_us(action: Callable[[], object], calls: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(calls):
        action()
    return (time.perf_counter_ns() - start) / calls / 1000


class _FakeRequest:
    """What `authenticate` reads of a Starlette request."""

    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.method = "POST"
        self.client = type("Client", (), {"host": "198.51.100.20"})()

        class _Url:
            path = PATH
            query = QUERY

        self.url = _Url()

    async def body(self) -> bytes:
        return BODY


class _Identity:
    def __init__(self) -> None:
        self.clock = SystemClock()
        self.sessions = None


def bench(calls: int, rounds: int) -> dict[str, Any]:
    key_id, secret = new_key_id(), new_secret()
    stamp = int(time.time() * 1000)
    nonce = secrets.token_urlsafe(24)
    canonical = canonical_request(
        method="POST",
        path=PATH,
        query=QUERY,
        body=BODY,
        timestamp_ms=stamp,
        nonce=nonce,
        key_id=key_id,
    )
    presented = signature(secret, canonical)
    key, message = secret.encode(), canonical.encode()

    def bare() -> bool:
        mac = hmac.new(key, message, hashlib.sha256).hexdigest()
        return hmac.compare_digest(mac, presented)

    def verify() -> bool:
        built = canonical_request(
            method="POST",
            path=PATH,
            query=QUERY,
            body=BODY,
            timestamp_ms=str(stamp),
            nonce=nonce,
            key_id=key_id,
        )
        return signature_matches(key, built, presented)

    if not (bare() and verify()):
        raise SystemExit("the benchmark's signature does not verify")

    # The full check, with the key cached and the nonce store in memory.
    identity: Any = _Identity()
    service = ApiKeyService(
        identity,
        policy=KeyPolicy(expiry_ns=0, overlap_ns=0, window_ms=60_000, max_per_user=10),
        nonces=MemoryNonceStore(lambda: time.monotonic_ns() // 1_000_000),
    )
    now = time.time_ns()
    record = KeyRecord(
        key_id=key_id,
        user_id="0190c5a0-0000-7000-8000-000000000002",
        role=Role.TRADER,
        user_active=True,
        scope=Scope.TRADE,
        ip_allowlist=("198.51.100.0/24",),
        secret=key,
        created_ns=now,
        expires_ns=now + 86_400 * 10**9,
        revoked_ns=None,
        last_used_ns=now + 3600 * 10**9,  # no last-used write during the run
    )
    service._cache[key_id] = (time.monotonic_ns() + 3600 * 10**9, record)
    loop = asyncio.new_event_loop()

    def authenticate() -> object:
        headers = sign_headers(
            key_id=key_id,
            secret=secret,
            method="POST",
            path=PATH,
            query=QUERY,
            body=BODY,
        )
        request: Any = _FakeRequest(headers)
        start = time.perf_counter_ns()
        loop.run_until_complete(service.authenticate(request))
        return time.perf_counter_ns() - start

    bare_us, verify_us, ratios = [], [], []
    for _ in range(rounds):
        verify_us.append(per_call_us(verify, calls))
        bare_us.append(per_call_us(bare, calls))
        ratios.append(verify_us[-1] / bare_us[-1])
    # The whole check includes signing each request (a fresh nonce each): only the check's
    # own time is counted.
    full = sorted(int(authenticate()) / 1000 for _ in range(max(200, calls // 10)))  # type: ignore[call-overload]
    loop.close()
    return {
        "calls_per_batch": calls,
        "batches": rounds,
        "bare_us": round(statistics.median(bare_us), 3),
        "verify_us": round(statistics.median(verify_us), 3),
        "verify_to_bare_ratio": round(statistics.median(ratios), 3),
        "ratio_target": 2.0,
        "authenticate_us_median": round(full[len(full) // 2], 2),
        "authenticate_us_p99": round(full[int(0.99 * (len(full) - 1))], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    result = {
        "benchmark": "apikeys",
        "machine": {**machine_info(), "load_average_1m_at_start": round(os.getloadavg()[0], 2)},
        "signature": bench(args.calls, args.rounds),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
