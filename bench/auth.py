"""Authentication cost: Argon2id verify, access-token issue and verify. Prints one JSON object.

    .venv/bin/python bench/auth.py [--argon2-samples N] [--token-batch N] [--token-rounds N]

Argon2id: median and p99 of single verifies at the default parameters, the logins per second
one core sustains on hashing alone, and Keycloak's sizing-guide figure (15 password logins
per second per vCPU) for comparison. The dummy verify for unknown users is timed too: it must
cost the same as a real one. Access tokens: microseconds per verify through
AccessTokenVerifier and through a bare jwt.decode with the same key, token and checks, in
interleaved batches of the same run, for both signing algorithms; the ratio (median of the
per-batch ratios) is the wrapper's overhead.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import jwt

from _machine import machine_info  # bench/ is on sys.path as the script's directory
from tradeguard.core.clock import SystemClock
from tradeguard.identity.password_hashing import Argon2Parameters, PasswordHasher
from tradeguard.identity.signing_keys import SigningAlgorithm, SigningKeyRing
from tradeguard.identity.tokens import AccessTokenIssuer, AccessTokenVerifier

KEYCLOAK_LOGINS_PER_VCPU = 15
ISSUER = "https://tradeguard.bench"
AUDIENCE = "tradeguard-api"
PASSWORD = "violet tractor juggles quietly"  # noqa: S105 - a benchmark input, not a secret


def machine() -> dict[str, Any]:
    return {
        **machine_info(),
        "argon2_cffi": metadata.version("argon2-cffi"),
        "pyjwt": metadata.version("pyjwt"),
        "cryptography": metadata.version("cryptography"),
        # Other work on the machine inflates every figure; read them with this in mind.
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
    }


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def time_each_ms(action: Callable[[], object], samples: int) -> list[float]:
    timings = []
    for _ in range(samples):
        start = time.perf_counter_ns()
        action()
        timings.append((time.perf_counter_ns() - start) / 1e6)
    return timings


def per_call_us(action: Callable[[], object], *, calls: int, rounds: int = 5) -> float:
    """Median over rounds of the mean time per call within a round (smooths timer noise)."""
    means = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for _ in range(calls):
            action()
        means.append((time.perf_counter_ns() - start) / calls / 1e3)
    return statistics.median(means)


def bench_argon2(samples: int) -> dict[str, Any]:
    parameters = Argon2Parameters()
    hasher = PasswordHasher(parameters)
    stored = hasher.hash(PASSWORD)
    hasher.verify(stored, PASSWORD)  # warm up
    # Alternate real and dummy verifies so machine load affects both series alike.
    real: list[float] = []
    dummy: list[float] = []
    for _ in range(samples):
        real.extend(time_each_ms(lambda: hasher.verify(stored, PASSWORD), 1))
        dummy.extend(time_each_ms(hasher.verify_dummy, 1))
    median = statistics.median(real)
    per_core = 1000.0 / median
    return {
        "parameters": {
            "type": "argon2id",
            "time_cost": parameters.time_cost,
            "memory_cost_kib": parameters.memory_cost_kib,
            "parallelism": parameters.parallelism,
        },
        "samples": samples,
        "verify_ms_median": round(median, 2),
        "verify_ms_p99": round(percentile(real, 0.99), 2),
        "dummy_verify_ms_median": round(statistics.median(dummy), 2),
        "logins_per_second_per_core": round(per_core, 1),
        "keycloak_sizing_logins_per_second_per_vcpu": KEYCLOAK_LOGINS_PER_VCPU,
        "ratio_to_keycloak_figure": round(per_core / KEYCLOAK_LOGINS_PER_VCPU, 2),
    }


def bench_tokens(algorithm: SigningAlgorithm, *, calls: int, rounds: int) -> dict[str, Any]:
    clock = SystemClock()
    ring = SigningKeyRing.generate(algorithm)
    issuer = AccessTokenIssuer(keys=ring, clock=clock, issuer=ISSUER, audience=AUDIENCE)
    verifier = AccessTokenVerifier(keys=ring, clock=clock, issuer=ISSUER, audience=AUDIENCE)

    def issue() -> str:
        return issuer.issue(
            subject="user-1",
            session_id="session-1",
            role="TRADER",
            permissions=["order:place", "order:cancel", "order:modify", "account:view"],
            amr=["pwd", "otp"],
        ).token

    token = issue()
    public_key = ring.active.public_key

    def bare_decode() -> object:
        return jwt.decode(
            token,
            public_key,
            algorithms=[algorithm],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["iss", "aud", "sub", "exp", "iat", "nbf", "jti"]},
        )

    verifier.verify(token)
    bare_decode()
    # Short interleaved batches: each wrapped batch is compared with the bare batch right
    # after it, so load from other processes shifts both sides of each ratio alike.
    wrapped_us, bare_us, ratios = [], [], []
    for _ in range(rounds):
        wrapped_us.append(per_call_us(lambda: verifier.verify(token), calls=calls, rounds=1))
        bare_us.append(per_call_us(bare_decode, calls=calls, rounds=1))
        ratios.append(wrapped_us[-1] / bare_us[-1])
    wrapped, bare = statistics.median(wrapped_us), statistics.median(bare_us)
    return {
        "token_bytes": len(token),
        "issue_us": round(per_call_us(issue, calls=calls), 1),
        "verify_us": round(wrapped, 1),
        "bare_jwt_decode_us": round(bare, 1),
        "verify_us_min": round(min(wrapped_us), 1),
        "bare_jwt_decode_us_min": round(min(bare_us), 1),
        "verify_to_bare_ratio": round(statistics.median(ratios), 3),
        "ratio_target": 1.5,
        "verifies_per_second_per_core": round(1e6 / wrapped),
    }


async def _refresh_run(refreshes: int) -> dict[str, Any]:
    """Refresh-token rotations through the real app (in-process ASGI, SQLite file)."""
    import tempfile  # noqa: PLC0415 - only this part needs them

    import httpx  # noqa: PLC0415

    from tradeguard.access.domain import Role  # noqa: PLC0415
    from tradeguard.config import Settings  # noqa: PLC0415
    from tradeguard.db.engine import create_engine  # noqa: PLC0415
    from tradeguard.db.migrate import upgrade  # noqa: PLC0415
    from tradeguard.web.app import create_app  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(data_dir=Path(scratch), _env_file=None)  # type: ignore[call-arg]
        engine = create_engine(settings.main_database_url)
        await upgrade(engine)
        app = create_app(settings, engine=engine, run_workers=False)
        async with app.router.lifespan_context(app):
            identity = app.state.identity
            async with identity.unit_of_work() as session:
                await identity.accounts.create_user(
                    session,
                    username="bench",
                    email="bench@example.com",
                    password=PASSWORD,
                    role=Role.TRADER,
                    email_verified=True,
                )
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 1))
            async with httpx.AsyncClient(transport=transport, base_url="https://bench") as client:
                login = await client.post(
                    "/api/v1/auth/login", json={"login": "bench", "password": PASSWORD}
                )
                token = login.json()["refresh_token"]
                start = time.perf_counter()
                for _ in range(refreshes):
                    response = await client.post(
                        "/api/v1/auth/token/refresh", json={"refresh_token": token}
                    )
                    token = response.json()["refresh_token"]
                elapsed = time.perf_counter() - start
        await engine.dispose()
    return {
        "refreshes": refreshes,
        "refreshes_per_second": round(refreshes / elapsed, 1),
        "ms_per_refresh": round(elapsed / refreshes * 1000, 2),
        "database": "SQLite (synchronous=FULL), one client",
    }


def bench_refresh(refreshes: int) -> dict[str, Any]:
    import asyncio  # noqa: PLC0415

    return asyncio.run(_refresh_run(refreshes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--argon2-samples", type=int, default=200)
    parser.add_argument("--token-batch", type=int, default=200)
    parser.add_argument("--token-rounds", type=int, default=40)
    parser.add_argument("--refreshes", type=int, default=300)
    args = parser.parse_args()
    result = {
        "benchmark": "auth",
        "machine": machine(),
        "argon2id": bench_argon2(args.argon2_samples),
        "access_tokens": {
            algorithm: bench_tokens(algorithm, calls=args.token_batch, rounds=args.token_rounds)
            for algorithm in ("EdDSA", "ES256")
        },
        "refresh_rotation": bench_refresh(args.refreshes),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
