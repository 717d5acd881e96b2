"""The deny list of personal fields, the sealed personal section and the subject names,
without a database (ledger/personal/)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from tradeguard.core.errors import InvalidInput
from tradeguard.crypto.keyring import DecryptionFailed, LocalKeyring
from tradeguard.ledger.canonical import canonical_bytes
from tradeguard.ledger.domain import LedgerEvent, Party, PersonalData
from tradeguard.ledger.personal.fields import (
    PersonalDataInPlaintext,
    is_personal_key,
    refuse_plaintext_personal,
)
from tradeguard.ledger.personal.sealing import (
    ERASED,
    UNREADABLE,
    WRAP_PURPOSE,
    SealBroken,
    field_names,
    is_redacted,
    open_section,
    parse_section,
    seal,
    wrap_context,
)
from tradeguard.ledger.personal.subjects import forget_reason, parse_subject, visitors

ADA = "user:0190c5a0-0000-7000-8000-00000000000a"
BOB = "user:0190c5a0-0000-7000-8000-00000000000b"


class TestDenyList:
    @pytest.mark.parametrize(
        "key",
        [
            "email",
            "Email",
            "old_email",
            "e-mail",
            "phone",
            "phone_number",
            "mobile_phone",
            "ip",
            "client_ip",
            "ip_address",
            "IP-Address",
            "remote_address",
            "user_agent",
            "User-Agent",
            "first_name",
            "full_name",
            "display_name",
            "username",
            "device_name",
            "date_of_birth",
            "postal_code",
            "street",
            "ssn",
            "tax_id",
            "passport_number",
            "cidrs",
        ],
    )
    def test_personal_names_are_recognized(self, key: str) -> None:
        assert is_personal_key(key)

    @pytest.mark.parametrize(
        "key",
        [
            # Names that only look alike: flags, counts, ids and other things' names.
            "email_verified",
            "emails_sent",
            "ip_allowlist_size",
            "skip",
            "zipped",
            "name",
            "symbol",
            "device_id",
            "session_id",
            "reason",
            "route",
            "params",
            "query_digest",
        ],
    )
    def test_other_names_are_not(self, key: str) -> None:
        assert not is_personal_key(key)

    @pytest.mark.parametrize(
        ("data", "path"),
        [
            ({"email": "ada@example.com"}, "data.email"),
            ({"params": {"client_ip": "198.51.100.7"}}, "data.params.client_ip"),
            ({"devices": [{"id": "d1"}, {"user_agent": "Firefox"}]}, "data.devices[1].user_agent"),
            ({"nested": [[{"phone": "+15550100"}]]}, "data.nested[0][0].phone"),
            # Any mapping and any sequence is searched, not only dicts and lists.
            (MappingProxyType({"x": ({"mobile": "+15550100"},)}), "data.x[0].mobile"),
            # Refused whatever the value: the field belongs in the personal section.
            ({"ip": None}, "data.ip"),
        ],
    )
    def test_personal_fields_in_plain_data_are_refused_naming_the_field_not_the_value(
        self, data: Mapping[str, Any], path: str
    ) -> None:
        with pytest.raises(PersonalDataInPlaintext) as refused:
            refuse_plaintext_personal(data)
        assert path in refused.value.detail
        for value in ("ada@example.com", "198.51.100.7", "Firefox", "+15550100"):
            assert value not in refused.value.detail
        assert refused.value.status == 500  # a programming error, not the client's

    def test_data_without_personal_fields_passes(self) -> None:
        refuse_plaintext_personal(
            {
                "symbol": "AAPL",
                "quantity": 5,
                "price": Decimal("187.25"),
                "email_verified": True,
                "params": {"user_id": "u"},
                "fills": [{"qty": 1}, (2, 3)],
                "raw": b"ip",
            }
        )

    @given(st.dictionaries(st.sampled_from(["symbol", "qty", "side"]), st.integers()))
    def test_order_shaped_data_is_never_refused(self, data: dict[str, int]) -> None:
        refuse_plaintext_personal(data)


class TestPersonalDataOnEvents:
    def test_of_keeps_only_fields_with_a_value(self) -> None:
        owner = Party("user", "u1")
        assert PersonalData.of(owner, ip=None) is None
        assert PersonalData.of(owner, ip="198.51.100.7", email=None) == PersonalData(
            owner, {"ip": "198.51.100.7"}
        )
        assert PersonalData(owner, {}).subject == "user:u1"

    def test_an_envelope_never_holds_unsealed_personal_data(self) -> None:
        event = LedgerEvent(
            type="identity:login:succeeded",
            personal=PersonalData(Party("user", "u1"), {"ip": "198.51.100.7"}),
        )
        with pytest.raises(ValueError, match="sealed"):
            event.envelope(event_id="e1", occurred_ns=1)
        sealed = {"alg": "A256GCM", "key": "k", "fields": ["ip"], "ct": "AAAA"}
        document = event.envelope(event_id="e1", occurred_ns=1, sealed=sealed)
        assert document["personal"] == sealed
        assert "198.51.100.7" not in json.dumps(document)

    def test_an_event_without_personal_data_has_no_personal_section(self) -> None:
        document = LedgerEvent(type="trading:order:placed").envelope(event_id="e", occurred_ns=1)
        assert "personal" not in document


def _sealed(
    fields: dict[str, Any], *, subject: str = ADA, event_id: str = "e1"
) -> tuple[Any, AESGCM]:
    aead = AESGCM(secrets.token_bytes(32))
    return seal(fields, aead=aead, subject=subject, key_id="k1", event_id=event_id), aead


class TestSealing:
    @pytest.mark.spec("ENC-3")
    def test_a_sealed_section_opens_to_its_fields_and_hides_them(self) -> None:
        fields = {"email": "ada@example.com", "ip": "198.51.100.7"}
        stored, aead = _sealed(fields)
        assert set(stored) == {"alg", "key", "fields", "ct"}
        assert stored["fields"] == ["email", "ip"]
        text = json.dumps(stored)
        assert "ada@example.com" not in text
        assert "198.51.100.7" not in text
        section = parse_section(stored)
        assert section is not None
        assert open_section(section, aead=aead, subject=ADA, event_id="e1") == fields

    def test_values_keep_their_json_types(self) -> None:
        fields = {"cidrs": ["203.0.113.0/24"], "ip": "2001:db8::1"}
        stored, aead = _sealed(fields)
        section = parse_section(stored)
        assert section is not None
        assert open_section(section, aead=aead, subject=ADA, event_id="e1") == fields

    def test_the_length_does_not_tell_short_values_apart(self) -> None:
        short, _ = _sealed({"ip": "1.2.3.4"})
        long, _ = _sealed({"ip": "203.113.200.254"})
        assert len(short["ct"]) == len(long["ct"])

    @pytest.mark.parametrize(
        ("subject", "event_id"),
        [(BOB, "e1"), (ADA, "e2")],
        ids=["another subject", "another event"],
    )
    def test_a_section_opens_only_for_its_subject_and_event(
        self, subject: str, event_id: str
    ) -> None:
        stored, aead = _sealed({"ip": "198.51.100.7"})
        section = parse_section(stored)
        assert section is not None
        with pytest.raises(SealBroken):
            open_section(section, aead=aead, subject=subject, event_id=event_id)

    def test_a_section_does_not_open_under_another_key(self) -> None:
        stored, _ = _sealed({"ip": "198.51.100.7"})
        section = parse_section(stored)
        assert section is not None
        with pytest.raises(SealBroken):
            open_section(section, aead=AESGCM(bytes(32)), subject=ADA, event_id="e1")

    def test_a_section_whose_field_list_was_changed_does_not_open(self) -> None:
        stored, aead = _sealed({"ip": "198.51.100.7"})
        section = parse_section({**stored, "fields": ["note"]})
        assert section is not None
        with pytest.raises(SealBroken):
            open_section(section, aead=aead, subject=ADA, event_id="e1")

    @pytest.mark.parametrize(
        "stored",
        [
            None,
            "text",
            {"alg": "none", "key": "k", "fields": [], "ct": "AAAA"},
            {"alg": "A256GCM", "key": 1, "fields": [], "ct": "AAAA"},
            {"alg": "A256GCM", "key": "k", "fields": "ip", "ct": "AAAA"},
            {"alg": "A256GCM", "key": "k", "fields": [1], "ct": "AAAA"},
            {"alg": "A256GCM", "key": "k", "fields": [], "ct": "!!"},
            {"alg": "A256GCM", "key": "k", "fields": [], "ct": "AAAA"},
        ],
    )
    def test_malformed_sections_are_not_parsed(self, stored: object) -> None:
        assert parse_section(stored) is None

    def test_field_names_are_readable_without_the_key(self) -> None:
        stored, _ = _sealed({"ip": "198.51.100.7", "email": "ada@example.com"})
        assert field_names(stored) == ("email", "ip")
        assert field_names("garbage") == ()

    def test_markers_are_strings_told_apart_from_values(self) -> None:
        assert is_redacted(ERASED)
        assert is_redacted(UNREADABLE)
        assert not is_redacted("[erased]")
        assert json.loads(json.dumps({"ip": ERASED})) == {"ip": "[erased]"}


class TestWrappedKeys:
    @pytest.mark.spec("ENC-3")
    def test_a_wrapped_data_key_unwraps_only_for_its_subject_and_key_id(self) -> None:
        keyring = LocalKeyring(secrets.token_bytes(32))
        data_key = secrets.token_bytes(32)
        wrapped = keyring.encrypt(data_key, purpose=WRAP_PURPOSE, context=wrap_context(ADA, "k1"))
        assert (
            keyring.decrypt(wrapped, purpose=WRAP_PURPOSE, context=wrap_context(ADA, "k1"))
            == data_key
        )
        for context in (wrap_context(BOB, "k1"), wrap_context(ADA, "k2")):
            with pytest.raises(DecryptionFailed):
                keyring.decrypt(wrapped, purpose=WRAP_PURPOSE, context=context)
        with pytest.raises(DecryptionFailed):
            keyring.decrypt(wrapped, purpose="another purpose", context=wrap_context(ADA, "k1"))

    def test_the_wrap_context_is_canonical_json(self) -> None:
        assert wrap_context(ADA, "k1") == canonical_bytes({"key": "k1", "subject": ADA})


class TestSubjects:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            (
                "user:0190c5a0-7b1e-7c3d-9a2b-1c2d3e4f5a6b",
                Party("user", "0190c5a0-7b1e-7c3d-9a2b-1c2d3e4f5a6b"),
            ),
            (
                "0190c5a0-7b1e-7c3d-9a2b-1c2d3e4f5a6b",
                Party("user", "0190c5a0-7b1e-7c3d-9a2b-1c2d3e4f5a6b"),
            ),
            ("  visitors:2026-01 ", Party("visitors", "2026-01")),
        ],
    )
    def test_subjects_parse(self, text: str, expected: Party) -> None:
        assert parse_subject(text) == expected

    @pytest.mark.parametrize(
        "text",
        [
            "",
            "user:",
            "staff:abc",
            "visitors:2026-13",
            "visitors:26-01",
            "user:a b",
            "user:-x",
            "x" * 101,
        ],
    )
    def test_anything_else_is_refused(self, text: str) -> None:
        with pytest.raises(InvalidInput):
            parse_subject(text)

    def test_visitors_are_grouped_by_utc_month(self) -> None:
        assert visitors(1_767_225_600 * 10**9) == Party("visitors", "2026-01")
        assert visitors(1_767_225_600 * 10**9 - 1) == Party("visitors", "2025-12")

    def test_a_reason_is_required_and_bounded(self) -> None:
        assert forget_reason("  erasure   request 42 ") == "erasure request 42"
        for bad in ("", "   ", "x" * 501):
            with pytest.raises(InvalidInput):
                forget_reason(bad)
