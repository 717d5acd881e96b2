"""Masking rules for personal data in staff views (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradeguard.core.masking import (
    HIDDEN,
    mask_account_number,
    mask_email,
    mask_ip,
    mask_name,
    mask_phone,
    mask_postal_address,
)


class TestMaskEmail:
    @pytest.mark.parametrize(
        ("address", "masked"),
        [
            ("jane@example.com", "j***@e***.com"),
            ("jane.doe@mail.example.co.uk", "j***@m***.uk"),
            ("a@b.io", "a***@b***.io"),
            ("root@localhost", "r***@l***"),
            ("not-an-address", HIDDEN),
            ("@example.com", HIDDEN),
        ],
    )
    def test_keeps_initials_and_the_top_level_domain(self, address: str, masked: str) -> None:
        assert mask_email(address) == masked

    @given(
        st.text(alphabet="abcdefghij.+", min_size=1, max_size=40),
        st.text(alphabet="abcdefghij-", min_size=1, max_size=40),
    )
    def test_the_length_of_what_is_hidden_never_shows(self, local: str, host: str) -> None:
        assert mask_email(f"{local}@{host}.com") == mask_email(f"{local[0]}@{host[0]}.com")


class TestMaskPhone:
    @pytest.mark.parametrize(
        ("number", "masked"),
        [
            ("+14155550123", "+1******0123"),
            ("+447700900123", "+4*******0123"),
            ("+3512345678", "+3*****5678"),
            ("+12", HIDDEN),
        ],
    )
    def test_keeps_the_first_digit_and_the_last_four(self, number: str, masked: str) -> None:
        assert mask_phone(number) == masked


class TestMaskOthers:
    @pytest.mark.parametrize(
        ("address", "masked"),
        [
            ("203.0.113.7", "203.0.*.*"),
            ("2001:db8:85a3::8a2e:370:7334", "2001:db8:*"),
            ("::1", "0:0:*"),
            ("garbage", HIDDEN),
            (None, None),
            ("", None),
        ],
    )
    def test_ip_addresses_keep_only_their_network(
        self, address: str | None, masked: str | None
    ) -> None:
        assert mask_ip(address) == masked

    def test_account_numbers_keep_their_prefix_and_last_four(self) -> None:
        assert mask_account_number("TG12345678") == "TG****5678"
        assert mask_account_number("TG1") == HIDDEN

    def test_names_keep_initials_and_addresses_their_country(self) -> None:
        assert mask_name("Jane Q. Doe") == "J*** Q*** D***"
        assert mask_name("   ") == HIDDEN
        assert mask_postal_address("1 Main St, Springfield, IL 62701, US") == "***, US"
        assert mask_postal_address("somewhere") == HIDDEN
