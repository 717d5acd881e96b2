"""Drive a URL with wrk (from another process) and read its summary as JSON."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

# wrk's done() hook writes its summary as JSON so nothing has to parse its text report.
REPORT_SCRIPT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nWRK_JSON {"requests":%d,"duration_us":%d,"socket_errors":%d,"non_2xx":%d,'
    .. '"p50_us":%d,"p99_us":%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout,
    e.status, latency:percentile(50), latency:percentile(99)))
end
"""


def run_wrk(url: str, *, duration: float, connections: int, script: str = "") -> dict[str, Any]:
    """Requests, errors (socket errors and non-2xx), rate per second and p50/p99 in ms."""
    threads = max(1, min(connections, os.cpu_count() or 1))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script + REPORT_SCRIPT)
    try:
        completed = subprocess.run(
            [
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{int(duration)}s",
                "--timeout",
                "5s",
                "-s",
                handle.name,
                url,
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=duration + 60,
        )
    finally:
        Path(handle.name).unlink(missing_ok=True)
    line = next(x for x in completed.stdout.splitlines() if x.startswith("WRK_JSON "))
    report = json.loads(line.removeprefix("WRK_JSON "))
    seconds = report["duration_us"] / 1e6
    return {
        "client": f"wrk ({threads} threads)",
        "requests": report["requests"],
        "errors": report["socket_errors"] + report["non_2xx"],
        "duration_s": round(seconds, 3),
        "per_s": round(report["requests"] / seconds, 1),
        "p50_ms": round(report["p50_us"] / 1000, 3),
        "p99_ms": round(report["p99_us"] / 1000, 3),
    }
