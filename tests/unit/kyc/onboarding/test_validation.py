"""The application's field rules (KYC-1): CIP identity, SSN/ITIN formats, address, employment,
funding and the investment profile; errors name the field and never echo the value."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from tests.support.kyc_applications import COMPLETE, application
from tradeguard.kyc.onboarding.domain import TaxIdKind
from tradeguard.kyc.onboarding.validation import (
    SCHEMA,
    ApplicationInvalid,
    check_address,
    clean,
    missing,
    us_tax_id,
    valid_itin,
    valid_ssn,
)

TODAY = date(2026, 1, 5)


def _clean(sections: dict[str, Any]) -> Any:
    return clean(sections, today=TODAY, min_age=18)


def _check(sections: dict[str, Any]) -> None:
    check_address(_clean(sections).sections)


def _refused(section: str, name: str, value: Any) -> ApplicationInvalid:
    with pytest.raises(ApplicationInvalid) as caught:
        _check({section: {name: value}})
    return caught.value


@pytest.mark.spec("KYC-1")
class TestTaxIds:
    @pytest.mark.parametrize(
        "ssn",
        [
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "999-12-3456",
            "123-00-4567",
            "123-45-0000",
            "078-05-1120",
            "219-09-9999",
            "111-11-1111",
            "123456789",
        ],
    )
    def test_invalid_ssns_are_refused_without_echoing_them(self, ssn: str) -> None:
        error = _refused("identity", "tax_id", ssn)
        assert error.field == "identity.tax_id"
        digits = ssn.replace("-", "")
        assert digits not in error.detail
        assert ssn not in error.detail
        assert str(error.extensions).find(digits) == -1

    @pytest.mark.parametrize("ssn", ["123-45-6780", "123 45 6780", "001-01-0001", "899-99-9999"])
    def test_valid_ssns_are_accepted_and_normalized(self, ssn: str) -> None:
        tax = us_tax_id("identity.tax_id", ssn)
        assert tax.kind is TaxIdKind.SSN
        assert tax.value == "".join(c for c in ssn if c.isdigit())
        assert tax.last4 == tax.value[-4:]

    @pytest.mark.parametrize(
        "itin",
        [
            "912-50-1234",
            "912-65-1234",
            "912-70-1234",
            "912-88-1234",
            "912-90-1234",
            "912-92-1234",
            "912-94-1234",
            "912-99-1234",
        ],
    )
    def test_itins_in_the_issued_groups_are_accepted(self, itin: str) -> None:
        assert us_tax_id("identity.tax_id", itin).kind is TaxIdKind.ITIN

    @pytest.mark.parametrize(
        "itin",
        ["912-49-1234", "912-66-1234", "912-69-1234", "912-89-1234", "912-93-1234", "912-00-1234"],
    )
    def test_itins_outside_the_issued_groups_are_refused(self, itin: str) -> None:
        assert _refused("identity", "tax_id", itin).field == "identity.tax_id"

    @pytest.mark.parametrize("bad", ["12-345-6789", "1234567890", "abc-de-fghi", "", "123-45-678"])
    def test_malformed_tax_ids_are_refused(self, bad: str) -> None:
        assert _refused("identity", "tax_id", bad).field == "identity.tax_id"

    def test_the_rules_agree_with_the_predicates(self) -> None:
        assert valid_ssn("123456780")
        assert not valid_ssn("666123456")
        assert valid_itin("912701234")
        assert not valid_itin("123701234")

    def test_a_tax_id_country_saved_before_still_applies(self) -> None:
        cleaned = clean(
            {"identity": {"tax_id": "AB123456C"}}, today=TODAY, min_age=18, tax_id_country="GB"
        )
        assert cleaned.tax_id is not None
        assert cleaned.tax_id.kind is TaxIdKind.FOREIGN

    def test_a_foreign_tax_id_needs_its_country_and_is_kept_with_it(self) -> None:
        cleaned = _clean({"identity": {"tax_id": "AB 123456 C", "tax_id_country": "GB"}})
        assert cleaned.tax_id is not None
        assert cleaned.tax_id.kind is TaxIdKind.FOREIGN
        assert cleaned.tax_id.value == "GB:AB123456C"
        assert "tax_id" not in cleaned.sections["identity"]


@pytest.mark.spec("KYC-1")
class TestIdentity:
    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("given_names", ""),
            ("given_names", "Al1ce"),
            ("given_names", "<script>"),
            ("family_name", "x" * 101),
            ("family_name", 42),
            ("birth_date", "30/04/1985"),
            ("birth_date", "2030-01-01"),
            ("birth_date", "2010-01-01"),
            ("birth_date", "1890-01-01"),
            ("nationality", "USA"),
            ("nationality", "XX"),
        ],
    )
    def test_bad_identity_fields_are_refused_by_name(self, name: str, value: Any) -> None:
        assert _refused("identity", name, value).field == f"identity.{name}"

    def test_names_in_any_script_with_hyphens_and_apostrophes_are_accepted(self) -> None:
        cleaned = _clean({"identity": {"given_names": "Zoë  Anne-Marie", "family_name": "O'Brien"}})
        assert cleaned.sections["identity"]["given_names"] == "Zoë Anne-Marie"
        _clean({"identity": {"family_name": "山田", "given_names": "Ünal"}})

    def test_the_minimum_age_is_the_firms(self) -> None:
        clean({"identity": {"birth_date": "2008-01-05"}}, today=TODAY, min_age=18)
        with pytest.raises(ApplicationInvalid):
            clean({"identity": {"birth_date": "2008-01-06"}}, today=TODAY, min_age=18)
        with pytest.raises(ApplicationInvalid):
            clean({"identity": {"birth_date": "2008-01-05"}}, today=TODAY, min_age=21)


@pytest.mark.spec("KYC-1")
class TestAddress:
    @pytest.mark.parametrize(
        "line", ["PO Box 12", "P.O. Box 12", "p o box 7", "Post Office Box 3", "General Delivery"]
    )
    def test_po_boxes_are_no_residential_address(self, line: str) -> None:
        with pytest.raises(ApplicationInvalid) as caught:
            check_address(_clean({"address": {"line1": line}}).sections)
        assert caught.value.field == "address.line1"

    @pytest.mark.parametrize("postal", ["1234", "123456", "ABCDE", "12345-12"])
    def test_us_postal_codes_are_zip_codes(self, postal: str) -> None:
        with pytest.raises(ApplicationInvalid) as caught:
            check_address(_clean({"address": {"postal_code": postal, "country": "US"}}).sections)
        assert caught.value.field == "address.postal_code"

    def test_zip_plus_four_and_foreign_postcodes_are_accepted(self) -> None:
        check_address(_clean({"address": {"postal_code": "62701-1234", "country": "US"}}).sections)
        check_address(_clean({"address": {"postal_code": "SW1A 1AA", "country": "GB"}}).sections)

    def test_a_street_named_box_is_not_a_po_box(self) -> None:
        check_address(_clean({"address": {"line1": "12 Boxwood Lane"}}).sections)


@pytest.mark.spec("KYC-1")
class TestEmploymentFundingProfile:
    @pytest.mark.parametrize(
        ("section", "name", "value"),
        [
            ("employment", "status", "astronaut"),
            ("employment", "occupation", "pirate"),
            ("employment", "broker_dealer_affiliated", "yes"),
            ("employment", "control_person_symbols", ["not a symbol"]),
            ("employment", "control_person_symbols", []),
            ("funding", "source_of_funds", []),
            ("funding", "source_of_funds", ["lottery"]),
            ("funding", "source_of_wealth", ["savings", "savings"]),
            ("profile", "annual_income", "lots"),
            ("profile", "net_worth", "100"),
            ("profile", "experience", "expert"),
            ("profile", "objectives", ["yolo"]),
            ("profile", "risk_tolerance", "extreme"),
            ("profile", "time_horizon", "forever"),
            ("profile", "expected_monthly_deposits", "-1"),
            ("profile", "expected_monthly_deposits", "1.234"),
            ("profile", "expected_monthly_deposits", "NaN"),
            ("profile", "expected_monthly_withdrawals", "1e12"),
            ("preferences", "marketing_opt_in", "sure"),
        ],
    )
    def test_bad_values_are_refused_by_name(self, section: str, name: str, value: Any) -> None:
        assert _refused(section, name, value).field == f"{section}.{name}"

    def test_unknown_sections_and_fields_are_refused(self) -> None:
        with pytest.raises(ApplicationInvalid):
            _clean({"hobbies": {"golf": True}})
        with pytest.raises(ApplicationInvalid):
            _clean({"identity": {"shoe_size": "9"}})


@pytest.mark.spec("KYC-1")
class TestSubmission:
    def _missing(self, body: dict[str, Any]) -> list[str]:
        cleaned = _clean(body)
        return missing(cleaned.sections, cleaned.tax_id is not None)

    def test_a_complete_application_misses_nothing(self) -> None:
        assert self._missing(application()) == []

    def test_every_required_field_is_named_when_missing(self) -> None:
        for section, fields in SCHEMA.items():
            for name, required in fields.items():
                if required and section in COMPLETE:
                    body = application(**{section: {name: None}})
                    assert f"{section}.{name}" in self._missing(body), (section, name)

    def test_a_us_person_needs_a_tax_id(self) -> None:
        assert "identity.tax_id" in self._missing(application(identity={"tax_id": None}))

    def test_a_non_us_person_gives_a_foreign_tax_id_or_a_reason(self) -> None:
        abroad = {
            "line1": "5 Rue X",
            "city": "Paris",
            "country": "FR",
            "region": None,
            "postal_code": "75001",
        }
        body = application(identity={"tax_id": None, "nationality": "FR"}, address=abroad)
        assert "identity.no_tax_id_reason" in self._missing(body)
        body["identity"]["no_tax_id_reason"] = "France does not issue one to me"
        assert self._missing(body) == []
        body["identity"].pop("no_tax_id_reason")
        body["identity"] |= {"tax_id": "1234567890123", "tax_id_country": "FR"}
        assert self._missing(body) == []

    def test_conditional_fields(self) -> None:
        assert {"employment.employer", "employment.occupation"} <= set(
            self._missing(application(employment={"employer": None, "occupation": None}))
        )
        assert (
            self._missing(
                application(employment={"status": "retired", "employer": None, "occupation": None})
            )
            == []
        )
        assert "employment.broker_dealer_name" in self._missing(
            application(employment={"broker_dealer_affiliated": True})
        )
        assert "employment.control_person_symbols" in self._missing(
            application(employment={"control_person": True})
        )
        assert "employment.pep_details" in self._missing(
            application(employment={"politically_exposed": True})
        )
        assert "funding.source_of_funds_details" in self._missing(
            application(funding={"source_of_funds": ["other"]})
        )

    def test_liquid_net_worth_cannot_exceed_net_worth(self) -> None:
        body = application(profile={"liquid_net_worth": "1m_5m"})
        assert any("liquid_net_worth" in m for m in self._missing(body))

    def test_a_us_address_needs_region_and_zip(self) -> None:
        body = application(address={"region": None, "postal_code": None})
        assert {"address.region", "address.postal_code"} <= set(self._missing(body))
