"""Back-off, failure-state logging and the shared background loop (core/workers.py)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.failures import SignallingObserver
from tradeguard.core.clock import FrozenClock
from tradeguard.core.workers import BackoffPolicy, FailureTracker, pause, run_until_stopped

LOGGER = "tests.workers"


class ConnectionTrouble(OSError):
    """Stands in for a driver's network error; its text holds what must never be logged."""


def tracker(
    clock: FrozenClock, observer: SignallingObserver | None = None, **policy: float
) -> FailureTracker:
    return FailureTracker(
        "sequencer",
        logger=logging.getLogger(LOGGER),
        clock=clock,
        policy=BackoffPolicy(**policy) if policy else BackoffPolicy(1.0, 8.0),
        observer=observer,
        describe=lambda error: (
            f"database unreachable: {type(error).__name__}"
            if isinstance(error, ConnectionTrouble)
            else None
        ),
    )


def lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == LOGGER]


class TestBackoffPolicy:
    def test_delays_double_from_the_base_up_to_the_cap(self) -> None:
        policy = BackoffPolicy(base_seconds=0.5, cap_seconds=30)
        assert [policy.delay(n) for n in range(1, 10)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]

    @given(st.integers(min_value=1, max_value=10**9))
    def test_no_delay_ever_exceeds_the_cap_even_after_endless_failures(self, n: int) -> None:
        policy = BackoffPolicy(base_seconds=0.05, cap_seconds=30)
        assert 0.05 <= policy.delay(n) <= 30

    @pytest.mark.parametrize(("base", "cap"), [(0, 1), (-1, 1), (2, 1)])
    def test_a_policy_that_cannot_back_off_is_refused(self, base: float, cap: float) -> None:
        with pytest.raises(ValueError, match="back-off"):
            BackoffPolicy(base_seconds=base, cap_seconds=cap)


class TestFailureTracker:
    def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(
        self, clock: FrozenClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO, LOGGER)
        tracked = tracker(clock)
        delays = []
        for _ in range(5):
            delays.append(tracked.failed(ConnectionTrouble("postgres://admin:hunter2@db:5432")))
            clock.advance(seconds=delays[-1])
        tracked.succeeded()
        tracked.succeeded()
        assert delays == [1, 2, 4, 8, 8]
        failing, recovered = lines(caplog)
        assert failing.levelno == logging.WARNING
        assert failing.getMessage() == (
            "sequencer failing: database unreachable: ConnectionTrouble; "
            "retrying with back-off up to 8s"
        )
        assert failing.exc_info is None
        assert recovered.getMessage() == "sequencer recovered after 5 failed attempt(s) in 23.0s"
        assert "hunter2" not in caplog.text

    def test_a_new_kind_of_failure_during_an_outage_gets_its_own_line(
        self, clock: FrozenClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO, LOGGER)
        tracked = tracker(clock)
        tracked.failed(ConnectionTrouble())
        tracked.failed(ConnectionTrouble())
        tracked.failed(TimeoutError())
        tracked.failed(TimeoutError())
        first, second = lines(caplog)
        assert first.getMessage().startswith("sequencer failing: database unreachable:")
        assert second.getMessage().startswith("sequencer still failing, now: TimeoutError")

    def test_an_unexpected_failure_is_logged_with_its_traceback_once(
        self, clock: FrozenClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        tracked = tracker(clock)
        for _ in range(3):
            try:
                raise KeyError("bug")
            except KeyError as error:
                tracked.failed(error)
        (logged,) = lines(caplog)
        assert logged.levelno == logging.ERROR
        assert logged.getMessage().startswith("sequencer failing: KeyError")
        assert logged.exc_info is not None

    def test_success_without_a_failure_logs_nothing(
        self, clock: FrozenClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO, LOGGER)
        tracked = tracker(clock)
        tracked.succeeded()
        assert lines(caplog) == []
        assert not tracked.failing

    def test_the_observer_sees_each_failure_and_each_change_of_state(
        self, clock: FrozenClock
    ) -> None:
        observer = SignallingObserver()
        tracked = tracker(clock, observer)
        tracked.failed(ConnectionTrouble())
        tracked.failed(ConnectionTrouble())
        assert (observer.failures, observer.failing) == (2, True)
        assert tracked.consecutive_failures == 2
        tracked.succeeded()
        assert (observer.failures, observer.failing) == (2, False)
        assert tracked.consecutive_failures == 0


class TestRunUntilStopped:
    async def test_failed_passes_are_retried_after_the_back_off_and_success_resets_it(
        self, clock: FrozenClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO, LOGGER)
        observer = SignallingObserver()
        tracked = tracker(clock, observer, base_seconds=0.001, cap_seconds=0.002)
        outcomes = [ConnectionTrouble(), ConnectionTrouble(), ConnectionTrouble(), None, None]
        stop = asyncio.Event()
        passes = 0

        async def one_pass() -> float:
            nonlocal passes
            passes += 1
            outcome = outcomes.pop(0) if outcomes else None
            if outcome is not None:
                raise outcome
            if not outcomes:
                stop.set()
            return 0.0

        async with asyncio.timeout(10):
            await run_until_stopped(one_pass, tracker=tracked, stop=stop)
        assert passes == 5
        assert observer.failures == 3
        assert not tracked.failing
        assert [r.getMessage().split(":")[0] for r in lines(caplog)] == [
            "sequencer failing",
            "sequencer recovered after 3 failed attempt(s) in 0.0s",
        ]

    async def test_a_stop_set_beforehand_ends_the_loop_after_the_pass_in_progress(
        self, clock: FrozenClock
    ) -> None:
        stop = asyncio.Event()
        passes = 0

        async def one_pass() -> float:
            nonlocal passes
            passes += 1
            stop.set()
            return 3600.0

        async with asyncio.timeout(10):
            await run_until_stopped(one_pass, tracker=tracker(clock), stop=stop)
        assert passes == 1

    async def test_cancellation_is_not_mistaken_for_a_failed_pass(self, clock: FrozenClock) -> None:
        observer = SignallingObserver()
        started = asyncio.Event()

        async def one_pass() -> float:
            started.set()
            await asyncio.sleep(3600)
            return 0.0

        task = asyncio.create_task(run_until_stopped(one_pass, tracker=tracker(clock, observer)))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert observer.failures == 0

    async def test_pause_returns_at_once_when_stop_is_already_set(self) -> None:
        stop = asyncio.Event()
        stop.set()
        async with asyncio.timeout(1):
            assert await pause(stop, 3600) is True
