"""Masking rules, field references, stated reasons and staff pseudonyms (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradeguard.backoffice.domain import (
    REASON_MAX_CHARS,
    FieldKind,
    parse_field,
    staff_pseudonym,
    stated_reason,
)
from tradeguard.backoffice.masking import (
    HIDDEN,
    mask_account_number,
    mask_email,
    mask_ip,
    mask_name,
    mask_phone,
    mask_postal_address,
)
from tradeguard.core.errors import InvalidInput

SAMPLE_ID = "0190a3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b"


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


class TestFields:
    def test_a_field_names_its_kind_and_owner(self) -> None:
        assert parse_field("email").kind is FieldKind.EMAIL
        ref = parse_field(f"phone:{SAMPLE_ID}")
        assert (ref.kind, ref.owner_id, ref.name) == (
            FieldKind.PHONE,
            SAMPLE_ID,
            f"phone:{SAMPLE_ID}",
        )

    @pytest.mark.parametrize(
        "raw",
        [
            "password",
            "email:x",
            f"email:{SAMPLE_ID}",
            "phone:",
            f"PHONE:{SAMPLE_ID}",
            f"sms:{SAMPLE_ID}",
        ],
    )
    def test_anything_else_is_refused(self, raw: str) -> None:
        with pytest.raises(InvalidInput):
            parse_field(raw)


class TestReasons:
    def test_a_reason_becomes_one_line_of_plain_text(self) -> None:
        assert stated_reason("  Ticket <b>4711</b>:\n\tconfirm  address ") == (
            "Ticket 4711 : confirm address"
        )

    @pytest.mark.parametrize("raw", ["", "short", "<a href=x></a>" * 3, "\u202e\u202d" * 20])
    def test_too_little_text_is_refused(self, raw: str) -> None:
        with pytest.raises(InvalidInput):
            stated_reason(raw)

    @pytest.mark.parametrize(
        "raw", ["..........", "aaaaaaaaaaaa", "1234567890123", "ab ab ab ab ab", "justoneword!!"]
    )
    def test_junk_that_says_nothing_is_refused(self, raw: str) -> None:
        # The reason is shown to the customer in their access log: it must say something.
        with pytest.raises(InvalidInput, match="real reason"):
            stated_reason(raw)

    def test_a_long_reason_is_cut_to_its_limit(self) -> None:
        assert len(stated_reason("word " * 400)) <= REASON_MAX_CHARS


class TestPseudonyms:
    def test_stable_per_actor_and_key_and_distinct_between_actors(self) -> None:
        key = b"k" * 32
        first = staff_pseudonym(key, "staff:a")
        assert first == staff_pseudonym(key, "staff:a")
        assert first != staff_pseudonym(key, "staff:b")
        assert first != staff_pseudonym(b"x" * 32, "staff:a")
        assert len(first) == 8
        assert first.isalnum()
