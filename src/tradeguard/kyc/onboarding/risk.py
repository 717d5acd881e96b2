"""Customer risk rating (KYC-2; FinCEN CDD rule 31 CFR 1023.210(b)(5), FATF
Recommendation 10): points from documented factors, summed into low, medium or high.

Each factor that applies adds its points and says why; the rating is the band the total
falls in. A HIGH rating needs enhanced due diligence before approval and is reviewed every
year; MEDIUM every two years, LOW every three. Pure: the standard library and core only.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from tradeguard.kyc.contracts import RiskRating, ScreeningDecision
from tradeguard.kyc.onboarding.domain import (
    CASH_INTENSIVE,
    HIGHER_RISK_SOURCES,
    INCOME_BOUNDS,
    PEP_RELATED,
    IncomeBand,
    Objective,
    Occupation,
)

MEDIUM_FROM = 20
HIGH_FROM = 40
REVIEW_YEARS: dict[RiskRating, int] = {RiskRating.HIGH: 1, RiskRating.MEDIUM: 2, RiskRating.LOW: 3}


@dataclass(frozen=True, slots=True)
class FactorRule:
    code: str
    points: int
    description: str


# The factor table (docs/kyc.md shows it): a code, its points, what it means.
RULES: dict[str, FactorRule] = {
    rule.code: rule
    for rule in (
        FactorRule("RESIDENCE_HIGH_RISK", 40, "resides in a high-risk jurisdiction (FATF lists)"),
        FactorRule("NATIONALITY_HIGH_RISK", 25, "national of a high-risk jurisdiction"),
        FactorRule("SELF_DECLARED_PEP", 40, "declared a politically exposed person"),
        FactorRule("OCCUPATION_PEP_RELATED", 20, "public office or government occupation"),
        FactorRule("OCCUPATION_CASH_INTENSIVE", 20, "cash-intensive or high-risk business"),
        FactorRule("SANCTIONS_BLOCK", 100, "a sanctions match blocks the customer"),
        FactorRule("SANCTIONS_REVIEW", 40, "a possible sanctions match is open for review"),
        FactorRule("SANCTIONS_CLEARED_HITS", 10, "sanctions hits were found and cleared"),
        FactorRule("SOURCE_OF_FUNDS", 10, "funds from gifts, gambling, settlements or other"),
        FactorRule("NON_RESIDENT", 10, "lives outside the United States"),
        FactorRule("BROKER_DEALER_AFFILIATED", 5, "associated with a broker-dealer (FINRA 3210)"),
        FactorRule("MARGIN", 5, "asked for a margin account"),
        FactorRule("SPECULATION_WITH_OPTIONS", 5, "speculation with options experience"),
        FactorRule("ACTIVITY_ABOVE_INCOME", 15, "expected yearly activity above annual income"),
        FactorRule("ACTIVITY_FAR_ABOVE_INCOME", 25, "expected yearly activity above 3x income"),
    )
}


@dataclass(frozen=True, slots=True)
class Factor:
    code: str
    points: int
    explanation: str

    def as_json(self) -> dict[str, Any]:
        return {"code": self.code, "points": self.points, "explanation": self.explanation}


@dataclass(frozen=True, slots=True)
class Assessment:
    rating: RiskRating
    score: int
    factors: tuple[Factor, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "rating": self.rating.value,
            "score": self.score,
            "factors": [factor.as_json() for factor in self.factors],
        }


def band(score: int) -> RiskRating:
    if score >= HIGH_FROM:
        return RiskRating.HIGH
    if score >= MEDIUM_FROM:
        return RiskRating.MEDIUM
    return RiskRating.LOW


def _factor(code: str, detail: str | None = None) -> Factor:
    rule = RULES[code]
    text = rule.description + (f" ({detail})" if detail else "")
    return Factor(code, rule.points, text)


def assess(  # noqa: C901, PLR0912 - one branch per documented factor
    sections: Mapping[str, Mapping[str, Any]],
    *,
    high_risk_countries: Collection[str],
    screening: ScreeningDecision | None = None,
    cleared_hits: int = 0,
) -> Assessment:
    """Rate an application from its sections and the customer's screening standing."""
    identity = sections.get("identity", {})
    address = sections.get("address", {})
    employment = sections.get("employment", {})
    funding = sections.get("funding", {})
    profile = sections.get("profile", {})
    found: list[Factor] = []
    country, nationality = address.get("country"), identity.get("nationality")
    if country in high_risk_countries:
        found.append(_factor("RESIDENCE_HIGH_RISK", country))
    if nationality in high_risk_countries and nationality != country:
        found.append(_factor("NATIONALITY_HIGH_RISK", nationality))
    if country and country != "US":
        found.append(_factor("NON_RESIDENT", country))
    if employment.get("politically_exposed"):
        found.append(_factor("SELF_DECLARED_PEP"))
    occupation = employment.get("occupation")
    if occupation in {o.value for o in PEP_RELATED}:
        found.append(_factor("OCCUPATION_PEP_RELATED"))
    if occupation in {o.value for o in CASH_INTENSIVE}:
        found.append(_factor("OCCUPATION_CASH_INTENSIVE", Occupation(occupation).value))
    if screening is ScreeningDecision.BLOCK:
        found.append(_factor("SANCTIONS_BLOCK"))
    elif screening is ScreeningDecision.REVIEW:
        found.append(_factor("SANCTIONS_REVIEW"))
    elif cleared_hits:
        found.append(_factor("SANCTIONS_CLEARED_HITS", f"{cleared_hits} cleared"))
    risky = sorted(set(funding.get("source_of_funds", [])) & {s.value for s in HIGHER_RISK_SOURCES})
    if risky:
        found.append(_factor("SOURCE_OF_FUNDS", ", ".join(risky)))
    if employment.get("broker_dealer_affiliated"):
        found.append(_factor("BROKER_DEALER_AFFILIATED"))
    if profile.get("margin_requested"):
        found.append(_factor("MARGIN"))
    if profile.get("options_experience") and Objective.SPECULATION.value in profile.get(
        "objectives", []
    ):
        found.append(_factor("SPECULATION_WITH_OPTIONS"))
    activity = _activity_factor(profile)
    if activity is not None:
        found.append(activity)
    score = sum(factor.points for factor in found)
    return Assessment(band(score), score, tuple(found))


def _activity_factor(profile: Mapping[str, Any]) -> Factor | None:
    income = profile.get("annual_income")
    if income is None:
        return None
    monthly = Decimal(profile.get("expected_monthly_deposits", "0")) + Decimal(
        profile.get("expected_monthly_withdrawals", "0")
    )
    yearly = monthly * 12
    # The band's upper bound: the most the customer could earn in it (the top band has none).
    upper = INCOME_BOUNDS[IncomeBand(income)][1]
    if upper is None or yearly <= upper:
        return None
    detail = f"{yearly:.0f} USD a year against income up to {upper:.0f} USD"
    if yearly > 3 * upper:
        return _factor("ACTIVITY_FAR_ABOVE_INCOME", detail)
    return _factor("ACTIVITY_ABOVE_INCOME", detail)


def with_override(assessment: Assessment, rating: RiskRating, reason: str) -> Assessment:
    """The same factors, with a staff member's rating instead of the computed one."""
    note = Factor("STAFF_OVERRIDE", 0, f"rating set to {rating.value} by staff: {reason}")
    return Assessment(rating, assessment.score, (*assessment.factors, note))


def next_review(rating: RiskRating, from_day: date) -> date:
    """The periodic review's date: 1, 2 or 3 years on (29 February moves to 28)."""
    years = REVIEW_YEARS[rating]
    try:
        return from_day.replace(year=from_day.year + years)
    except ValueError:
        return from_day.replace(year=from_day.year + years, day=28)
