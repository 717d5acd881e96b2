"""Field references, access-log actions, stated reasons and staff pseudonyms (pure)."""

from __future__ import annotations

import pytest

from tradeguard.backoffice.domain import (
    ACTION_TEXT,
    FIELD_TEXT,
    REASON_MAX_CHARS,
    STAFF_ACCOUNT_ACTIONS,
    AccessAction,
    FieldKind,
    parse_field,
    staff_pseudonym,
    stated_reason,
)
from tradeguard.core.errors import InvalidInput
from tradeguard.trading.domain import StaffAccountAction

SAMPLE_ID = "0190a3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b"


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
            # Names the account a staff trading action was on: nothing there to reveal.
            f"trading_account:{SAMPLE_ID}",
        ],
    )
    def test_anything_else_is_refused(self, raw: str) -> None:
        with pytest.raises(InvalidInput):
            parse_field(raw)

    def test_every_kind_has_text_for_the_customer(self) -> None:
        assert set(FIELD_TEXT) == set(FieldKind)


class TestAccessActions:
    def test_every_action_has_text_for_the_customer(self) -> None:
        assert set(ACTION_TEXT) == set(AccessAction)
        assert all(ACTION_TEXT.values())

    def test_every_staff_trading_action_is_its_own_entry_in_the_log(self) -> None:
        assert set(STAFF_ACCOUNT_ACTIONS) == set(StaffAccountAction)
        assert len(set(STAFF_ACCOUNT_ACTIONS.values())) == len(StaffAccountAction)
        # Both sides name an action by the same stable string clients branch on.
        assert all(staff.value == log.value for staff, log in STAFF_ACCOUNT_ACTIONS.items())


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
