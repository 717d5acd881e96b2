"""HTTP baseline: GET /health/live over TLS with keep-alive against a real server process.

Starts the server with the e2e launcher (tests/e2e/_serve.py: migrations, dev certificate,
uvicorn over TLS), then drives it from another process: `wrk` when installed, otherwise an
httpx async load loop in this process. Loopback only. Prints one JSON object.

    .venv/bin/python bench/http_baseline.py [--duration 10] [--connections 32] [--client auto]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.e2e.servers import LOOPBACK, RunningServer, running_server  # noqa: E402

from _machine import machine_info  # noqa: E402 - bench/ is on sys.path as the script's dir
from _wrk import run_wrk  # noqa: E402

TARGET_PATH = "/health/live"
WARMUP_SECONDS = 1.0


def run_wrk_baseline(server: RunningServer, *, duration: float, connections: int) -> dict[str, Any]:
    url = server.base_url + TARGET_PATH
    subprocess.run(["wrk", "-t1", "-c1", "-d1s", url], check=True, capture_output=True, timeout=30)
    result = run_wrk(url, duration=duration, connections=connections)
    result["requests_per_s"] = result.pop("per_s")
    return result


async def _httpx_load(
    server: RunningServer, *, duration: float, connections: int, max_requests: int
) -> dict[str, Any]:
    import httpx  # noqa: PLC0415 - only needed on the fallback path

    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(
        base_url=server.base_url, verify=server.client_context(), limits=limits, timeout=5
    ) as client:

        async def worker(until: float, record: bool) -> None:
            nonlocal errors
            while time.perf_counter() < until and len(latencies) < max_requests:
                started = time.perf_counter()
                try:
                    response = await client.get(TARGET_PATH)
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if record:
                    if ok:
                        latencies.append(time.perf_counter() - started)
                    else:
                        errors += 1

        warm_until = time.perf_counter() + WARMUP_SECONDS
        await asyncio.gather(*(worker(warm_until, False) for _ in range(connections)))
        started = time.perf_counter()
        until = started + duration
        await asyncio.gather(*(worker(until, True) for _ in range(connections)))
        elapsed = time.perf_counter() - started
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return {
        "client": "httpx AsyncClient (in the benchmark process)",
        "requests": len(latencies),
        "errors": errors,
        "duration_s": round(elapsed, 3),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(quantiles[49] * 1000, 3),
        "p99_ms": round(quantiles[98] * 1000, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of measured load")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections")
    parser.add_argument("--client", choices=("auto", "wrk", "httpx"), default="auto")
    parser.add_argument("--max-requests", type=int, default=2_000_000)
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=("INFO", "WARNING"),
        help="server log level; INFO (the default setting) writes one access-log line per request",
    )
    args = parser.parse_args()
    duration = max(1.0, min(args.duration, 120.0))
    use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk"))

    with (
        tempfile.TemporaryDirectory(prefix="tradeguard-bench-") as data_dir,
        running_server(Path(data_dir), ["--log-level", args.log_level]) as server,
    ):
        if use_wrk:
            result = run_wrk_baseline(server, duration=duration, connections=args.connections)
        else:
            result = asyncio.run(
                _httpx_load(
                    server,
                    duration=duration,
                    connections=args.connections,
                    max_requests=args.max_requests,
                )
            )
    report = {
        "benchmark": "http_baseline",
        "target": f"GET {TARGET_PATH} over TLS 1.3, HTTP/1.1 keep-alive, {LOOPBACK}",
        "requests_per_s": result["requests_per_s"],
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        "requests": result["requests"],
        "errors": result["errors"],
        "connections": args.connections,
        "duration_s": result["duration_s"],
        "client": result["client"],
        "server": (
            "1 uvicorn worker (uvloop, httptools), SQLite, "
            + ("JSON access log to a file" if args.log_level == "INFO" else "access log off")
        ),
        "machine": {**machine_info(), "openssl": ssl.OPENSSL_VERSION},
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
