"""Usernames are stored and shown in clear: a long number (a card, tax id or phone number
typed into the wrong field) is refused without being repeated."""

from __future__ import annotations

import pytest

from tradeguard.core.errors import InvalidInput
from tradeguard.identity.service import normalize_username


class TestNormalizeUsername:
    @pytest.mark.parametrize(
        "raw",
        [
            "4111111111111111",
            "4111-1111-1111-1111",
            "4111.1111.1111.1111",
            "078-05-1120",
            "078051120",
            "14155550123",
            "_378282246310005_",
        ],
    )
    def test_a_long_number_is_refused_without_being_echoed(self, raw: str) -> None:
        with pytest.raises(InvalidInput) as refused:
            normalize_username(raw)
        assert raw not in str(refused.value.to_problem())

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("Alice", "alice"),
            ("trader42", "trader42"),
            ("12345678", "12345678"),  # eight digits: not a card, tax id or phone number
            ("bob-2026-01-05", "bob-2026-01-05"),
        ],
    )
    def test_ordinary_names_pass(self, raw: str, expected: str) -> None:
        assert normalize_username(raw) == expected
