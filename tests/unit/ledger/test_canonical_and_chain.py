"""Canonical JSON (RFC 8785) and the hash chain, without a database."""

from __future__ import annotations

import hashlib
import json
import uuid
from decimal import Decimal
from enum import IntEnum, StrEnum

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeguard.core.errors import InvalidInput
from tradeguard.ledger.canonical import _checked, canonical_bytes, to_json_value
from tradeguard.ledger.chain import (
    GENESIS_HASH,
    EventBodyNotBytes,
    chain_hash,
    leaf_hash,
    stored_body,
)
from tradeguard.ledger.domain import LedgerEvent, Party
from tradeguard.ledger.verification.walk import Failure, walk

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


class TestCanonicalJson:
    @pytest.mark.spec("AUD-3")
    def test_keys_are_sorted_and_whitespace_removed(self) -> None:
        assert canonical_bytes({"b": 1, "a": [True, None]}) == b'{"a":[true,null],"b":1}'

    @pytest.mark.spec("AUD-3")
    def test_large_integers_decimals_and_uuids_become_strings(self) -> None:
        value = uuid.UUID(int=1)
        body = canonical_bytes(
            {"ns": 1_767_225_600_000_000_001, "px": Decimal("187.25"), "id": value}
        )
        assert json.loads(body) == {"ns": "1767225600000000001", "px": "187.25", "id": str(value)}

    @pytest.mark.parametrize("bad", [1.5, Decimal("NaN"), b"raw", object()])
    def test_refuses_values_that_do_not_round_trip(self, bad: object) -> None:
        with pytest.raises(InvalidInput):
            canonical_bytes({"x": bad})

    def test_refuses_non_string_keys(self) -> None:
        with pytest.raises(InvalidInput):
            canonical_bytes({"x": {1: "a"}})

    @given(st.dictionaries(st.text(), json_values, max_size=6))
    def test_canonical_form_is_stable_under_key_reordering(self, doc: dict[str, object]) -> None:
        reordered = dict(reversed(list(doc.items())))
        assert canonical_bytes(doc) == canonical_bytes(reordered)
        assert json.loads(canonical_bytes(doc)) == doc


# Any code point, lone surrogates and characters beyond U+FFFF included.
any_text = st.text(st.characters(exclude_categories=()), max_size=8)
any_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | any_text,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4)
    ),
    max_leaves=20,
)


class TestTheFastPathIsRfc8785:
    """canonical_bytes writes with the standard library where that is the canonical form;
    the reference implementation must agree on every input."""

    @pytest.mark.spec("AUD-3")
    @given(st.dictionaries(any_text, any_json, max_size=6))
    def test_every_document_is_written_as_rfc8785_writes_it(self, doc: dict[str, object]) -> None:
        try:
            expected = bytes(rfc8785.dumps(doc))
        except (rfc8785.CanonicalizationError, UnicodeEncodeError) as refused:
            # Lone surrogates: refused, by the same error.
            with pytest.raises(type(refused)):
                canonical_bytes(doc)
            return
        assert canonical_bytes(doc) == expected

    @pytest.mark.parametrize(
        "doc",
        [
            {"\U0001f600": 1, "\uffff": 2, "\ue000": 3},  # UTF-16 order differs from code points
            {"s": '\x00\x1f\b\f\n\r\t"\\/\x7f\u2028'},  # every escape, and what is not
            {"s": "caf\u00e9 \u65e5\u672c"},
        ],
    )
    def test_the_cases_that_need_care(self, doc: dict[str, object]) -> None:
        assert canonical_bytes(doc) == bytes(rfc8785.dumps(doc))

    def test_a_lone_surrogate_is_refused_as_before(self) -> None:
        with pytest.raises(rfc8785.CanonicalizationError):
            canonical_bytes({"s": "\ud800"})


# What an event's data can hold before `to_json_value`, with the characters where JSON writers
# disagree made likely: every escape and control character, U+007F and the line separators
# (RFC 8785 leaves them as they are), the edges of the BMP around the surrogates (UTF-16 and
# code point order differ only past U+FFFF), characters beyond it, non-ASCII keys.
_EDGE_CHARACTERS = (
    "\x00\x01\x07\x08\x09\x0a\x0b\x0c\x0d\x1b\x1f \"\\/'\x7f\x80\x9f\xa0\xe9\xff"
    "\u0100\u2028\u2029\u20ac\u65e5\ud7ff\ue000\ufeff\ufffd\ufffe\uffff"
    "\U00010000\U0001d11e\U0001f600\U0010fffd\U0010ffff"
)
surrogate_free_text = st.text(
    st.sampled_from(_EDGE_CHARACTERS) | st.characters(exclude_categories=("Cs",)), max_size=10
)


class _Colour(StrEnum):
    RED = "r\u00e9d"


class _Level(IntEnum):
    HIGH = 3


event_scalars = (
    st.none()
    | st.booleans()
    # Any size: beyond 2^53 they are written as strings (to_json_value), the edges included.
    | st.integers()
    | st.sampled_from([2**53 - 1, 2**53, -(2**53) + 1, -(2**53), 0, -1])
    | surrogate_free_text
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.decimals(min_value=-(10**12), max_value=10**12, places=2)  # money
    | st.from_regex(r"-?[0-9]{1,12}\.[0-9]{2}", fullmatch=True)  # money as a string
    | st.uuids()
    | st.sampled_from([_Colour.RED, _Level.HIGH])
)
event_values = st.recursive(
    event_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=3).map(tuple)
        | st.dictionaries(surrogate_free_text, children, max_size=5)
    ),
    max_leaves=25,
)


def _reference(document: dict[str, object]) -> bytes:
    """canonical_bytes as it was before the fast path: RFC 8785's reference writer."""
    return bytes(rfc8785.dumps(to_json_value(document)))


class TestTheFastPathEqualsTheReference:
    """The bytes feed the hash chain: for every document an event can hold, canonical_bytes
    must write exactly what the RFC 8785 reference path writes."""

    @pytest.mark.spec("AUD-3")
    @settings(max_examples=300, deadline=None)
    @given(st.dictionaries(surrogate_free_text, event_values, max_size=6))
    def test_every_event_document_is_written_byte_for_byte_as_the_reference(
        self, doc: dict[str, object]
    ) -> None:
        assert canonical_bytes(doc) == _reference(doc)

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.sampled_from(_EDGE_CHARACTERS), min_size=1, max_size=6).map("".join))
    def test_keys_of_edge_characters_sort_by_utf16_code_units(self, key: str) -> None:
        doc = {key: 1, key + "\ue000": 2, key + "\U00010000": 3, "\uffff" + key: 4}
        written = canonical_bytes(doc)
        assert written == _reference(doc)
        keys = list(json.loads(written))
        assert keys == sorted(keys, key=lambda k: k.encode("utf-16-be"))

    def test_a_character_past_the_bmp_orders_keys_as_utf16_not_as_code_points(self) -> None:
        doc = {"\U0001f600": 1, "\ufb01": 2}  # code points: U+FB01 first; UTF-16: D83D first
        assert canonical_bytes(doc) == '{"\U0001f600":1,"\ufb01":2}'.encode()

    @pytest.mark.parametrize("value", [2**53 - 1, -(2**53) + 1])
    def test_the_largest_safe_integers_stay_numbers(self, value: int) -> None:
        assert canonical_bytes({"n": value}) == f'{{"n":{value}}}'.encode()

    @pytest.mark.parametrize("value", [2**53, -(2**53), 10**30])
    def test_integers_past_2_to_the_53_become_strings_on_both_paths(self, value: int) -> None:
        assert canonical_bytes({"n": value}) == f'{{"n":"{value}"}}'.encode()
        assert canonical_bytes({"n": value}) == _reference({"n": value})


def _converted(convert: object, value: object) -> tuple[str, object]:
    try:
        return "value", convert(value)  # type: ignore[operator]
    except InvalidInput as exc:
        return "refused", str(exc)


_refusable = event_values | st.sampled_from(
    [1.5, Decimal("NaN"), Decimal("-Infinity"), b"raw", bytearray(b"x"), object(), {1: "a"}]
)


class TestTheConversionFastPath:
    """`to_json_value` takes direct branches for exact built-in types; what it returns, or
    the refusal it raises (with the path it names), is what the general rules give."""

    @pytest.mark.spec("AUD-3")
    @settings(max_examples=300, deadline=None)
    @given(
        st.recursive(
            _refusable,
            lambda children: (
                st.lists(children, max_size=4)
                | st.lists(children, max_size=3).map(tuple)
                | st.dictionaries(surrogate_free_text, children, max_size=5)
            ),
            max_leaves=25,
        )
    )
    def test_it_converts_and_refuses_exactly_as_the_general_rules(self, value: object) -> None:
        fast, checked = _converted(to_json_value, value), _converted(_checked, value)
        assert fast == checked
        assert type(fast[1]) is type(checked[1])

    @pytest.mark.parametrize(
        ("document", "message"),
        [
            ({"a": [1, {"b": 1.5}]}, "binary floats ($.a[1].b)"),
            ({"a": {"b": Decimal("NaN")}}, "finite decimals only ($.a.b)"),
            ({"a": ({2: "x"},)}, "keys must be strings ($.a[0])"),
            ({"a": [b"raw"]}, "cannot hold bytes ($.a[0])"),
        ],
    )
    def test_a_refusal_names_the_path_of_the_value(self, document: object, message: str) -> None:
        with pytest.raises(InvalidInput) as caught:
            to_json_value(document)
        assert message in str(caught.value)

    def test_an_enum_or_a_mapping_subclass_is_kept_as_the_rules_keep_it(self) -> None:
        converted = to_json_value({"c": _Colour.RED, "l": _Level.HIGH, "u": uuid.UUID(int=7)})
        assert converted == {"c": _Colour.RED, "l": _Level.HIGH, "u": str(uuid.UUID(int=7))}
        assert type(converted["c"]) is _Colour


class TestEventEnvelope:
    def test_event_type_must_be_source_subject_action(self) -> None:
        with pytest.raises(InvalidInput, match="source:subject:action"):
            LedgerEvent(type="OrderPlaced")

    @pytest.mark.spec("AUD-3")
    def test_envelope_carries_nanosecond_timestamp_as_string(self) -> None:
        event = LedgerEvent(type="trading:order:placed", actor=Party("user", "u1"), request_id="r1")
        doc = event.envelope(event_id="e1", occurred_ns=2**62)
        assert doc["ts"] == str(2**62)
        assert doc["actor"] == {"kind": "user", "id": "u1"}
        assert doc["request_id"] == "r1"


class TestChain:
    def test_leaf_hash_is_rfc6962_leaf(self) -> None:
        assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()

    @pytest.mark.spec("AUD-2")
    @given(st.lists(st.binary(min_size=1, max_size=64), min_size=1, max_size=20), st.data())
    def test_any_altered_event_changes_every_later_link(
        self, bodies: list[bytes], data: st.DataObject
    ) -> None:
        def links(items: list[bytes]) -> list[bytes]:
            out, prev = [], GENESIS_HASH
            for seq, body in enumerate(items, start=1):
                prev = chain_hash(prev, seq, leaf_hash(body))
                out.append(prev)
            return out

        index = data.draw(st.integers(0, len(bodies) - 1))
        tampered = list(bodies)
        tampered[index] = bodies[index] + b"!"
        original, altered = links(bodies), links(tampered)
        assert original[:index] == altered[:index]
        assert all(a != b for a, b in zip(original[index:], altered[index:], strict=True))

    def test_sequence_number_is_bound_into_each_link(self) -> None:
        leaf = leaf_hash(b"x")
        assert chain_hash(GENESIS_HASH, 1, leaf) != chain_hash(GENESIS_HASH, 2, leaf)


class TestStoredBodies:
    """SQLite hands back whatever a statement stored: a body rewritten as TEXT or a number is
    tampering, reported by the walk and refused by every reader, never a TypeError."""

    def chain_of(self, bodies: list[bytes]) -> list[tuple[int, bytes, bytes, object]]:
        rows: list[tuple[int, bytes, bytes, object]] = []
        previous = GENESIS_HASH
        for seq, body in enumerate(bodies, start=1):
            leaf = leaf_hash(body)
            previous = chain_hash(previous, seq, leaf)
            rows.append((seq, leaf, previous, body))
        return rows

    @pytest.mark.parametrize("stored", ['{"n":1}', 7, 1.5, None])
    def test_a_body_that_is_not_bytes_stops_the_walk_as_altered(self, stored: object) -> None:
        rows = self.chain_of([b'{"n":0}', b'{"n":1}', b'{"n":2}'])
        seq, leaf, link, _ = rows[1]
        rows[1] = (seq, leaf, link, stored)
        _, _, stop = walk(rows, GENESIS_HASH, 1)
        assert stop == (2, Failure.EVENT_ALTERED)

    def test_bytes_like_bodies_are_read_and_others_refused_naming_the_seq(self) -> None:
        assert stored_body(b"a", seq=1) == b"a"
        assert stored_body(memoryview(b"a"), seq=1) == b"a"
        with pytest.raises(EventBodyNotBytes, match="seq 42"):
            stored_body("a", seq=42)
