"""Backup codes: count, entropy, hashed storage, normalization and single use."""

from __future__ import annotations

import hmac
import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeguard.identity.mfa import backup_codes
from tradeguard.identity.mfa.backup_codes import BackupCodeBook, normalize_code

PEPPER = bytes(range(32))
CODE_PATTERN = re.compile(r"^[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{5}$")


@pytest.fixture
def book() -> BackupCodeBook:
    return BackupCodeBook(PEPPER)


@pytest.mark.spec("AUTH-7")
class TestBackupCodes:
    def test_at_least_ten_distinct_codes_are_generated(self, book: BackupCodeBook) -> None:
        codes, hashes = book.generate()

        assert len(codes) >= 10
        assert len(set(codes)) == len(codes)
        assert len(hashes) == len(codes)

    def test_each_code_carries_at_least_64_bits_of_entropy(self, book: BackupCodeBook) -> None:
        codes, _ = book.generate()

        assert len(set(backup_codes.ALPHABET)) == 32
        assert backup_codes.CODE_LENGTH * math.log2(len(backup_codes.ALPHABET)) >= 64
        assert backup_codes.ENTROPY_BITS >= 64
        assert all(CODE_PATTERN.match(code) for code in codes)

    def test_stored_hashes_are_not_the_codes(self, book: BackupCodeBook) -> None:
        codes, hashes = book.generate()

        for code, digest in zip(codes, hashes, strict=True):
            assert len(digest) == 32
            assert code.replace("-", "").encode() not in digest
            assert code.encode() not in digest

    def test_a_code_matches_its_own_index(self, book: BackupCodeBook) -> None:
        codes, hashes = book.generate()

        assert [book.match(code, hashes) for code in codes] == list(range(len(codes)))

    def test_a_spent_code_no_longer_matches(self, book: BackupCodeBook) -> None:
        codes, hashes = book.generate()
        stored: list[bytes | None] = list(hashes)
        index = book.match(codes[3], stored)
        assert index == 3

        stored[index] = None

        assert book.match(codes[3], stored) is None
        assert book.match(codes[4], stored) == 4

    def test_input_is_case_insensitive_and_ignores_separators(self, book: BackupCodeBook) -> None:
        codes, hashes = book.generate()
        typed = " " + codes[0].lower().replace("-", " ") + " "

        assert book.match(typed, hashes) == 0
        assert book.match(codes[1].replace("-", ""), hashes) == 1

    def test_crockford_aliases_read_i_and_l_as_one_and_o_as_zero(self) -> None:
        assert normalize_code("ILO0-1111-22222") == "1100111122222"

    @pytest.mark.parametrize(
        "code", ["", "ABCD-EFGH-JKMN", "ABCD-EFGH-JKMNPQ", "ABCD-EFGH-JKMN!", "UUUU-UUUU-UUUUU"]
    )
    def test_malformed_codes_never_match(self, book: BackupCodeBook, code: str) -> None:
        _, hashes = book.generate()

        assert book.match(code, hashes) is None

    def test_a_code_from_another_pepper_does_not_match(self, book: BackupCodeBook) -> None:
        codes, _ = book.generate()
        _, other_hashes = BackupCodeBook(bytes(32)).generate()

        assert book.match(codes[0], other_hashes) is None

    def test_every_stored_hash_is_compared_even_after_a_match(
        self, book: BackupCodeBook, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        codes, hashes = book.generate()
        stored: list[bytes | None] = [*hashes[:5], None, *hashes[6:]]
        calls: list[bytes] = []
        real = hmac.compare_digest

        def counting(a: bytes, b: bytes) -> bool:
            calls.append(a)
            return real(a, b)

        monkeypatch.setattr(hmac, "compare_digest", counting)

        assert book.match(codes[0], stored) == 0
        assert len(calls) == len(stored)

    def test_a_short_pepper_or_too_few_codes_is_refused(self) -> None:
        with pytest.raises(ValueError, match="pepper"):
            BackupCodeBook(b"short")
        with pytest.raises(ValueError, match="at least 10"):
            BackupCodeBook(PEPPER, count=9)

    @settings(max_examples=50, deadline=None)
    @given(
        data=st.data(),
        raw=st.text(alphabet=backup_codes.ALPHABET, min_size=13, max_size=13),
    )
    def test_any_casing_and_separators_normalize_to_the_same_code(
        self, data: st.DataObject, raw: str
    ) -> None:
        typed = "".join(
            data.draw(st.sampled_from([c, c.lower()]))
            + data.draw(st.sampled_from(["", "", "-", " "]))
            for c in raw
        )

        assert normalize_code(typed) == raw
        book = BackupCodeBook(PEPPER)
        assert book.match(typed, [book.hash_code(raw)]) == 0
