"""Signed-in order placement over HTTPS, against the /health/live baseline in the same run.

Starts `python -m tradeguard serve --demo` (SQLite, the simulated market running), signs the
demo trader in with TOTP on an authorized device, opens accounts for the load, then drives
`POST /api/v1/accounts/{id}/orders` with wrk from another process (every request a new
client order id: a resting limit buy below the market, so the order path is measured: token,
session, permission audit, pre-trade pipeline, the reservation transaction, the venue). The
same wrk settings then measure GET /health/live on the same server. Prints one JSON object,
with the server's CPU time per request of each and the load average (on a shared machine the
rates depend on how much of a core the server gets; its CPU per request hardly does).

    .venv/bin/python bench/orders_http.py [--duration 10] [--connections 16] [--accounts 24]
                                          [--py-spy FILE]

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


# Runs `tradeguard` commands one after another in one process (starting the interpreter for
# each of 48 commands took minutes on a loaded machine) and prints what each printed.
CLI_BATCH = """
import contextlib, io, json, sys
from tradeguard.cli.main import app
printed = []
for args in json.loads(sys.argv[1]):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        app(args, standalone_mode=False)
    printed.append(out.getvalue())
print(json.dumps(printed))
"""


def cli(server: RunningServer, commands: list[list[str]]) -> list[str]:
    """What each `tradeguard` command printed, run against the server's data directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEGUARD_")}
    data_dir = ["--data-dir", str(server.data_dir)]
    completed = subprocess.run(
        [sys.executable, "-c", CLI_BATCH, json.dumps([[*c, *data_dir] for c in commands])],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    printed: list[str] = json.loads(completed.stdout.splitlines()[-1])
    return printed


def prepare_accounts(server: RunningServer, count: int) -> list[str]:
    opened = cli(server, [["trading", "accounts", "open", "alice", "--type", "cash"]] * count)
    ids = [out.split()[1] for out in opened]
    cli(
        server,
        [
            ["trading", "accounts", "adjust", account_id, "5000000", "--reason", "benchmark"]
            for account_id in ids
        ],
    )
    return ids


def process_cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process, all threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def per_request_ms(seconds: float, requests: int) -> float:
    return round(1000 * seconds / max(requests, 1), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--accounts", type=int, default=24)
    parser.add_argument(
        "--py-spy",
        metavar="FILE",
        help="record the server with py-spy (on PATH) during the order run, raw stacks to FILE",
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")
    if args.py_spy and not shutil.which("py-spy"):
        sys.exit("--py-spy needs py-spy on PATH (pip install py-spy)")
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
        pid = server.process.pid
        # Warm up both paths, then measure each with the same wrk settings.
        run_wrk(url + "/health/live", duration=2, connections=args.connections)
        run_wrk(url, script=script, duration=2, connections=args.connections)
        load_before = os.getloadavg()[0]
        spy = None
        if args.py_spy:
            record = ["py-spy", "record", "--pid", str(pid), "--rate", "250", "--format", "raw"]
            spy = subprocess.Popen(
                [*record, "--duration", str(int(args.duration)), "--output", args.py_spy],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        cpu_before = process_cpu_seconds(pid)
        orders = run_wrk(url, script=script, duration=args.duration, connections=args.connections)
        cpu_orders = process_cpu_seconds(pid)
        if spy is not None:
            spy.wait(timeout=60)
        health = run_wrk(url + "/health/live", duration=args.duration, connections=args.connections)
        cpu_health = process_cpu_seconds(pid)
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
    orders_cpu_ms = per_request_ms(cpu_orders - cpu_before, orders["requests"])
    health_cpu_ms = per_request_ms(cpu_health - cpu_orders, health["requests"])
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
        # CPU the server process (all threads, its workers included) spent per request. The
        # rates depend on how much of the machine other processes leave the server; this
        # hardly does, and the ratio of the two is the rate ratio of a server held to one core.
        "orders_cpu_ms": orders_cpu_ms,
        "health_cpu_ms": health_cpu_ms,
        "cpu_ratio_to_health": round(health_cpu_ms / orders_cpu_ms, 3) if orders_cpu_ms else None,
        "load_average_1m": round(load_before, 2),
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
