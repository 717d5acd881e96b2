"""The keyring's envelope: round trips for every class, bindings that refuse a moved or
altered ciphertext, versions that never encrypt once retired, and the legacy format."""

from __future__ import annotations

import secrets

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.crypto.support import MASTER, keyring_with
from tradeguard.core.clock import FrozenClock
from tradeguard.crypto.classes import CLASS_OF_ID, CLASS_SPECS, SPEC_OF, DataClass
from tradeguard.crypto.envelope import HEADER_BYTES, FieldBinding, parse_header, stem
from tradeguard.crypto.index_format import (
    INDEX_BYTES,
    INDEX_HEADER,
    INDEX_HEADER_BYTES,
    index_digest,
    parse_index,
    version_of_index_prefix,
)
from tradeguard.crypto.keyring import (
    DecryptionFailed,
    IndexKey,
    Keyring,
    Keyset,
    LocalKeyring,
    NoActiveKey,
)

CLASSES = st.sampled_from(list(DataClass))
IDS = st.text(min_size=1, max_size=40)
PLAINTEXTS = st.binary(max_size=512)
KEYRING = keyring_with()


def binding(
    data_class: DataClass, record: str, table: str = "t", column: str = "c"
) -> FieldBinding:
    return FieldBinding(data_class.value, table, column, record.encode())


class TestRoundTrip:
    @pytest.mark.spec("ENC-2")
    @given(data_class=CLASSES, plaintext=PLAINTEXTS, record=IDS)
    def test_decrypt_of_encrypt_is_identity_for_every_class(
        self, data_class: DataClass, plaintext: bytes, record: str
    ) -> None:
        where = binding(data_class, record)
        blob = KEYRING.seal(plaintext, where, data_class)
        assert KEYRING.open(blob, where, data_class) == plaintext
        header = parse_header(blob)
        assert header is not None
        assert CLASS_OF_ID[header.class_id] is data_class
        assert header.version == 1

    def test_class_ids_are_unique(self) -> None:
        assert len({spec.class_id for spec in CLASS_SPECS}) == len(CLASS_SPECS)
        assert set(SPEC_OF) == set(DataClass)

    def test_the_same_value_seals_differently_each_time(self) -> None:
        where = binding(DataClass.TAX_ID, "a")
        assert KEYRING.seal(b"123", where, DataClass.TAX_ID) != KEYRING.seal(
            b"123", where, DataClass.TAX_ID
        )


class TestBinding:
    @given(data_class=CLASSES, plaintext=PLAINTEXTS, record=IDS, other=IDS)
    def test_a_ciphertext_moved_to_another_row_fails(
        self, data_class: DataClass, plaintext: bytes, record: str, other: str
    ) -> None:
        if other == record:
            other += "x"
        blob = KEYRING.seal(plaintext, binding(data_class, record), data_class)
        with pytest.raises(DecryptionFailed):
            KEYRING.open(blob, binding(data_class, other), data_class)

    @given(data_class=CLASSES, plaintext=PLAINTEXTS, record=IDS)
    def test_a_ciphertext_moved_to_another_column_or_table_fails(
        self, data_class: DataClass, plaintext: bytes, record: str
    ) -> None:
        blob = KEYRING.seal(plaintext, binding(data_class, record), data_class)
        with pytest.raises(DecryptionFailed):
            KEYRING.open(blob, binding(data_class, record, column="other"), data_class)
        with pytest.raises(DecryptionFailed):
            KEYRING.open(blob, binding(data_class, record, table="other"), data_class)

    @pytest.mark.spec("ENC-2")
    @given(
        pair=st.lists(CLASSES, min_size=2, max_size=2, unique=True),
        plaintext=PLAINTEXTS,
        record=IDS,
    )
    def test_one_class_key_never_opens_another_class(
        self, pair: list[DataClass], plaintext: bytes, record: str
    ) -> None:
        first, second = pair
        blob = KEYRING.seal(plaintext, binding(first, record), first)
        with pytest.raises(DecryptionFailed):
            KEYRING.open(blob, binding(first, record), second)
        # Even with the header rewritten to name the other class.
        forged = bytearray(blob)
        forged[1:3] = SPEC_OF[second].class_id.to_bytes(2, "big")
        with pytest.raises(DecryptionFailed):
            KEYRING.open(bytes(forged), binding(second, record), second)

    @settings(suppress_health_check=[HealthCheck.too_slow])
    @given(data_class=CLASSES, plaintext=PLAINTEXTS, record=IDS, data=st.data())
    def test_one_altered_bit_anywhere_fails(
        self, data_class: DataClass, plaintext: bytes, record: str, data: st.DataObject
    ) -> None:
        where = binding(data_class, record)
        blob = bytearray(KEYRING.seal(plaintext, where, data_class))
        bit = data.draw(st.integers(0, len(blob) * 8 - 1))
        blob[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(DecryptionFailed):
            KEYRING.open(bytes(blob), where, data_class)

    @given(junk=st.binary(max_size=64))
    def test_junk_never_decrypts(self, junk: bytes) -> None:
        with pytest.raises(DecryptionFailed):
            KEYRING.open(junk, binding(DataClass.TAX_ID, "r"), DataClass.TAX_ID)


VERSION_SETS = st.lists(
    st.tuples(st.integers(1, 20), st.booleans(), st.integers(0, 3)),
    min_size=1,
    max_size=8,
    unique_by=lambda v: v[0],
)


class TestVersions:
    @given(versions=VERSION_SETS, now=st.integers(0, 3), plaintext=PLAINTEXTS)
    def test_a_retired_or_pending_version_never_encrypts(
        self, versions: list[tuple[int, bool, int]], now: int, plaintext: bytes
    ) -> None:
        clock = FrozenClock(start_ns=now)
        data_class = DataClass.ACCOUNT_NUMBER
        keyring = keyring_with([(data_class, v, r, a) for v, r, a in versions], clock=clock)
        usable = [v for v, retired, activates in versions if not retired and activates <= now]
        where = binding(data_class, "r")
        if not usable:
            with pytest.raises(NoActiveKey):
                keyring.seal(plaintext, where, data_class)
            return
        blob = keyring.seal(plaintext, where, data_class)
        header = parse_header(blob)
        assert header is not None
        assert header.version == max(usable)
        assert keyring.open(blob, where, data_class) == plaintext

    def test_a_value_under_a_retired_version_is_refused(self) -> None:
        data_class = DataClass.TAX_ID
        before = keyring_with([(data_class, 1, False, 0), (data_class, 2, False, 0)])
        where = binding(data_class, "r")
        # Sealed under v2, then v2 is retired (in a keyring holding the same keys).
        blob = before.seal(b"123-45-6789", where, data_class)
        keys = before.keyset.versions[data_class]
        retired = type(before.keyset)(
            {data_class: {1: keys[1], 2: type(keys[2])(data_class, 2, True, 0, keys[2].aead)}},
            before.keyset.index_keys,
        )
        before.adopt(retired)
        with pytest.raises(DecryptionFailed, match="retired"):
            before.open(blob, where, data_class)
        assert parse_header(before.seal(b"x", where, data_class)).version == 1  # type: ignore[union-attr]

    def test_a_version_unknown_to_this_process_is_refused_not_guessed(self) -> None:
        data_class = DataClass.TAX_ID
        where = binding(data_class, "r")
        blob = bytearray(KEYRING.seal(b"x", where, data_class))
        blob[3:7] = (9).to_bytes(4, "big")
        with pytest.raises(DecryptionFailed, match="unknown"):
            KEYRING.open(bytes(blob), where, data_class)


class TestLegacyFormat:
    """Data sealed before versioned keys (LocalKeyring, the HKDF scheme) reads as version 0."""

    @given(
        data_class=st.sampled_from([c for c in DataClass if SPEC_OF[c].legacy_purpose]),
        plaintext=PLAINTEXTS,
        record=st.binary(min_size=1, max_size=40),
    )
    def test_old_format_data_still_reads_through_the_purpose_interface(
        self, data_class: DataClass, plaintext: bytes, record: bytes
    ) -> None:
        purpose = SPEC_OF[data_class].legacy_purpose
        assert purpose is not None
        old = LocalKeyring(MASTER).encrypt(plaintext, purpose=purpose, context=record)
        assert KEYRING.version_of(old, data_class) == 0
        assert KEYRING.decrypt(old, purpose=purpose, context=record) == plaintext
        # And a new write under the same purpose is in the versioned format.
        new = KEYRING.encrypt(plaintext, purpose=purpose, context=record)
        assert new[:1] == b"\x02"
        assert len(new) == HEADER_BYTES + 12 + len(plaintext) + 16
        assert KEYRING.decrypt(new, purpose=purpose, context=record) == plaintext

    def test_old_format_under_another_master_key_is_refused(self) -> None:
        old = LocalKeyring(bytes(32)).encrypt(b"s", purpose="identity.totp_secret", context=b"f")
        with pytest.raises(DecryptionFailed):
            KEYRING.decrypt(old, purpose="identity.totp_secret", context=b"f")

    def test_old_format_is_refused_once_version_0_is_retired(self) -> None:
        data_class = DataClass.TOTP_SECRET
        keyring = keyring_with([(data_class, 0, True, 0), (data_class, 1, False, 0)])
        old = LocalKeyring(MASTER).encrypt(b"s", purpose="identity.totp_secret", context=b"f")
        with pytest.raises(DecryptionFailed, match="retired"):
            keyring.decrypt(old, purpose="identity.totp_secret", context=b"f")

    def test_an_unknown_purpose_is_a_programming_error(self) -> None:
        with pytest.raises(ValueError, match="no data class"):
            KEYRING.encrypt(b"x", purpose="nobody.knows")


class TestBlindIndex:
    def test_equal_values_index_alike_and_classes_apart(self) -> None:
        a = KEYRING.blind_index(DataClass.TAX_ID, "123456789")
        assert a == KEYRING.blind_index(DataClass.TAX_ID, "123456789")
        assert a != KEYRING.blind_index(DataClass.TAX_ID, "123456780")
        assert a != KEYRING.blind_index(DataClass.ACCOUNT_NUMBER, "123456789")
        assert len(a) == 32

    def test_another_installation_indexes_differently(self) -> None:
        assert keyring_with().blind_index(DataClass.TAX_ID, "1") != KEYRING.blind_index(
            DataClass.TAX_ID, "1"
        )


def with_index_versions(
    live: dict[int, int], clock: FrozenClock | None = None
) -> tuple[Keyring, dict[int, IndexKey]]:
    """A keyring whose tax_id index keys are `live` (version -> activation time)."""
    keyring = keyring_with(clock=clock or FrozenClock())
    keys = {v: IndexKey(v, at, secrets.token_bytes(32)) for v, at in live.items()}
    index_keys = {**keyring.keyset.index_keys, DataClass.TAX_ID: keys}
    keyring.adopt(Keyset(keyring.keyset.versions, index_keys))
    return keyring, keys


class TestVersionedBlindIndex:
    @given(value=st.text(max_size=40), versions=st.sets(st.integers(1, 2**32 - 1), min_size=1))
    def test_the_stored_index_names_its_version_and_every_live_version_finds_it(
        self, value: str, versions: set[int]
    ) -> None:
        keyring, keys = with_index_versions(dict.fromkeys(versions, 0))
        stored = keyring.index_value(DataClass.TAX_ID, value)
        header = parse_index(stored)
        assert header == (SPEC_OF[DataClass.TAX_ID].class_id, max(versions))
        assert stored[INDEX_HEADER_BYTES:] == index_digest(keys[max(versions)].key, value)
        candidates = keyring.index_candidates(DataClass.TAX_ID, value)
        assert stored in candidates
        assert len(candidates) == len(versions) + (1 in versions)

    def test_a_version_indexes_only_from_its_activation_time(self) -> None:
        clock = FrozenClock()
        keyring, _ = with_index_versions({1: 0, 2: clock.now_ns() + 10}, clock)
        assert keyring.index_version(DataClass.TAX_ID) == 1
        # Lookups already match under the pending version.
        assert len(keyring.index_candidates(DataClass.TAX_ID, "1")) == 3
        clock.advance(ns=10)
        assert keyring.index_version(DataClass.TAX_ID) == 2

    def test_an_untagged_index_reads_as_version_one_and_matches_while_it_lives(self) -> None:
        keyring, _ = with_index_versions({1: 0, 2: 0})
        bare = keyring.blind_index(DataClass.TAX_ID, "123456789")
        assert parse_index(bare) == (0, 1)
        assert bare in keyring.index_candidates(DataClass.TAX_ID, "123456789")
        without_v1, _ = with_index_versions({2: 0})
        assert all(
            len(c) == INDEX_BYTES for c in without_v1.index_candidates(DataClass.TAX_ID, "1")
        )
        with pytest.raises(NoActiveKey):
            without_v1.blind_index(DataClass.TAX_ID, "123456789")

    def test_no_live_version_computes_nothing(self) -> None:
        keyring, _ = with_index_versions({})
        with pytest.raises(NoActiveKey):
            keyring.index_value(DataClass.TAX_ID, "1")
        with pytest.raises(NoActiveKey):
            keyring.index_candidates(DataClass.TAX_ID, "1")

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (b"", None),
            (b"\x03" + bytes(37), None),  # one byte short
            (bytes(31), None),
            (bytes(32), (0, 1)),
            (b"\x02" + bytes(38), None),  # a ciphertext's format byte
            (INDEX_HEADER.pack(3, 2, 7) + bytes(32), (2, 7)),
        ],
    )
    def test_only_the_two_index_forms_parse(
        self, value: bytes, expected: tuple[int, int] | None
    ) -> None:
        assert parse_index(value) == expected

    def test_a_prefix_of_another_class_is_no_version_of_this_one(self) -> None:
        prefix = INDEX_HEADER.pack(3, SPEC_OF[DataClass.ACCOUNT_NUMBER].class_id, 4)
        tax = SPEC_OF[DataClass.TAX_ID].class_id
        assert version_of_index_prefix(prefix, INDEX_BYTES, tax) is None
        assert version_of_index_prefix(prefix, INDEX_BYTES, tax - 1) == 4
        assert version_of_index_prefix(prefix[:7], 32, tax) == 1
        assert version_of_index_prefix(prefix, 40, tax) is None


class TestColumnFastPaths:
    """`seal_at` / `open_at` (the column type's paths) give and take exactly the bytes of
    `seal` / `open`, and fail, and count failures, the same way."""

    @settings(max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data_class=CLASSES, value=st.binary(max_size=64), record=st.text(max_size=40))
    def test_either_path_opens_what_the_other_sealed(
        self, data_class: DataClass, value: bytes, record: str
    ) -> None:
        keyring = keyring_with()
        binding = FieldBinding(data_class.value, "accounts", "number", record.encode())
        column_stem = stem(data_class.value, "accounts", "number")
        fast = keyring.seal_at(value, data_class, column_stem, record.encode())
        slow = keyring.seal(value, binding, data_class)
        where = ("accounts", "number")
        assert keyring.open(fast, binding, data_class) == value
        assert keyring.open_at(slow, data_class, record.encode(), where) == value

    def test_a_moved_or_altered_value_fails_the_fast_path_and_is_counted(self) -> None:
        keyring = keyring_with()
        failed: list[DataClass] = []
        keyring.on_decryption_failed = failed.append
        column_stem = stem("tax_id", "accounts", "tax_id")
        here = ("accounts", "tax_id")
        sealed = keyring.seal_at(b"123-45-6789", DataClass.TAX_ID, column_stem, b"row-1")
        flipped = sealed[:-1] + bytes([sealed[-1] ^ 1])
        for blob, where, record in (
            (sealed, here, b"row-2"),  # another row
            (sealed, ("accounts", "other"), b"row-1"),  # another column
            (flipped, here, b"row-1"),  # one bit
            (sealed[:10], here, b"row-1"),  # cut short
        ):
            with pytest.raises(DecryptionFailed):
                keyring.open_at(blob, DataClass.TAX_ID, record, where)
        assert failed == [DataClass.TAX_ID] * 4
