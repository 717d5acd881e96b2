"""Login throttling: failure counts per key with exponential back-off, then a lock (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from tradeguard.core.clock import NS_PER_SECOND

WINDOW_SECONDS = 15 * 60
# Failures allowed before any delay: people mistype; attackers need thousands of guesses.
FREE_FAILURES = 2


@dataclass(frozen=True, slots=True)
class ThrottleState:
    failures: int
    window_start_ns: int
    blocked_until_ns: int | None

    def blocked_for_ns(self, now_ns: int) -> int:
        if self.blocked_until_ns is None or self.blocked_until_ns <= now_ns:
            return 0
        return self.blocked_until_ns - now_ns


def delay_seconds(failures: int, *, max_failures: int, lockout_seconds: int) -> int:
    """How long to block after `failures` failures in the window: back-off, then the lock."""
    if failures >= max_failures:
        return lockout_seconds
    if failures > FREE_FAILURES:
        backoff: int = 2 ** min(failures - FREE_FAILURES - 1, 30)
        return min(backoff, lockout_seconds)
    return 0


def after_failure(
    state: ThrottleState | None, *, now_ns: int, max_failures: int, lockout_seconds: int
) -> ThrottleState:
    """Count a failure: back-off doubles from 1 s after the free ones; at the limit, lock."""
    window = WINDOW_SECONDS * NS_PER_SECOND
    if state is None or now_ns - state.window_start_ns > window:
        state = ThrottleState(0, now_ns, None)
    failures = state.failures + 1
    if failures >= max_failures:
        delay = lockout_seconds
    elif failures > FREE_FAILURES:
        delay = min(2 ** (failures - FREE_FAILURES - 1), lockout_seconds)
    else:
        delay = 0
    blocked = now_ns + delay * NS_PER_SECOND if delay else None
    return ThrottleState(failures, state.window_start_ns, blocked)
