"""Names reduced to comparable words (kyc/sanctions/normalize.py)."""

from __future__ import annotations

import pytest

from tradeguard.kyc.sanctions.normalize import fold, name_words


class TestFold:
    @pytest.mark.parametrize(
        ("written", "folded"),
        [
            ("José  María", "jose maria"),
            ("ＯＬＥＧ", "oleg"),  # full-width letters (NFKC)
            ("Straße", "strasse"),  # case folding
            ("O'Brien-Smith", "obrien smith"),
            ("Владимир Путин", "vladimir putin"),
            ("Ελευθέριος", "eleytherios"),
        ],
    )
    def test_any_script_and_accent_becomes_plain_latin_words(
        self, written: str, folded: str
    ) -> None:
        assert fold(written) == folded


class TestNameWords:
    def test_honorifics_and_titles_are_dropped(self) -> None:
        assert name_words("Dr. Sheikh Haji Ahmed ALI") == ("ahmed", "ali")

    def test_company_forms_are_dropped(self) -> None:
        assert name_words("GAZPROM BURENIE, OOO") == ("gazprom", "burenie")
        assert name_words("Acme Trading Co. Ltd") == ("acme", "trading")
        assert name_words("Muster GmbH") == name_words("MUSTER S.A.")

    def test_dotted_company_forms_go_and_initials_stay(self) -> None:
        assert name_words("TNK TRADING INTERNATIONAL S.A.") == ("tnk", "trading", "international")
        assert name_words("Acme L.L.C.") == ("acme",)
        assert name_words("A. B. Smith") == ("a", "b", "smith")
        assert name_words("B-FINANCE LTD") == ("b", "finance")

    def test_russian_endings_are_spelt_one_way(self) -> None:
        assert name_words("Юрий Аркадий") == name_words("Yuriy Arkady") == ("yury", "arkady")

    def test_a_name_that_is_only_a_title_keeps_it(self) -> None:
        assert name_words("Co.") == ("co",)

    def test_punctuation_only_is_no_words(self) -> None:
        assert name_words(" .,;- ") == ()
