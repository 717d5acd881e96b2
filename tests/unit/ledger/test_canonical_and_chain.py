"""Canonical JSON (RFC 8785) and the hash chain, without a database."""

from __future__ import annotations

import hashlib
import json
import uuid
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradeguard.core.errors import InvalidInput
from tradeguard.ledger.canonical import canonical_bytes
from tradeguard.ledger.chain import GENESIS_HASH, chain_hash, leaf_hash
from tradeguard.ledger.domain import LedgerEvent, Party

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
