"""Audit search without a database: filters, instants, cursors, references, CSV export."""

from __future__ import annotations

import base64
import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradeguard.core.clock import NS_PER_SECOND, ns_to_iso
from tradeguard.ledger.canonical import canonical_bytes
from tradeguard.ledger.search.query import (
    MAX_NS,
    EventFilter,
    Position,
    SearchInputError,
    SortOrder,
    build_filter,
    check_limit,
    decode_cursor,
    encode_cursor,
    parse_instant,
    parse_type,
)
from tradeguard.ledger.search.references import document_references, event_references
from tradeguard.ledger.search.results import (
    CSV_COLUMNS,
    FoundEvent,
    csv_header,
    csv_row,
    json_item,
    neutralize,
)

JAN_1_2026 = 1_767_225_600 * NS_PER_SECOND


def refused(parameter: str) -> pytest.RaisesExc[SearchInputError]:
    return pytest.raises(SearchInputError, match=f"^{parameter}: ")


class TestEventType:
    def test_a_full_type_is_exact(self) -> None:
        assert parse_type("trading:order:placed") == ("trading:order:placed", None)

    @pytest.mark.parametrize("prefix", ["trading:", "trading:order:", "a1_b:c_2:"])
    def test_one_or_two_segments_ending_in_a_colon_are_a_prefix(self, prefix: str) -> None:
        assert parse_type(prefix) == (None, prefix)

    @pytest.mark.parametrize(
        "shape",
        [
            "trading",
            "trading:order",
            "trading:order:placed:",
            "trading:order:placed:x",
            ":order:",
            "Trading:order:",
            "trading:*",
            "trading:order:%",
            "trading::",
            "trading:order:plac ed",
            "",
        ],
    )
    def test_any_other_shape_is_refused(self, shape: str) -> None:
        with refused("type"):
            parse_type(shape)

    def test_a_prefix_range_holds_exactly_the_types_under_it(self) -> None:
        low, high = EventFilter(type_prefix="trading:order:").type_range() or ("", "")
        inside = ["trading:order:placed", "trading:order:a", "trading:order:z9_"]
        outside = ["trading:orders:placed", "trading:execution:created", "trading:order"]
        assert all(low <= t < high for t in inside)
        assert not any(low <= t < high for t in outside)


class TestInstants:
    def test_digits_are_nanoseconds(self) -> None:
        assert parse_instant("from", "1767225600000000001") == JAN_1_2026 + 1
        assert parse_instant("from", "0") == 0

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("2026-01-01T00:00:00Z", JAN_1_2026),
            ("2026-01-01t00:00:00z", JAN_1_2026),
            ("2026-01-01T00:00:00.000000001Z", JAN_1_2026 + 1),
            ("2026-01-01T00:00:00.5+00:00", JAN_1_2026 + NS_PER_SECOND // 2),
            ("2025-12-31T19:00:00-05:00", JAN_1_2026),
            ("2026-01-01T05:30:00.123456789+05:30", JAN_1_2026 + 123_456_789),
            ("1970-01-01T00:00:00Z", 0),
        ],
    )
    def test_iso_8601_with_an_offset_is_exact_to_the_nanosecond(
        self, text: str, expected: int
    ) -> None:
        assert parse_instant("to", text) == expected

    @pytest.mark.parametrize(
        "text",
        [
            "2026-01-01T00:00:00",  # no offset: which zone?
            "2026-01-01",
            "2026-02-30T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:60Z",
            "2026-01-01T00:00:00.0000000001Z",
            "2026-01-01T00:00:00+24:00",
            "1969-12-31T23:59:59Z",
            "9999999999999999999",
            "-1",
            "1e9",
            "yesterday",
            "2026-01-01T00:00:00Z" + " " * 30,
        ],
    )
    def test_anything_else_is_refused_naming_the_parameter(self, text: str) -> None:
        with refused("from"):
            parse_instant("from", text)

    @given(ns=st.integers(0, MAX_NS), minutes=st.integers(-23 * 60 - 59, 23 * 60 + 59))
    def test_any_instant_written_in_any_offset_reads_back_exactly(
        self, ns: int, minutes: int
    ) -> None:
        zone = timezone(timedelta(minutes=minutes))
        seconds, fraction = divmod(ns, NS_PER_SECOND)
        local = datetime.fromtimestamp(seconds, tz=UTC).astimezone(zone)
        sign, offset = ("-", -minutes) if minutes < 0 else ("+", minutes)
        text = (
            f"{local.year:04d}-{local.month:02d}-{local.day:02d}T{local.hour:02d}:"
            f"{local.minute:02d}:{local.second:02d}.{fraction:09d}"
            f"{sign}{offset // 60:02d}:{offset % 60:02d}"
        )
        assert parse_instant("from", text) == ns

    def test_the_canonical_iso_form_reads_back(self) -> None:
        assert parse_instant("from", ns_to_iso(JAN_1_2026 + 42)) == JAN_1_2026 + 42


class TestFilters:
    def test_filters_combine_and_are_described_for_the_audit_event(self) -> None:
        where = build_filter(
            event_type="trading:order:",
            actor_id="u-1",
            subject_id="acc-1",
            account_id="acc-1",
            order_id="ord-1",
            from_="2026-01-01T00:00:00Z",
            to="1767225600000000009",
        )
        assert where.described() == {
            "type_prefix": "trading:order:",
            "actor_id": "u-1",
            "subject_id": "acc-1",
            "account_id": "acc-1",
            "order_id": "ord-1",
            "from_ns": str(JAN_1_2026),
            "to_ns": str(JAN_1_2026 + 9),
        }

    def test_from_after_to_is_refused_and_an_empty_range_is_not(self) -> None:
        with refused("from"):
            build_filter(from_="2", to="1")
        assert build_filter(from_="1", to="1").from_ns == 1

    @pytest.mark.parametrize("value", ["", "a b", "tab\there", "x" * 101, "nl\n", "\x7f"])
    def test_ids_with_spaces_controls_or_over_100_characters_are_refused(self, value: str) -> None:
        with refused("account_id"):
            build_filter(account_id=value)

    def test_ids_may_hold_any_printable_character(self) -> None:
        assert build_filter(actor_id="=cmd|'/c'!A1").actor_id == "=cmd|'/c'!A1"

    @pytest.mark.parametrize("limit", [0, -1, 501])
    def test_a_limit_outside_1_to_500_is_refused(self, limit: int) -> None:
        with refused("limit"):
            check_limit(limit)


class TestCursors:
    WHERE = EventFilter(account_id="acc-1")

    @given(
        seq=st.integers(1, MAX_NS),
        txid=st.none() | st.integers(0, MAX_NS),
        pk=st.integers(0, MAX_NS),
        sort=st.sampled_from(SortOrder),
    )
    def test_a_cursor_returns_the_position_it_was_made_from(
        self, seq: int, txid: int | None, pk: int, sort: SortOrder
    ) -> None:
        digest = self.WHERE.digest(sort)
        position = Position(seq=seq, txid=txid, pk=pk)
        assert decode_cursor(encode_cursor(position, digest=digest), digest=digest) == position

    def test_a_cursor_is_refused_with_other_filters_or_another_order(self) -> None:
        cursor = encode_cursor(Position(5, 7, 9), digest=self.WHERE.digest(SortOrder.NEWEST))
        with pytest.raises(SearchInputError, match="other filters or another order"):
            decode_cursor(cursor, digest=EventFilter(account_id="acc-2").digest(SortOrder.NEWEST))
        with pytest.raises(SearchInputError, match="other filters or another order"):
            decode_cursor(cursor, digest=self.WHERE.digest(SortOrder.OLDEST))

    @pytest.mark.parametrize(
        "document",
        [
            {"v": 2, "d": "x", "s": 1, "k": [1, 1]},
            {"v": 1, "d": "x", "s": -1, "k": [1, 1]},
            {"v": 1, "d": "x", "s": 1, "k": [1]},
            {"v": 1, "d": "x", "s": 1, "k": ["1", 1]},
            {"v": 1, "d": "x", "s": True, "k": [1, 1]},
            {"v": 1, "d": "x", "s": 1, "k": [1, 2**63]},
            {"v": 1, "d": "x", "s": 1, "k": [1, 1], "extra": 1},
            [1, 2, 3],
        ],
    )
    def test_a_made_up_cursor_is_refused_as_a_cursor(self, document: object) -> None:
        cursor = base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")
        with pytest.raises(SearchInputError, match=r"^cursor: give the next_cursor"):
            decode_cursor(cursor, digest="x")

    @pytest.mark.parametrize("cursor", ["", "!!!", "a", "eyJ2Ijox", "x" * 201, "\u00e9t\u00e9"])
    def test_garbage_is_refused_without_echoing_it(self, cursor: str) -> None:
        with pytest.raises(SearchInputError) as refusal:
            decode_cursor(cursor, digest="x")
        assert (
            refusal.value.detail == "cursor: give the next_cursor of a previous page of this search"
        )
        assert refusal.value.extensions["errors"] == [
            {"loc": ["query", "cursor"], "msg": refusal.value.detail.removeprefix("cursor: ")}
        ]


class TestReferences:
    @pytest.mark.spec("AUD-3")
    def test_accounts_and_orders_are_found_in_their_well_known_places(self) -> None:
        order_uuid = uuid.UUID(int=7)
        found = event_references(
            actor=("account", "acc-actor"),
            subject=("order", "ord-subject"),
            data={
                "account_id": "acc-1",
                "order_id": order_uuid,
                "replaces_order_id": "ord-old",
                "closed_by_order": "ord-buy-in",
                "cancelled_orders": ["ord-a", "ord-b", "ord-a"],
                "params": {"account_id": "acc-viewed", "user_id": "u-9"},
                "reason": "customer asked about acc-other",  # free text is never an id
                "note": {"account_id": "acc-nested"},  # only the named places count
            },
        )
        assert found == [
            ("account", "acc-actor"),
            ("order", "ord-subject"),
            ("account", "acc-1"),
            ("order", str(order_uuid)),
            ("order", "ord-old"),
            ("order", "ord-buy-in"),
            ("order", "ord-a"),
            ("order", "ord-b"),
            ("account", "acc-viewed"),
        ]

    def test_other_parties_non_strings_empty_and_overlong_values_are_not_references(self) -> None:
        assert (
            event_references(
                actor=("user", "u-1"),
                subject=("session", "s-1"),
                data={"account_id": 42, "order_id": "", "cancelled_orders": ["x" * 101, None]},
            )
            == []
        )

    @pytest.mark.parametrize("value", ["acc\x00", "acc 1", "\t", "acc\n", "\x85x", "x" * 101])
    def test_values_no_search_could_name_are_not_indexed(self, value: str) -> None:
        # Staff request parameters are recorded as the client sent them.
        assert (
            event_references(actor=None, subject=None, data={"params": {"account_id": value}}) == []
        )
        assert event_references(actor=("account", value), subject=None, data={}) == []

    def test_a_reference_named_twice_is_indexed_once(self) -> None:
        assert event_references(
            actor=("staff", "s"), subject=("account", "acc-1"), data={"account_id": "acc-1"}
        ) == [("account", "acc-1")]

    def test_a_stored_document_yields_the_same_references_as_the_event(self) -> None:
        data = {"account_id": "acc-1", "order_id": uuid.UUID(int=3), "cancelled_orders": ["o"]}
        document = json.loads(
            canonical_bytes(
                {"actor": {"kind": "order", "id": "o-9"}, "subject": None, "data": data}
            )
        )
        assert document_references(document) == event_references(
            actor=("order", "o-9"), subject=None, data=data
        )


def found(actor_id: str, subject_id: str, request_id: str | None = None) -> FoundEvent:
    document = {
        "v": 1,
        "id": "0190a3b4-0000-7000-8000-000000000001",
        "type": "trading:order:placed",
        "ts": str(JAN_1_2026 + 5),
        "actor": {"kind": "user", "id": actor_id},
        "subject": {"kind": "account", "id": subject_id},
        "data": {"note": 'commas, "quotes"\nand lines', "f": "=1+1"},
    }
    if request_id is not None:
        document["request_id"] = request_id
    return FoundEvent(
        seq=12,
        event_id=str(document["id"]),
        type="trading:order:placed",
        occurred_ns=JAN_1_2026 + 5,
        body=canonical_bytes(document),
    )


class TestCsvExport:
    def test_commas_quotes_and_newlines_survive_a_round_trip(self) -> None:
        event = found('a,b "c"', "line one\nline two", request_id="r\r\n1")
        text = csv_header() + csv_row(event)
        header, row = list(csv.reader(io.StringIO(text, newline="")))
        assert tuple(header) == CSV_COLUMNS
        record = dict(zip(header, row, strict=True))
        assert record["actor_id"] == 'a,b "c"'
        assert record["subject_id"] == "line one\nline two"
        assert record["request_id"] == "r\r\n1"
        assert record["seq"] == "12"
        assert record["occurred_ns"] == str(JAN_1_2026 + 5)
        assert record["occurred_at"] == ns_to_iso(JAN_1_2026 + 5)
        # The document column is the stored canonical JSON, byte for byte.
        assert record["document"].encode() == event.body
        assert text.endswith("\r\n")

    @pytest.mark.parametrize(
        "cell",
        ['=HYPERLINK("http://x")', "+1", "-1+1", "@SUM(A1)", "\tx", "\r=1"],
    )
    def test_cells_a_spreadsheet_would_run_as_formulas_are_neutralised(self, cell: str) -> None:
        row = next(csv.reader(io.StringIO(csv_row(found(cell, "acc-1")), newline="")))
        assert row[CSV_COLUMNS.index("actor_id")] == "'" + cell
        assert neutralize(cell) == "'" + cell

    def test_ordinary_cells_are_left_as_they_are(self) -> None:
        for cell in ["acc-1", "tradeguard", "x=1", "", "'quoted"]:
            assert neutralize(cell) == cell

    def test_a_json_item_carries_the_document_and_both_time_forms(self) -> None:
        item = json.loads(json_item(found("u-1", "acc-1")))
        assert item["seq"] == 12
        assert item["occurred_ns"] == str(JAN_1_2026 + 5)
        assert item["occurred_at"].endswith("Z")
        assert item["actor"] == {"kind": "user", "id": "u-1"}
        assert item["subject"] == {"kind": "account", "id": "acc-1"}
        assert item["request_id"] is None
        assert item["document"]["data"]["f"] == "=1+1"
