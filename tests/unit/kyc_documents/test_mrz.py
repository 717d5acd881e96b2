"""ICAO Doc 9303 MRZ parsing and checks, proven on Doc 9303's own worked examples."""

from __future__ import annotations

from datetime import date

import pytest

from tests.support.kyc_files import SPECIMEN_DAY, TD1_SPECIMEN, TD2_SPECIMEN, TD3_SPECIMEN, td3
from tradeguard.kyc.contracts import ApplicantFacts
from tradeguard.kyc.documents.countries import CodeKind, icao_code
from tradeguard.kyc.documents.mrz import (
    Inconsistency,
    MrzFormat,
    MrzProblem,
    MrzUnreadable,
    check_digit,
    inconsistencies,
    mrz_problems,
    name_matches,
    parse_mrz,
)


def _applicant(**overrides: object) -> ApplicantFacts:
    fields: dict[str, object] = {
        "user_id": "u1",
        "application_id": "a1",
        "given_names": "Anna Maria",
        "family_name": "Eriksson",
        "birth_date": date(1974, 8, 12),
        "nationality": "DE",
        "country": "DE",
        "status": "submitted",
    } | overrides
    return ApplicantFacts(**fields)  # type: ignore[arg-type]


def _corrupt(mrz: str, line: int, position: int, replacement: str) -> str:
    lines = mrz.split("\n")
    text = lines[line]
    lines[line] = text[:position] + replacement + text[position + 1 :]
    return "\n".join(lines)


@pytest.mark.spec("KYC-2")
class TestCheckDigits:
    def test_the_weights_7_3_1_give_doc_9303s_digits(self) -> None:
        # Part 3, 4.9 worked example: date 27 07 1952 -> "520727" has check digit 3.
        assert check_digit("520727") == "3"
        assert check_digit("L898902C3") == "6"
        assert check_digit("740812") == "2"
        assert check_digit("120415") == "9"
        assert check_digit("D23145890") == "7"

    def test_fillers_count_as_zero_and_letters_from_ten(self) -> None:
        assert check_digit("<<<") == "0"
        assert check_digit("A") == str(10 * 7 % 10)


@pytest.mark.spec("KYC-2")
class TestTd3Specimen:
    def test_the_part_4_passport_specimen_parses_and_passes_every_check(self) -> None:
        record = parse_mrz(TD3_SPECIMEN, today=SPECIMEN_DAY)
        assert record.format is MrzFormat.TD3
        assert record.document_code == "P"
        assert record.issuing_state == "UTO"
        assert record.document_number == "L898902C3"
        assert record.nationality == "UTO"
        assert record.birth_date == date(1974, 8, 12)
        assert record.sex == "F"
        assert record.expiry_date == date(2012, 4, 15)
        assert record.optional_data == "ZE184226B"
        assert record.family_name == "ERIKSSON"
        assert record.given_names == "ANNA MARIA"
        assert mrz_problems(record, today=SPECIMEN_DAY) == ()

    @pytest.mark.parametrize(
        ("position", "digit", "problem"),
        [
            (9, "7", MrzProblem.DOCUMENT_NUMBER_CHECK_FAILED),
            (19, "3", MrzProblem.BIRTH_DATE_CHECK_FAILED),
            (27, "8", MrzProblem.EXPIRY_DATE_CHECK_FAILED),
            (42, "2", MrzProblem.OPTIONAL_DATA_CHECK_FAILED),
            (43, "1", MrzProblem.COMPOSITE_CHECK_FAILED),
        ],
    )
    def test_a_corrupted_check_digit_fails_by_name(
        self, position: int, digit: str, problem: MrzProblem
    ) -> None:
        record = parse_mrz(_corrupt(TD3_SPECIMEN, 1, position, digit), today=SPECIMEN_DAY)
        assert problem in record.problems

    def test_a_changed_data_character_fails_its_digit_and_the_composite(self) -> None:
        # Birth 740812 -> 740813: the birth date's digit and the composite both fail.
        record = parse_mrz(_corrupt(TD3_SPECIMEN, 1, 18, "3"), today=SPECIMEN_DAY)
        assert MrzProblem.BIRTH_DATE_CHECK_FAILED in record.problems
        assert MrzProblem.COMPOSITE_CHECK_FAILED in record.problems

    def test_the_specimen_is_expired_today(self) -> None:
        record = parse_mrz(TD3_SPECIMEN, today=date(2026, 1, 5))
        assert mrz_problems(record, today=date(2026, 1, 5)) == (MrzProblem.DOCUMENT_EXPIRED,)


@pytest.mark.spec("KYC-2")
class TestTd1Specimen:
    def test_the_part_5_id_card_specimen_parses_and_passes_every_check(self) -> None:
        record = parse_mrz(TD1_SPECIMEN, today=SPECIMEN_DAY)
        assert record.format is MrzFormat.TD1
        assert record.document_code == "I"
        assert record.document_number == "D23145890"
        assert record.birth_date == date(1974, 8, 12)
        assert record.expiry_date == date(2012, 4, 15)
        assert (record.family_name, record.given_names) == ("ERIKSSON", "ANNA MARIA")
        assert mrz_problems(record, today=SPECIMEN_DAY) == ()

    @pytest.mark.parametrize(
        ("line", "position", "digit", "problem"),
        [
            (0, 14, "1", MrzProblem.DOCUMENT_NUMBER_CHECK_FAILED),
            (1, 6, "0", MrzProblem.BIRTH_DATE_CHECK_FAILED),
            (1, 14, "0", MrzProblem.EXPIRY_DATE_CHECK_FAILED),
            (1, 29, "5", MrzProblem.COMPOSITE_CHECK_FAILED),
        ],
    )
    def test_a_corrupted_check_digit_fails(
        self, line: int, position: int, digit: str, problem: MrzProblem
    ) -> None:
        record = parse_mrz(_corrupt(TD1_SPECIMEN, line, position, digit), today=SPECIMEN_DAY)
        assert problem in record.problems


@pytest.mark.spec("KYC-2")
class TestTd2Specimen:
    def test_the_part_6_specimen_parses_and_passes_every_check(self) -> None:
        record = parse_mrz(TD2_SPECIMEN, today=SPECIMEN_DAY)
        assert record.format is MrzFormat.TD2
        assert record.document_number == "D23145890"
        assert record.birth_date == date(1974, 8, 12)
        assert record.expiry_date == date(2012, 4, 15)
        assert record.given_names == "ANNA MARIA"
        assert mrz_problems(record, today=SPECIMEN_DAY) == ()

    def test_a_corrupted_composite_fails(self) -> None:
        record = parse_mrz(_corrupt(TD2_SPECIMEN, 1, 35, "1"), today=SPECIMEN_DAY)
        assert record.problems == (MrzProblem.COMPOSITE_CHECK_FAILED,)


@pytest.mark.spec("KYC-2")
class TestFields:
    def test_an_unknown_shape_or_character_is_unreadable(self) -> None:
        with pytest.raises(MrzUnreadable):
            parse_mrz("P<UTOERIKSSON", today=SPECIMEN_DAY)
        with pytest.raises(MrzUnreadable):
            parse_mrz(TD3_SPECIMEN.replace("ANNA", "AN-A"), today=SPECIMEN_DAY)

    def test_a_bad_sex_and_unknown_state_are_named(self) -> None:
        mrz = td3(sex="Q", state="ZZZ")
        record = parse_mrz(mrz, today=SPECIMEN_DAY)
        assert MrzProblem.SEX_INVALID in record.problems
        assert MrzProblem.ISSUING_STATE_UNKNOWN in record.problems

    def test_a_birth_date_that_is_no_date_is_invalid(self) -> None:
        record = parse_mrz(td3(birth="741332"), today=SPECIMEN_DAY)
        assert MrzProblem.BIRTH_DATE_INVALID in mrz_problems(record, today=SPECIMEN_DAY)

    def test_expiry_is_judged_by_the_given_day(self) -> None:
        record = parse_mrz(td3(expiry="260104"), today=date(2026, 1, 5))
        assert mrz_problems(record, today=date(2026, 1, 5)) == (MrzProblem.DOCUMENT_EXPIRED,)
        record = parse_mrz(td3(expiry="260106"), today=date(2026, 1, 5))
        assert mrz_problems(record, today=date(2026, 1, 5)) == ()

    def test_a_birth_year_is_never_in_the_future(self) -> None:
        record = parse_mrz(td3(birth="300101"), today=date(2026, 1, 5))
        assert record.birth_date == date(1930, 1, 1)


@pytest.mark.spec("KYC-2")
class TestCountryCodes:
    def test_germany_is_d_and_the_icao_special_codes_are_known(self) -> None:
        germany = icao_code("D<<")
        assert germany is not None
        assert germany.alpha2 == "DE"
        assert icao_code("GBR") is not None
        assert icao_code("GBD") is not None
        assert icao_code("GBD").alpha2 == "GB"  # type: ignore[union-attr]
        stateless = icao_code("XXA")
        assert stateless is not None
        assert (stateless.kind, stateless.alpha2) == (CodeKind.SPECIAL, None)
        assert icao_code("UNO") is not None
        assert icao_code("RKS").alpha2 == "XK"  # type: ignore[union-attr]
        assert icao_code("UTO").kind is CodeKind.SPECIMEN  # type: ignore[union-attr]
        assert icao_code("QQQ") is None


@pytest.mark.spec("KYC-2")
class TestConsistency:
    def test_the_specimen_agrees_with_its_holder_but_utopia_is_no_nationality(self) -> None:
        record = parse_mrz(TD3_SPECIMEN, today=SPECIMEN_DAY)
        assert inconsistencies(record, _applicant()) == (Inconsistency.NATIONALITY_MISMATCH,)

    def test_a_german_passport_agrees_with_its_holder(self) -> None:
        record = parse_mrz(td3(), today=SPECIMEN_DAY)
        assert inconsistencies(record, _applicant()) == ()

    def test_each_disagreement_is_named(self) -> None:
        record = parse_mrz(td3(), today=SPECIMEN_DAY)
        found = inconsistencies(
            record,
            _applicant(
                family_name="Andersson",
                given_names="Berit",
                birth_date=date(1974, 8, 13),
                nationality="SE",
            ),
        )
        assert found == (
            Inconsistency.FAMILY_NAME_MISMATCH,
            Inconsistency.GIVEN_NAMES_MISMATCH,
            Inconsistency.BIRTH_DATE_MISMATCH,
            Inconsistency.NATIONALITY_MISMATCH,
        )

    def test_diacritics_are_transliterated_as_icao_does(self) -> None:
        record = parse_mrz(td3(family="MUELLER", given="JOERG"), today=SPECIMEN_DAY)
        assert inconsistencies(record, _applicant(family_name="Müller", given_names="Jörg")) == ()
        record = parse_mrz(td3(family="MULLER", given="JORG"), today=SPECIMEN_DAY)
        assert inconsistencies(record, _applicant(family_name="Müller", given_names="Jörg")) == ()
        assert name_matches("GARCIA MARQUEZ", "García Márquez", truncated=False)
        assert name_matches("OCONNOR", "O'Connor", truncated=False)

    def test_a_long_name_truncated_in_the_mrz_still_matches(self) -> None:
        family = "WOLFESCHLEGELSTEINHAUSENBERGERDORFF"
        mrz = td3(family=family, given="HUBERT BLAINE")
        record = parse_mrz(mrz, today=SPECIMEN_DAY)
        assert record.name_truncated
        assert (
            inconsistencies(
                record, _applicant(family_name=family.title(), given_names="Hubert Blaine")
            )
            == ()
        )
        assert Inconsistency.GIVEN_NAMES_MISMATCH in inconsistencies(
            record, _applicant(family_name=family.title(), given_names="Karl")
        )
