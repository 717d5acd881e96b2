"""Card numbers and tax ids inside free text (PCI DSS 3.5.1): found as people write them,
while identifiers, dates and amounts are left alone."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradeguard.core.sensitive import luhn_valid, mask_sensitive_text, scrub_value


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("card 4111111111111111", "card [REDACTED-PAN]"),
        ("card 4111 1111 1111 1111.", "card [REDACTED-PAN]."),
        ("5105.1051.0510.5100", "[REDACTED-PAN]"),
        ("5555-5555-5555-4444 and 378282246310005", "[REDACTED-PAN] and [REDACTED-PAN]"),
        ("4111111111111111 12", "[REDACTED-PAN] 12"),  # a card, then its month
        ("GET /x/4111111111111111 404", "GET /x/[REDACTED-PAN] 404"),
        ("SSN 078-05-1120, EIN 12-3456789", "SSN [REDACTED-TAX-ID], EIN [REDACTED-TAX-ID]"),
    ],
)
def test_card_numbers_and_tax_ids_are_masked(text: str, masked: str) -> None:
    assert mask_sensitive_text(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "event 0190c5a0-0000-7000-8000-000000000001",
        "account TG83917868",
        "price 187.25 qty 100 at 2026-01-05 15:00",
        "order 4111111111111112 (fails Luhn)",
        "ts 1767625200000000000",
        "call 415-555-0100",
        "id x8000000000000001",
    ],
)
def test_identifiers_dates_and_amounts_are_kept(text: str) -> None:
    assert mask_sensitive_text(text) == text


def test_nested_values_are_scrubbed_and_keys_kept() -> None:
    value = {"reason": "card 4111111111111111", "items": ["078-05-1120", 3], "n": 1}
    assert scrub_value(value) == {
        "reason": "card [REDACTED-PAN]",
        "items": ["[REDACTED-TAX-ID]", 3],
        "n": 1,
    }


@given(st.text(alphabet="0123456789", min_size=12, max_size=18))
def test_any_luhn_valid_card_in_a_sentence_is_masked(prefix: str) -> None:
    for check in "0123456789":
        pan = prefix + check
        if luhn_valid(pan):
            text = f"charged {pan} today"
            assert pan not in mask_sensitive_text(text)
            return
