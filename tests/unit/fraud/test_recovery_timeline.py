"""Account recovery's pure rules (ATO-3): the caller's statements against the record, and
ledger events as plain-language timeline entries with masked addresses."""

from __future__ import annotations

from datetime import date

import pytest

from tradeguard.core.masking import HIDDEN
from tradeguard.fraud.timeline import (
    Category,
    MarkKind,
    StatedIdentity,
    describe,
    mark_kind,
    record_matches,
)

RECORD = {"birth_date": date(1985, 4, 12), "postal_code": "SW1A 1AA", "tax_id_last4": "6789"}


class TestRecordMatches:
    @pytest.mark.spec("ATO-3")
    def test_all_three_matching_verifies_whatever_the_postal_code_spelling(self) -> None:
        for postal in ("SW1A 1AA", "sw1a1aa", "SW1A-1AA", " sw1a 1aa "):
            stated = StatedIdentity(date(1985, 4, 12), postal, "6789")
            assert record_matches(stated, **RECORD)

    @pytest.mark.spec("ATO-3")
    @pytest.mark.parametrize(
        "stated",
        [
            StatedIdentity(date(1985, 4, 13), "SW1A 1AA", "6789"),
            StatedIdentity(date(1985, 4, 12), "SW1A 1AB", "6789"),
            StatedIdentity(date(1985, 4, 12), "SW1A 1AA", "6788"),
            StatedIdentity(date(1985, 4, 12), "", "6789"),
        ],
    )
    def test_any_field_wrong_fails(self, stated: StatedIdentity) -> None:
        assert not record_matches(stated, **RECORD)

    def test_a_field_missing_from_the_record_never_matches(self) -> None:
        stated = StatedIdentity(date(1985, 4, 12), "SW1A 1AA", "6789")
        assert not record_matches(
            stated, birth_date=None, postal_code="SW1A 1AA", tax_id_last4="6789"
        )
        assert not record_matches(
            stated, birth_date=date(1985, 4, 12), postal_code=None, tax_id_last4="6789"
        )
        assert not record_matches(
            stated, birth_date=date(1985, 4, 12), postal_code="SW1A 1AA", tax_id_last4=None
        )


class TestDescribe:
    def test_an_execution_reads_plainly_with_its_references(self) -> None:
        entry = describe(
            7,
            1_000,
            {
                "type": "trading:execution:created",
                "actor": {"kind": "system", "id": "tradeguard"},
                "data": {
                    "execution_id": "e-1",
                    "order_id": "o-1",
                    "side": "sell",
                    "quantity": 100,
                    "symbol": "ACME",
                    "price": "10.00",
                },
            },
        )
        assert entry is not None
        assert entry.line == "Trade executed: sold 100 ACME at 10.00"
        assert entry.category is Category.EXECUTION
        assert dict(entry.references) == {"order_id": "o-1", "execution_id": "e-1"}
        assert entry.seq == 7

    def test_addresses_are_masked_and_other_personal_fields_dropped(self) -> None:
        entry = describe(
            1,
            1,
            {
                "type": "identity:login:succeeded",
                "data": {"session_id": "s-1"},
                "personal": {"ip": "89.160.20.112", "email": "alice@example.com"},
            },
        )
        assert entry is not None
        assert entry.ip == "89.160.*.*"
        assert "alice@example.com" not in repr(entry)
        erased = describe(
            2, 1, {"type": "identity:login:succeeded", "personal": {"ip": "[erased]"}}
        )
        assert erased is not None
        assert erased.ip == HIDDEN

    def test_a_sign_in_shows_its_country_and_network(self) -> None:
        entry = describe(
            3,
            1,
            {
                "type": "fraud:sign_in:assessed",
                "data": {
                    "country": "SE",
                    "network": "Bredband2",
                    "score": 75,
                    "response": "verify",
                },
            },
        )
        assert entry is not None
        assert entry.line == "Sign-in assessed from SE (Bredband2): score 75, verify"
        assert (entry.country, entry.network) == ("SE", "Bredband2")

    def test_staff_reads_and_bank_details_stay_out(self) -> None:
        assert describe(1, 1, {"type": "trading:account:viewed"}) is None
        assert describe(1, 1, {"type": "audit:events:searched"}) is None
        added = describe(
            1,
            1,
            {
                "type": "funds:bank_account:added",
                "data": {"bank_account_id": "b-1", "routing_number": "021000021", "last4": "1234"},
            },
        )
        assert added is not None
        assert "021000021" not in repr(added)
        assert "1234" not in repr(added)

    def test_marks_know_executions_and_withdrawals(self) -> None:
        assert mark_kind("trading:execution:created") is MarkKind.EXECUTION
        assert mark_kind("funds:withdrawal:requested") is MarkKind.WITHDRAWAL
        assert mark_kind("identity:password:changed") is MarkKind.OTHER
