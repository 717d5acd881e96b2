"""The outside review's findings on the application's field rules (KYC-1): tax ids and postal
codes in ASCII digits only, a US person's SSN or ITIN, PO boxes in any spelling, USPS
regions, names of letters only, liquid net worth within net worth."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from tradeguard.kyc.onboarding.validation import (
    ApplicationInvalid,
    check_address,
    check_declarations,
    check_tax_id_kind,
    clean,
)

TODAY = date(2026, 1, 5)


def _checked(sections: dict[str, Any]) -> dict[str, Any]:
    cleaned = clean(sections, today=TODAY, min_age=18).sections
    check_address(cleaned)
    check_declarations(cleaned)
    return cleaned


def _refused(sections: dict[str, Any], tax_id_country: str = "US") -> ApplicationInvalid:
    def run() -> None:
        cleaned = clean(sections, today=TODAY, min_age=18, tax_id_country=tax_id_country)
        check_address(cleaned.sections)
        check_declarations(cleaned.sections)

    with pytest.raises(ApplicationInvalid) as caught:
        run()
    return caught.value


@pytest.mark.spec("KYC-1")
class TestTaxIdDigits:
    @pytest.mark.parametrize(
        "value",
        [
            "\uff12\uff11\uff19-\uff10\uff19-\uff19\uff19\uff19\uff18",  # fullwidth
            "\u0662\u0661\u0669-\u0660\u0669-\u0669\u0669\u0669\u0668",  # Arabic-Indic
            "\u0968\u0967\u096f\u0966\u096f\u096f\u096f\u096f\u096e",  # Devanagari
            "219-09-999\uff18",  # one fullwidth digit
        ],
    )
    def test_non_ascii_digits_are_refused(self, value: str) -> None:
        error = _refused({"identity": {"tax_id": value}})
        assert error.field == "identity.tax_id"
        assert value not in str(error)

    def test_ascii_digits_still_pass_with_ascii_last4(self) -> None:
        cleaned = clean({"identity": {"tax_id": "219-09-9998"}}, today=TODAY, min_age=18)
        assert cleaned.tax_id is not None
        assert cleaned.tax_id.last4 == "9998"

    def test_a_foreign_tax_id_in_fullwidth_is_refused(self) -> None:
        error = _refused(
            {"identity": {"tax_id": "\uff21\uff22\uff23123456", "tax_id_country": "DE"}}
        )
        assert error.field == "identity.tax_id"

    @pytest.mark.parametrize(
        "postal", ["\uff11\uff10\uff10\uff10\uff11", "1000\u0661", "SW1A\u200b1AA"]
    )
    def test_postal_codes_in_non_ascii_are_refused(self, postal: str) -> None:
        error = _refused({"address": {"country": "GB", "postal_code": postal}})
        assert error.field == "address.postal_code"


@pytest.mark.spec("KYC-1")
class TestUsPersonTaxId:
    @pytest.mark.parametrize(
        "sections",
        [
            {"identity": {"nationality": "US"}, "address": {"country": "DE"}},
            {"identity": {"nationality": "DE"}, "address": {"country": "US"}},
        ],
    )
    def test_a_us_person_with_only_a_foreign_tax_id_is_refused(
        self, sections: dict[str, Any]
    ) -> None:
        with pytest.raises(ApplicationInvalid) as caught:
            check_tax_id_kind(sections, "foreign")
        assert caught.value.field == "identity.tax_id"

    def test_a_us_person_with_an_ssn_and_a_non_us_person_with_a_foreign_id_pass(self) -> None:
        check_tax_id_kind({"identity": {"nationality": "US"}}, "ssn")
        check_tax_id_kind(
            {"identity": {"nationality": "DE"}, "address": {"country": "DE"}}, "foreign"
        )


@pytest.mark.spec("KYC-1")
class TestAddress:
    @pytest.mark.parametrize(
        "line",
        [
            "P.O.B. 12",
            "PMB 44",
            "Lock Bag 3",
            "Locked Bag 3",
            "Postfach 12",
            "Apartado 5",
            "Bo\u00eete postale 7",
            "\uff30\uff2f \uff22\uff4f\uff58 9",
            "Caixa Postal 4",
        ],
    )
    def test_po_boxes_in_any_spelling_are_refused(self, line: str) -> None:
        error = _refused({"address": {"line1": line, "country": "DE"}})
        assert error.field == "address.line1"

    @pytest.mark.parametrize("street", ["12 Pmbrook Lane", "4 Boxwood Court", "1 Main Street"])
    def test_streets_are_still_accepted(self, street: str) -> None:
        _checked({"address": {"line1": street, "country": "US", "region": "NY"}})

    @pytest.mark.parametrize("region", ["XX", "ZZ", "Illinois", "ny"])
    def test_a_us_region_must_be_a_usps_code(self, region: str) -> None:
        error = _refused({"address": {"country": "US", "region": region}})
        assert error.field == "address.region"

    def test_usps_codes_and_territories_pass(self) -> None:
        for region in ("IL", "DC", "PR", "GU"):
            _checked({"address": {"country": "US", "region": region}})


@pytest.mark.spec("KYC-1")
class TestNames:
    @pytest.mark.parametrize(
        "name",
        [
            "Ann\u202eA",  # right-to-left override
            "An\u200bna",  # zero-width space
            "An\u200dna",  # zero-width joiner
            "Anna\ufeff",  # byte-order mark
            "Anna \U0001f600",  # emoji
            "Anna\u2122",  # trade mark sign
            "Anna\u00a9",
        ],
    )
    def test_format_control_and_symbol_characters_are_refused(self, name: str) -> None:
        error = _refused({"identity": {"given_names": name}})
        assert error.field == "identity.given_names"

    @pytest.mark.parametrize("name", ["Jos\u00e9", "O'Brien", "Anne-Marie", "\u674e", "J. R."])
    def test_letters_of_any_script_still_pass(self, name: str) -> None:
        _checked({"identity": {"given_names": name}})


@pytest.mark.spec("KYC-1")
def test_liquid_net_worth_above_net_worth_is_refused_at_save() -> None:
    profile = {"net_worth": "under_50k", "liquid_net_worth": "over_5m"}
    error = _refused({"profile": profile})
    assert error.field == "profile.liquid_net_worth"
