"""Injectable nanosecond clock: production reads the system, tests freeze and advance it."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Protocol

NS_PER_SECOND = 1_000_000_000


class Clock(Protocol):
    """Source of time for everything in tradeguard; never call time.time() directly."""

    def now_ns(self) -> int:
        """Wall-clock time in nanoseconds since the Unix epoch (UTC)."""
        ...

    def monotonic_ns(self) -> int:
        """A monotonic reading for measuring intervals; unrelated to the epoch."""
        ...


class SystemClock:
    """The real clock."""

    def now_ns(self) -> int:
        return time.time_ns()

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()


class FrozenClock:
    """A clock that only moves when told to; for tests and deterministic replays."""

    def __init__(self, start_ns: int = 1_767_225_600 * NS_PER_SECOND) -> None:
        # Default start: 2026-01-01T00:00:00Z, a fixed point so test output is stable.
        self._now = start_ns
        self._lock = threading.Lock()

    def now_ns(self) -> int:
        with self._lock:
            return self._now

    def monotonic_ns(self) -> int:
        return self.now_ns()

    def advance(self, *, seconds: float = 0, ns: int = 0) -> None:
        """Move time forward; never backward."""
        delta = int(seconds * NS_PER_SECOND) + ns
        if delta < 0:
            raise ValueError("a clock never moves backward")
        with self._lock:
            self._now += delta


def ns_to_datetime(ns: int) -> datetime:
    """Convert epoch nanoseconds to an aware UTC datetime (microsecond precision)."""
    return datetime.fromtimestamp(ns / NS_PER_SECOND, tz=UTC)


def ns_to_iso(ns: int) -> str:
    """RFC 3339 UTC timestamp with all nine nanosecond digits."""
    seconds, frac = divmod(ns, NS_PER_SECOND)
    base = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac:09d}Z"
