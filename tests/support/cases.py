"""Many cases in one test: one expensive setup, every case still checked and named.

A parametrized test pays its fixtures once per case; a test that loops over its cases pays
them once. ``Cases`` keeps what parametrization gave: every case runs even when an earlier
one fails, and the failure report names each broken case by its id."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class Cases:
    def __init__(self) -> None:
        self.failures: list[str] = []

    @contextmanager
    def case(self, case_id: str) -> Iterator[None]:
        """Run one case; an assertion failing inside is recorded under the case's id."""
        try:
            yield
        except AssertionError as exc:
            self.failures.append(f"[{case_id}] {exc}")

    def check(self) -> None:
        """Fail naming every case that failed."""
        assert not self.failures, "\n\n".join(self.failures)
