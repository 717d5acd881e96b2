"""Signed-in order placement over HTTPS, against the /health/live baseline in the same run.

Starts `python -m tradeguard serve --demo` (SQLite, the simulated market running), signs the
demo trader in with TOTP on an authorized device, opens accounts for the load, then drives
`POST /api/v1/accounts/{id}/orders` with wrk from another process (every request a new
client order id: a resting limit buy below the market, so the order path is measured: token,
session, permission audit, pre-trade pipeline, the reservation transaction, the venue). The
same wrk settings then measure GET /health/live on the same server. Prints one JSON object.

    .venv/bin/python bench/orders_http.py [--duration 10] [--connections 16] [--accounts 24]

Needs wrk (Debian: apt-get install wrk).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.e2e.demo_session import demo_trader  # noqa: E402
from tests.e2e.servers import LOOPBACK, RunningServer, running_server  # noqa: E402

from _machine import machine_info  # noqa: E402 - bench/ is on sys.path as the script's dir
from _wrk import run_wrk  # noqa: E402

SYMBOL = "AAPL"
# Every account may place up to 64 orders a second (the risk window's size): the load is
# spread over many accounts of one trader, as a trading firm's desks would be.
SERVER_ENV = {
    "TRADEGUARD_RISK_MAX_ORDERS_PER_SECOND": "64",
    "TRADEGUARD_RISK_BURST_MAX_ORDERS": "64",
    "TRADEGUARD_RISK_BURST_WINDOW_SECONDS": "1",
    "TRADEGUARD_RISK_DUPLICATE_WINDOW_MS": "1",
}

WRK_ORDERS_SCRIPT = """
local counter = 0
local thread_id = 0
local accounts = {%(accounts)s}
local token = "%(token)s"
function setup(thread)
  thread:set("thread_id", %(seed)s + math.random(1, 1000000))
end
request = function()
  counter = counter + 1
  local account = accounts[(counter %% #accounts) + 1]
  local cents = counter %% 97
  local body = string.format(
    '{"client_order_id":"w%%d-%%d","symbol":"%(symbol)s","side":"buy","type":"limit",'
    .. '"time_in_force":"day","quantity":%%d,"limit_price":"%%d.%%02d"}',
    thread_id, counter, (counter %% 3) + 1, %(whole)s, cents)
  return wrk.format("POST", "/api/v1/accounts/" .. account .. "/orders",
    {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}, body)
end
"""


def cli(server: RunningServer, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEGUARD_")}
    completed = subprocess.run(
        [sys.executable, "-m", "tradeguard", *args, "--data-dir", str(server.data_dir)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    return completed.stdout


def prepare_accounts(server: RunningServer, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        out = cli(server, "trading", "accounts", "open", "alice", "--type", "cash")
        account_id = out.split()[1]
        cli(
            server,
            "trading",
            "accounts",
            "adjust",
            account_id,
            "5000000",
            "--reason",
            "benchmark funding",
        )
        ids.append(account_id)
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--accounts", type=int, default=24)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")
    with (
        tempfile.TemporaryDirectory(prefix="tradeguard-bench-") as data_dir,
        running_server(
            Path(data_dir) / "var",
            ["--demo"],
            via_cli=True,
            env={**SERVER_ENV, "TRADEGUARD_LOG_LEVEL": "WARNING"},
        ) as server,
    ):
        trader = demo_trader(server, "alice")
        accounts = prepare_accounts(server, args.accounts)
        script = WRK_ORDERS_SCRIPT % {
            "accounts": ",".join(f'"{a}"' for a in accounts),
            "token": trader.access_token,
            "symbol": SYMBOL,
            "whole": 225,  # below the demo market (~232), inside the 5% collar: the order rests
            "seed": 0,
        }
        url = server.base_url
        # Warm up both paths, then measure each with the same wrk settings.
        run_wrk(url + "/health/live", duration=2, connections=args.connections)
        run_wrk(url, script=script, duration=2, connections=args.connections)
        orders = run_wrk(url, script=script, duration=args.duration, connections=args.connections)
        health = run_wrk(url + "/health/live", duration=args.duration, connections=args.connections)
        reconcile = subprocess.run(
            [
                sys.executable,
                "-m",
                "tradeguard",
                "trading",
                "reconcile",
                "--json",
                "--data-dir",
                str(server.data_dir),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
    report = {
        "benchmark": "orders_http",
        "target": f"POST /api/v1/accounts/{{id}}/orders over TLS, {LOOPBACK}, signed in (TOTP)",
        "orders_per_s": orders["per_s"],
        "orders_p50_ms": orders["p50_ms"],
        "orders_p99_ms": orders["p99_ms"],
        "orders_errors": orders["errors"],
        "health_per_s": health["per_s"],
        "health_p50_ms": health["p50_ms"],
        "health_p99_ms": health["p99_ms"],
        "ratio_to_health": round(orders["per_s"] / health["per_s"], 3),
        "target_ratio": 0.3,
        "target_p99_ms": 20,
        "accounts": args.accounts,
        "connections": args.connections,
        "duration_s": args.duration,
        "reconciled": json.loads(reconcile.stdout).get("ok") if reconcile.stdout else None,
        "server": "1 uvicorn worker, SQLite (WAL, synchronous=FULL), demo market running, "
        "log level WARNING",
        "machine": {**machine_info(), "openssl": ssl.OPENSSL_VERSION},
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
