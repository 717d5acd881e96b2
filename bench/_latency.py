"""Per-call latency samples and their summary (stdlib only: the Nautilus venv imports it too).

Two clocks: wall time (`perf_counter_ns`), what an order waits, including any time the
process was descheduled; and thread CPU time (`thread_time_ns`), the work the call itself
did, which other processes on a shared machine cannot inflate. Each clock's own cost,
measured as the median empty timed region, is subtracted from every sample.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

CLOCKS: dict[str, Callable[[], int]] = {"wall": time.perf_counter_ns, "cpu": time.thread_time_ns}


def clock_overhead_ns(clock: Callable[[], int], samples: int = 20_001) -> int:
    """Median cost of reading the clock twice around nothing."""
    costs = []
    for _ in range(samples):
        started = clock()
        costs.append(clock() - started)
    return int(statistics.median(costs))


def summarize(samples: list[int], overhead_ns: int) -> dict[str, float]:
    """p50, p99 and mean in microseconds, the clock's own cost taken out."""
    ordered = sorted(max(sample - overhead_ns, 0) for sample in samples)
    count = len(ordered)
    return {
        "samples": count,
        "p50_us": round(ordered[count // 2] / 1000, 3),
        "p99_us": round(ordered[min(count - 1, int(count * 0.99))] / 1000, 3),
        "mean_us": round(sum(ordered) / count / 1000, 3),
        "clock_overhead_us": round(overhead_ns / 1000, 3),
    }
