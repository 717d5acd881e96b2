"""Customer risk rating (KYC-2): each documented factor, the bands, review dates."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from tests.support.kyc_applications import application, high_risk
from tradeguard.config import Settings
from tradeguard.kyc.contracts import RiskRating, ScreeningDecision
from tradeguard.kyc.onboarding.risk import (
    HIGH_FROM,
    MEDIUM_FROM,
    RULES,
    assess,
    band,
    next_review,
    with_override,
)

FATF = frozenset(Settings(_env_file=None).kyc_high_risk_countries)  # type: ignore[call-arg]


def _codes(body: dict[str, Any], **extra: Any) -> dict[str, int]:
    result = assess(body, high_risk_countries=FATF, **extra)
    return {factor.code: factor.points for factor in result.factors}


@pytest.mark.spec("KYC-2")
class TestFactors:
    def test_an_ordinary_us_customer_is_low_with_no_factors(self) -> None:
        result = assess(application(), high_risk_countries=FATF)
        assert result.rating is RiskRating.LOW
        assert result.factors == ()
        assert result.score == 0

    def test_residence_in_a_fatf_listed_country_is_high(self) -> None:
        body = application(address={"country": "IR", "region": None, "postal_code": None})
        result = assess(body, high_risk_countries=FATF)
        assert result.rating is RiskRating.HIGH
        codes = {f.code for f in result.factors}
        assert {"RESIDENCE_HIGH_RISK", "NON_RESIDENT"} <= codes
        assert any("IR" in f.explanation for f in result.factors)

    def test_nationality_of_a_listed_country_counts_once(self) -> None:
        assert _codes(application(identity={"nationality": "KP"})) == {"NATIONALITY_HIGH_RISK": 25}

    def test_a_self_declared_pep_is_high(self) -> None:
        result = assess(high_risk(), high_risk_countries=FATF)
        assert result.rating is RiskRating.HIGH
        assert "SELF_DECLARED_PEP" in {f.code for f in result.factors}

    @pytest.mark.parametrize(
        ("occupation", "code"),
        [
            ("cash_business", "OCCUPATION_CASH_INTENSIVE"),
            ("gambling", "OCCUPATION_CASH_INTENSIVE"),
            ("precious_metals", "OCCUPATION_CASH_INTENSIVE"),
            ("government", "OCCUPATION_PEP_RELATED"),
        ],
    )
    def test_occupations_weigh(self, occupation: str, code: str) -> None:
        codes = _codes(application(employment={"occupation": occupation}))
        assert codes == {code: 20}
        assert band(sum(codes.values())) is RiskRating.MEDIUM

    def test_an_open_sanctions_review_is_high_and_cleared_hits_weigh_a_little(self) -> None:
        result = assess(application(), high_risk_countries=FATF, screening=ScreeningDecision.REVIEW)
        assert result.rating is RiskRating.HIGH
        assert _codes(application(), screening=ScreeningDecision.CLEAR, cleared_hits=2) == {
            "SANCTIONS_CLEARED_HITS": 10
        }

    def test_higher_risk_sources_of_funds(self) -> None:
        codes = _codes(application(funding={"source_of_funds": ["gambling", "gift"]}))
        assert codes == {"SOURCE_OF_FUNDS": 10}

    def test_product_use(self) -> None:
        body = application(
            profile={
                "margin_requested": True,
                "options_experience": True,
                "objectives": ["speculation"],
            }
        )
        assert _codes(body) == {"MARGIN": 5, "SPECULATION_WITH_OPTIONS": 5}

    def test_expected_activity_against_income(self) -> None:
        # Income band 25k-50k: up to 50,000 a year.
        modest = {"annual_income": "25k_50k"}
        assert (
            _codes(
                application(
                    profile=modest
                    | {"expected_monthly_deposits": "4000", "expected_monthly_withdrawals": "0"}
                )
            )
            == {}
        )
        above = _codes(
            application(
                profile=modest
                | {"expected_monthly_deposits": "5000", "expected_monthly_withdrawals": "0"}
            )
        )
        assert above == {"ACTIVITY_ABOVE_INCOME": 15}
        far = _codes(
            application(
                profile=modest
                | {"expected_monthly_deposits": "10000", "expected_monthly_withdrawals": "5000"}
            )
        )
        assert far == {"ACTIVITY_FAR_ABOVE_INCOME": 25}
        top = _codes(
            application(profile={"annual_income": "over_1m", "expected_monthly_deposits": "900000"})
        )
        assert top == {}

    def test_every_factor_is_documented_with_points(self) -> None:
        for rule in RULES.values():
            assert rule.points > 0
            assert rule.description


@pytest.mark.spec("KYC-2")
class TestBandsAndReviews:
    def test_bands(self) -> None:
        assert band(MEDIUM_FROM - 1) is RiskRating.LOW
        assert band(MEDIUM_FROM) is RiskRating.MEDIUM
        assert band(HIGH_FROM) is RiskRating.HIGH

    def test_review_dates_by_rating(self) -> None:
        day = date(2026, 1, 5)
        assert next_review(RiskRating.HIGH, day) == date(2027, 1, 5)
        assert next_review(RiskRating.MEDIUM, day) == date(2028, 1, 5)
        assert next_review(RiskRating.LOW, day) == date(2029, 1, 5)
        assert next_review(RiskRating.HIGH, date(2028, 2, 29)) == date(2029, 2, 28)

    def test_an_override_keeps_the_factors_and_says_why(self) -> None:
        result = assess(high_risk(), high_risk_countries=FATF)
        overridden = with_override(result, RiskRating.MEDIUM, "PEP role ended in 2010")
        assert overridden.rating is RiskRating.MEDIUM
        assert overridden.factors[:-1] == result.factors
        assert "PEP role ended" in overridden.factors[-1].explanation


class TestSettings:
    def test_high_risk_countries_are_iso_codes(self) -> None:
        assert {"KP", "IR", "MM"} <= FATF
        with pytest.raises(ValueError, match="alpha-2"):
            Settings(_env_file=None, kyc_high_risk_countries=["Iran"])  # type: ignore[call-arg]
