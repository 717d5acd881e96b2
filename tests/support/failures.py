"""Awaiting a FailureTracker's state in tests, without polling."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from tradeguard.web.metrics import ComponentMetrics

WAIT_SECONDS = 10


class SignallingObserver:
    """Forwards to the real ComponentMetrics and wakes tests waiting for a state."""

    def __init__(self, metrics: ComponentMetrics | None = None) -> None:
        self._metrics = metrics
        self.failures = 0
        self.failing = False
        self._waiters: list[tuple[Callable[[], bool], asyncio.Event]] = []

    def failure_recorded(self, component: str) -> None:
        self.failures += 1
        if self._metrics is not None:
            self._metrics.failure_recorded(component)
        self._wake()

    def state_changed(self, component: str, *, failing: bool, backoff_seconds: float) -> None:
        self.failing = failing
        if self._metrics is not None:
            self._metrics.state_changed(component, failing=failing, backoff_seconds=backoff_seconds)
        self._wake()

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        """Return once `condition()` holds (checked on every report), or fail after a bound."""
        if condition():
            return
        event = asyncio.Event()
        self._waiters.append((condition, event))
        async with asyncio.timeout(WAIT_SECONDS):
            await event.wait()

    def _wake(self) -> None:
        for condition, event in self._waiters:
            if condition():
                event.set()


class LogLineWaiter(logging.Handler):
    """Sets `seen` once a record containing each wanted fragment was logged."""

    def __init__(self, *fragments: str) -> None:
        super().__init__()
        self._pending = set(fragments)
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self._pending = {fragment for fragment in self._pending if fragment not in message}
        if not self._pending:
            self.seen.set()
