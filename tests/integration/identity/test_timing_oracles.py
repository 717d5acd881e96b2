"""Account existence does not show in response times (issue #6: timing oracles).

A black-box tester timed password reset at ~9.6 ms for a known email against ~5.9 ms for an
unknown one, and sign-up ~5 ms slower for a new email than for a taken one. These tests time
the service path in-process (the unit of work, commit included) over many interleaved
samples and compare the two distributions with a Mann-Whitney U test. They fail only on a
difference that is both statistically clear and large enough to matter; one sample's wall
clock time is never compared with a threshold.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from tests.support.api import PASSWORD, Api, register_verified
from tradeguard.identity.common import RequestInfo

SAMPLES = 60  # per path, after warm-up
WARM_UP = 5
# A difference this clear would almost never arise between identical paths (p < 0.001)...
SIGNIFICANCE = 1e-3
# ... and it must also be this large, relative to the median, to count as an oracle. The
# findings were differences of 40-60 %.
MATERIAL_SHIFT = 0.10
REQUEST = RequestInfo(ip="198.51.100.23", user_agent="timing-probe")


@dataclass(frozen=True)
class Comparison:
    p_value: float
    relative_shift: float  # (median a - median b) / median b

    @property
    def distinguishable(self) -> bool:
        return self.p_value < SIGNIFICANCE and abs(self.relative_shift) > MATERIAL_SHIFT


def mann_whitney(a: list[int], b: list[int]) -> float:
    """Two-sided p-value of the Mann-Whitney U test (normal approximation, tie-corrected)."""
    pooled = sorted([(value, 0) for value in a] + [(value, 1) for value in b])
    ranks = [0.0] * len(pooled)
    ties = 0.0
    i = 0
    while i < len(pooled):
        j = i
        while j + 1 < len(pooled) and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        size = j - i + 1
        ties += size**3 - size
        i = j + 1
    n1, n2 = len(a), len(b)
    rank_sum_a = sum(rank for rank, (_, group) in zip(ranks, pooled, strict=True) if group == 0)
    u = rank_sum_a - n1 * (n1 + 1) / 2
    n = n1 + n2
    variance = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    z = (u - n1 * n2 / 2) / math.sqrt(variance)
    return math.erfc(abs(z) / math.sqrt(2))


def compare(a: list[int], b: list[int]) -> Comparison:
    median_b = statistics.median(b)
    return Comparison(mann_whitney(a, b), (statistics.median(a) - median_b) / median_b)


async def interleaved(
    api: Api,
    first: Callable[[AsyncSession, int], Awaitable[object]],
    second: Callable[[AsyncSession, int], Awaitable[object]],
) -> tuple[list[int], list[int]]:
    """Time both paths alternately, in random order within each pair, so that load on the
    machine falls on both alike; the unit of work (and its commit) is inside the timing."""
    rng = random.Random(6)
    timings: tuple[list[int], list[int]] = ([], [])
    for n in range(WARM_UP + SAMPLES):
        order = [0, 1]
        rng.shuffle(order)
        for which in order:
            # A new window each time: quotas are the same for both paths and never refuse.
            api.clock.advance(seconds=25 * 3600)
            action = first if which == 0 else second
            start = time.perf_counter_ns()
            async with api.services.unit_of_work() as session:
                await action(session, n)
            elapsed = time.perf_counter_ns() - start
            if n >= WARM_UP:
                timings[which].append(elapsed)
    return timings


class TestTheHarness:
    def test_identical_samples_are_not_distinguishable(self) -> None:
        rng = random.Random(1)
        a = [int(rng.gauss(5000, 400)) for _ in range(SAMPLES)]
        b = [int(rng.gauss(5000, 400)) for _ in range(SAMPLES)]
        assert not compare(a, b).distinguishable

    def test_the_reported_oracle_is_distinguishable(self) -> None:
        rng = random.Random(2)
        known = [int(rng.gauss(9600, 900)) for _ in range(SAMPLES)]
        unknown = [int(rng.gauss(5900, 900)) for _ in range(SAMPLES)]
        result = compare(known, unknown)
        assert result.distinguishable
        assert result.p_value < 1e-9


class TestPasswordReset:
    @pytest.mark.spec("ATO-3")
    async def test_known_and_unknown_addresses_take_the_same_time(self, api: Api) -> None:
        async with api.client() as client:
            await register_verified(api, client)
        accounts = api.services.accounts

        async def known(session: AsyncSession, _: int) -> None:
            await accounts.request_password_reset(
                session, email="alice@example.com", request=REQUEST
            )

        async def unknown(session: AsyncSession, _: int) -> None:
            await accounts.request_password_reset(
                session, email="nobody@example.com", request=REQUEST
            )

        known_ns, unknown_ns = await interleaved(api, known, unknown)
        result = compare(known_ns, unknown_ns)
        sent = [m for m in await api.outbox() if m["template"] == "password_reset"]
        assert not result.distinguishable, result
        # The equal cost is not bought by skipping the work: every known request sent a link,
        # no unknown one did.
        assert len(sent) == WARM_UP + SAMPLES
        assert {m["to"] for m in sent} == {"alice@example.com"}


class TestRegistration:
    async def test_taken_and_new_addresses_take_the_same_time(self, api: Api) -> None:
        async with api.client() as client:
            await register_verified(api, client)
        accounts = api.services.accounts

        async def taken(session: AsyncSession, n: int) -> None:
            await accounts.register(
                session,
                username=f"taken{n}",
                email="alice@example.com",
                password=PASSWORD,
                request=REQUEST,
            )

        async def new(session: AsyncSession, n: int) -> None:
            await accounts.register(
                session,
                username=f"new{n}",
                email=f"new{n}@example.com",
                password=PASSWORD,
                request=REQUEST,
            )

        taken_ns, new_ns = await interleaved(api, taken, new)
        result = compare(taken_ns, new_ns)
        verifications = [m for m in await api.outbox() if m["template"] == "verify_email"]
        notices = [m for m in await api.outbox() if m["template"] == "register_existing"]
        assert not result.distinguishable, result
        assert len(verifications) == 1 + WARM_UP + SAMPLES  # alice's own, then one per new
        assert "alice@example.com" not in {m["to"] for m in verifications[1:]}
        assert len(notices) == WARM_UP + SAMPLES  # a day passes between samples
