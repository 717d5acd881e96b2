"""Kernel: clock, ids, money, errors."""

from __future__ import annotations

import os
import uuid
import warnings
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradeguard.core.clock import FrozenClock, SystemClock, ns_to_iso
from tradeguard.core.errors import InvalidInput, NotFound
from tradeguard.core.ids import IdGenerator
from tradeguard.core.money import Money, quantity, to_decimal


class TestFrozenClock:
    def test_advances_only_when_told(self) -> None:
        clock = FrozenClock(start_ns=10)
        clock.advance(seconds=1, ns=5)
        assert clock.now_ns() == 1_000_000_015

    def test_refuses_to_move_backward(self) -> None:
        with pytest.raises(ValueError, match="backward"):
            FrozenClock().advance(ns=-1)

    def test_iso_format_keeps_all_nine_nanosecond_digits(self) -> None:
        assert ns_to_iso(1_767_225_600_000_000_007) == "2026-01-01T00:00:00.000000007Z"

    def test_system_clock_reads_nanoseconds(self) -> None:
        assert SystemClock().now_ns() > 1_700_000_000 * 10**9


class TestIdGenerator:
    def test_ids_are_version_7_and_strictly_increasing_within_a_millisecond(self) -> None:
        ids = IdGenerator(FrozenClock())
        made = [ids.new() for _ in range(5000)]
        assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in made)
        assert made == sorted(made, key=lambda u: u.int)
        assert len(set(made)) == len(made)

    def test_the_string_form_is_the_canonical_uuid_text(self) -> None:
        made = IdGenerator(FrozenClock()).new_str()
        assert str(uuid.UUID(made)) == made
        assert uuid.UUID(made).version == 7

    def test_timestamp_field_comes_from_the_injected_clock(self) -> None:
        clock = FrozenClock(start_ns=1_700_000_000_123_000_000)
        assert IdGenerator(clock).new().int >> 80 == 1_700_000_000_123

    def test_random_bits_differ_across_generators_and_pool_refills(self) -> None:
        clock = FrozenClock()
        first, second = IdGenerator(clock), IdGenerator(clock)
        # Many pools' worth: every id's 62 random bits are new.
        made = [first.new().int & ((1 << 62) - 1) for _ in range(3000)]
        made += [second.new().int & ((1 << 62) - 1) for _ in range(3000)]
        assert len(set(made)) == len(made)

    def test_a_forked_child_never_draws_its_parents_random_bits(self) -> None:
        ids = IdGenerator(FrozenClock())
        ids.new()  # the pool is filled
        read, write = os.pipe()
        with warnings.catch_warnings():
            # Python 3.12 warns that forking a threaded process may deadlock; the child only
            # draws an id and exits.
            warnings.simplefilter("ignore", DeprecationWarning)
            child = os.fork()
        if child == 0:  # pragma: no cover - runs in the child
            os.write(write, ids.new().bytes)
            os._exit(0)
        os.close(write)
        _, status = os.waitpid(child, 0)
        from_child = os.read(read, 16)
        os.close(read)
        assert os.waitstatus_to_exitcode(status) == 0
        assert from_child != ids.new().bytes


class TestMoney:
    @pytest.mark.parametrize("bad", [0.1, float("nan"), "NaN", "Infinity", "abc", None, True])
    def test_refuses_floats_and_non_numbers(self, bad: object) -> None:
        with pytest.raises(InvalidInput):
            Money.of(bad)

    def test_refuses_more_places_than_the_currency_allows(self) -> None:
        with pytest.raises(InvalidInput, match="decimal places"):
            Money.of("1.005", "USD")

    def test_refuses_mixing_currencies(self) -> None:
        with pytest.raises(InvalidInput, match="different currencies"):
            _ = Money.of("1", "USD") + Money.of("1", "EUR")

    @given(st.decimals(min_value=-(10**9), max_value=10**9, places=2, allow_nan=False))
    def test_addition_and_subtraction_are_exact(self, amount: Decimal) -> None:
        one = Money.of(amount)
        assert (one + one - one).amount == one.amount

    def test_quantity_must_be_positive_with_at_most_six_places(self) -> None:
        assert quantity("0.000001") == Decimal("0.000001")
        for bad in ("0", "-1", "0.0000001"):
            with pytest.raises(InvalidInput):
                quantity(bad)

    def test_to_decimal_accepts_ints_and_strings(self) -> None:
        assert to_decimal(5, field="x") == Decimal(5)
        assert to_decimal("5.10", field="x") == Decimal("5.10")


class TestErrors:
    def test_problem_details_carry_rfc9457_members(self) -> None:
        problem = NotFound("no such order", order="o1").to_problem(instance="/x")
        assert problem == {
            "type": "https://tradeguard.dev/problems/not-found",
            "title": "Not found",
            "status": 404,
            "detail": "no such order",
            "instance": "/x",
            "order": "o1",
        }
