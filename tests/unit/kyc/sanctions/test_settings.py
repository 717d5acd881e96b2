"""Sanctions settings that could never work are refused at start."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tradeguard.config import Settings


def test_a_review_threshold_above_the_block_threshold_is_refused() -> None:
    with pytest.raises(ValidationError, match="sanctions_review_threshold"):
        Settings(sanctions_block_threshold=0.8, sanctions_review_threshold=0.9, _env_file=None)  # type: ignore[call-arg]


@pytest.mark.parametrize("value", [0, 1.5, -0.1])
def test_thresholds_are_scores_between_0_and_1(value: float) -> None:
    with pytest.raises(ValidationError):
        Settings(sanctions_block_threshold=value, _env_file=None)  # type: ignore[call-arg]


def test_the_defaults_are_watchmans() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (settings.sanctions_block_threshold, settings.sanctions_review_threshold) == (
        0.95,
        0.85,
    )
    assert settings.sanctions_list_source is None
