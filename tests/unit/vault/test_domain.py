"""PAN validation, expiry and security-code rules, tokens and masking (vault/domain.py)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.cards import AMEX, TEST_PANS, VISA
from tradeguard.core.clock import FrozenClock
from tradeguard.vault.domain import (
    CardBrand,
    InvalidCardNumber,
    InvalidCardSecret,
    InvalidExpiry,
    PanProblem,
    RevealedCard,
    TokenFormat,
    brand_of,
    loggable_token,
    luhn_valid,
    mask_card,
    new_token,
    parse_card_secret,
    parse_expiry,
    parse_pan,
    token_shape_valid,
)

NOW = FrozenClock().now_ns()  # 2026-01-01


def refused(raw: str) -> InvalidCardNumber:
    with pytest.raises(InvalidCardNumber) as caught:
        parse_pan(raw)
    return caught.value


def with_check_digit(body: str) -> str:
    """`body` completed with the digit that makes it Luhn-valid."""
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


class TestPanValidation:
    @pytest.mark.spec("PCI-2")
    @pytest.mark.parametrize(("pan", "brand"), sorted(TEST_PANS.items()))
    def test_every_published_test_pan_is_accepted_with_its_brand(
        self, pan: str, brand: CardBrand
    ) -> None:
        card = parse_pan(pan)
        assert card.brand is brand
        assert card.digits == pan
        assert card.last4 == pan[-4:]

    @pytest.mark.parametrize(
        "typed", ["4111 1111 1111 1111", "4111-1111-1111-1111", " 4111111111111111 "]
    )
    def test_spaces_and_dashes_between_groups_are_allowed(self, typed: str) -> None:
        assert parse_pan(typed).digits == VISA

    @pytest.mark.spec("PCI-2")
    def test_a_single_mistyped_digit_fails_the_check_digit(self) -> None:
        for position in range(len(VISA)):
            digit = int(VISA[position])
            wrong = VISA[:position] + str((digit + 1) % 10) + VISA[position + 1 :]
            assert refused(wrong).problem is PanProblem.CHECKSUM

    def test_two_swapped_adjacent_digits_fail_the_check_digit(self) -> None:
        # Luhn catches every swap of two different adjacent digits except 09 <-> 90.
        pan = "4012888888881881"
        for i in range(1, len(pan) - 1):
            a, b = pan[i], pan[i + 1]
            if a == b or {a, b} == {"0", "9"}:
                continue
            swapped = pan[:i] + b + a + pan[i + 2 :]
            assert refused(swapped).problem is PanProblem.CHECKSUM

    @pytest.mark.parametrize(
        "raw",
        [
            "4111111111111111a",
            "4111.1111.1111.1111",
            "4111_1111_1111_1111",
            "4111111111111111\x00",
            "٤١١١١١١١١١١١١١١١",  # Arabic-Indic digits: isdigit() says yes, we say no
            "４１１１１１１１１１１１１１１１",  # fullwidth digits
            "+4111111111111111",
            "4111111111111111;DROP TABLE",
        ],
    )
    def test_anything_but_ascii_digits_spaces_and_dashes_is_refused(self, raw: str) -> None:
        assert refused(raw).problem is PanProblem.NOT_DIGITS

    @pytest.mark.parametrize("raw", ["", "   ", "- -"])
    def test_an_empty_number_is_refused(self, raw: str) -> None:
        assert refused(raw).problem in {PanProblem.EMPTY, PanProblem.LENGTH}

    @pytest.mark.parametrize("digits", [1, 11, 20, 25])
    def test_numbers_outside_12_to_19_digits_are_refused(self, digits: int) -> None:
        raw = with_check_digit("4" * (digits - 1)) if digits > 1 else "4"
        assert refused(raw).problem is PanProblem.LENGTH

    def test_huge_input_is_refused_before_it_is_scanned(self) -> None:
        assert refused("4" * 10_000_000).problem is PanProblem.TOO_LONG_INPUT

    def test_a_valid_checksum_outside_every_brand_is_refused(self) -> None:
        for prefix in ("1", "7", "9", "5000", "2000", "2721"):
            raw = with_check_digit(prefix + "0" * (15 - len(prefix)))
            assert refused(raw).problem is PanProblem.UNKNOWN_BRAND

    def test_a_brand_with_the_wrong_length_is_refused(self) -> None:
        assert refused(with_check_digit("3782822463100")).problem is PanProblem.BRAND_LENGTH
        assert refused(with_check_digit("55555555555544")).problem is PanProblem.BRAND_LENGTH
        assert refused(with_check_digit("41111111111111")).problem is PanProblem.BRAND_LENGTH

    @pytest.mark.spec("PCI-2")
    def test_no_error_repeats_the_number_or_its_digits(self) -> None:
        for raw in (
            "4111111111111112",
            "41111111111111111111",
            "4111-1111-1111-111x",
            with_check_digit("9" * 15),
            with_check_digit("3782822463100"),
        ):
            error = refused(raw)
            text = " ".join([str(error), error.detail, repr(error), repr(error.to_problem())])
            assert raw not in text
            assert raw[-4:] not in text
            assert not re.search(r"\d{6,}", text)

    def test_mastercard_two_series_bounds(self) -> None:
        assert brand_of("2221000000000009") is CardBrand.MASTERCARD
        assert brand_of("2720990000000007") is CardBrand.MASTERCARD
        assert brand_of("2220990000000000") is None
        assert brand_of("2721000000000000") is None

    def test_a_card_number_never_prints(self) -> None:
        card = parse_pan(VISA)
        assert VISA not in repr(card)
        assert VISA not in str(card)
        assert VISA not in f"{card}"

    @given(st.text(max_size=60))
    @settings(max_examples=300)
    def test_any_text_is_either_a_valid_card_or_refused_without_being_repeated(
        self, raw: str
    ) -> None:
        try:
            card = parse_pan(raw)
        except InvalidCardNumber as error:
            refusal: InvalidCardNumber | None = error
        else:
            refusal = None
            assert luhn_valid(card.digits)
            assert brand_of(card.digits) is card.brand
        digits = "".join(c for c in raw if c in "0123456789")
        if refusal is not None and len(digits) >= 6:
            assert digits not in refusal.detail


class TestExpiryAndSecurityCode:
    def test_the_current_month_is_still_valid_and_last_month_is_expired(self) -> None:
        assert parse_expiry(1, 2026, now_ns=NOW).label() == "01/26"
        with pytest.raises(InvalidExpiry):
            parse_expiry(12, 2025, now_ns=NOW)

    def test_two_digit_years_mean_this_century(self) -> None:
        assert parse_expiry(7, 29, now_ns=NOW).year == 2029

    @pytest.mark.parametrize(("month", "year"), [(0, 2027), (13, 2027), (5, 2099), (5, 1999)])
    def test_impossible_dates_are_refused(self, month: int, year: int) -> None:
        with pytest.raises(InvalidExpiry):
            parse_expiry(month, year, now_ns=NOW)

    @pytest.mark.spec("PCI-2")
    def test_security_code_is_three_digits_or_four_for_amex(self) -> None:
        assert parse_card_secret("123", CardBrand.VISA).value == "123"
        assert parse_card_secret("1234", CardBrand.AMEX).value == "1234"
        for raw, brand in [
            ("1234", CardBrand.VISA),
            ("123", CardBrand.AMEX),
            ("12a", CardBrand.VISA),
            ("١٢٣", CardBrand.VISA),
            ("", CardBrand.MASTERCARD),
        ]:
            with pytest.raises(InvalidCardSecret) as caught:
                parse_card_secret(raw, brand)
            assert raw not in caught.value.detail or not raw

    def test_a_security_code_never_prints(self) -> None:
        secret = parse_card_secret("737", CardBrand.VISA)
        assert "737" not in repr(secret)
        assert "737" not in str(secret)


class TestTokens:
    @pytest.mark.spec("PCI-2")
    def test_opaque_tokens_are_random_and_unrelated_to_the_card(self) -> None:
        card = parse_pan(VISA)
        tokens = {new_token(card, TokenFormat.OPAQUE) for _ in range(2000)}
        assert len(tokens) == 2000
        for token in tokens:
            assert re.fullmatch(r"tok_[a-z2-7]{26}", token)
            assert VISA not in token
            assert token_shape_valid(token)

    @pytest.mark.spec("PCI-2")
    @pytest.mark.parametrize("pan", sorted(TEST_PANS))
    def test_format_preserving_tokens_keep_length_and_last_four_and_pass_luhn(
        self, pan: str
    ) -> None:
        card = parse_pan(pan)
        for token_format in (TokenFormat.LUHN_T_FOUR, TokenFormat.LUHN_SIX_T_FOUR):
            for _ in range(50):
                token = new_token(card, token_format)
                assert len(token) == len(pan)
                assert token[-4:] == pan[-4:]
                assert luhn_valid(token)
                assert token != pan
                assert token_shape_valid(token)
                if token_format is TokenFormat.LUHN_SIX_T_FOUR:
                    assert token[:6] == pan[:6]

    @pytest.mark.spec("PCI-2")
    def test_tokens_of_the_same_card_differ_and_do_not_depend_on_the_card(self) -> None:
        """Non-derivability: the middle digits of format-preserving tokens are spread over
        every value, whatever the card (a function of the PAN would repeat)."""
        card = parse_pan(VISA)
        middles = [new_token(card, TokenFormat.LUHN_T_FOUR)[:11] for _ in range(3000)]
        assert len(set(middles)) > 2990
        counts = [sum(m[0] == str(d) for m in middles) for d in range(10)]
        assert min(counts) > 200  # each leading digit about 300 times

    def test_loggable_token_names_digit_tokens_only_once_confirmed(self) -> None:
        assert loggable_token(VISA, confirmed=False) is None
        assert loggable_token(VISA, confirmed=True) == VISA
        assert loggable_token("tok_" + "a" * 26, confirmed=False) == "tok_" + "a" * 26
        assert loggable_token("x" * 500, confirmed=True) is None

    def test_masking_shows_the_last_four_only(self) -> None:
        assert mask_card(AMEX[-4:]) == "***0005"

    def test_a_revealed_card_does_not_print_its_number(self) -> None:
        revealed = RevealedCard("tok_x", VISA, CardBrand.VISA, parse_expiry(1, 2030, now_ns=NOW))
        assert VISA not in repr(revealed)
        assert VISA not in str(revealed)
