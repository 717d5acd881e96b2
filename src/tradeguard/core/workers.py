"""Background loops: pacing with a graceful stop, exponential back-off while a pass keeps
failing, and failure logging by state change (failing / recovered) instead of per attempt.

One FailureTracker per component. It turns an outage into three log lines (failing, a new
kind of failure if the cause changes, recovered) and metrics, where logging every attempt
would write a traceback per pass: the ledger sequencer, which passes every 50 ms, once wrote
17 a second against an unreachable database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from tradeguard.core.clock import NS_PER_SECOND, Clock


async def pause(stop: asyncio.Event | None, seconds: float) -> bool:
    """Sleep up to `seconds`, waking early when `stop` is set; True when the loop should end."""
    if stop is None:
        await asyncio.sleep(seconds)
        return False
    if stop.is_set():
        return True
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """Delay before the next attempt: base, 2 x base, 4 x base, ... up to the cap."""

    base_seconds: float = 1.0
    cap_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.base_seconds <= 0 or self.cap_seconds < self.base_seconds:
            raise ValueError("back-off needs 0 < base_seconds <= cap_seconds")

    def delay(self, consecutive_failures: int) -> float:
        """Seconds to wait after the n-th failure in a row (n >= 1)."""
        if consecutive_failures < 1:
            return 0.0
        # The exponent is bounded before it is used: 2.0 ** 2000 would overflow a float.
        exponent = min(consecutive_failures - 1, 64)
        return min(self.cap_seconds, self.base_seconds * 2.0**exponent)


class FailureObserver(Protocol):
    """Where a FailureTracker reports (the Prometheus metrics of the running app)."""

    def failure_recorded(self, component: str) -> None: ...

    def state_changed(self, component: str, *, failing: bool, backoff_seconds: float) -> None: ...


def failure_name(error: BaseException) -> str:
    """The exception's class name: what logs say about a failure (its text may hold a URL,
    a password or SQL parameters, so it is never logged)."""
    return type(error).__name__


class FailureTracker:
    """Consecutive failures of one component, with back-off and state-change logging."""

    def __init__(
        self,
        component: str,
        *,
        logger: logging.Logger,
        clock: Clock,
        policy: BackoffPolicy | None = None,
        observer: FailureObserver | None = None,
        describe: Callable[[BaseException], str | None] | None = None,
    ) -> None:
        """`describe` names failures that are expected in an outage (e.g. "database
        unreachable: ConnectionRefusedError"); those are logged as one line. Anything it
        returns None for is unexpected and gets a traceback, once per change of state."""
        self.component = component
        self._logger = logger
        self._clock = clock
        self._policy = policy or BackoffPolicy()
        self._observer = observer
        self._describe = describe
        self._failures = 0
        self._kind: str | None = None
        self._failing_since_ns = 0

    @property
    def failing(self) -> bool:
        return self._failures > 0

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def failed(self, error: BaseException) -> float:
        """Record a failure; log it if the state or the kind of failure changed. Returns the
        back-off delay before the next attempt."""
        expected = self._describe(error) if self._describe is not None else None
        kind = expected or failure_name(error)
        self._failures += 1
        delay = self._policy.delay(self._failures)
        if self._observer is not None:
            self._observer.failure_recorded(self.component)
        if self._failures == 1:
            self._failing_since_ns = self._clock.monotonic_ns()
        if kind != self._kind:
            verb = "failing" if self._failures == 1 else "still failing, now"
            if expected is not None:
                self._logger.warning(
                    "%s %s: %s; retrying with back-off up to %gs",
                    self.component,
                    verb,
                    kind,
                    self._policy.cap_seconds,
                )
            else:
                self._logger.error(
                    "%s %s: %s; retrying with back-off up to %gs",
                    self.component,
                    verb,
                    kind,
                    self._policy.cap_seconds,
                    exc_info=error,
                )
            self._kind = kind
        if self._observer is not None:
            self._observer.state_changed(self.component, failing=True, backoff_seconds=delay)
        return delay

    def succeeded(self) -> None:
        """Record a success; log the recovery if the component was failing."""
        if not self._failures:
            return
        seconds = (self._clock.monotonic_ns() - self._failing_since_ns) / NS_PER_SECOND
        self._logger.warning(
            "%s recovered after %d failed attempt(s) in %.1fs",
            self.component,
            self._failures,
            seconds,
        )
        self._failures = 0
        self._kind = None
        if self._observer is not None:
            self._observer.state_changed(self.component, failing=False, backoff_seconds=0.0)


async def run_until_stopped(
    one_pass: Callable[[], Awaitable[float]],
    *,
    tracker: FailureTracker,
    stop: asyncio.Event | None = None,
) -> None:
    """Run `one_pass` until `stop` is set (or the task is cancelled).

    `one_pass` returns how long to wait before the next pass (0 to go again at once, e.g.
    after a full batch). A pass that raises is recorded by the tracker and followed by its
    back-off delay instead. Setting `stop` lets the pass in progress finish: cancelling one
    mid-query would leave the database driver's work running after its event loop is gone.
    """
    while stop is None or not stop.is_set():
        try:
            delay = await one_pass()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Deliberately broad: a background loop must outlive any one failed pass.
            delay = tracker.failed(exc)
        else:
            tracker.succeeded()
        if await pause(stop, delay):
            return
