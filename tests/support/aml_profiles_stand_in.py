"""Dict-backed stand-ins for what KYC gives AML (the lead replaces this file after merge):
the customer's risk profile (kyc/contracts.py `CustomerProfiles`) and the subject's identity
for filings (aml/service.py `FilingSubjects`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.kyc.contracts import CustomerRiskProfile, FilingPerson, RiskRating


def risk_profile(
    user_id: str,
    *,
    expected_monthly_funding: Decimal | None = Decimal(20_000),
    country: str | None = "US",
    nationality: str | None = "US",
) -> CustomerRiskProfile:
    return CustomerRiskProfile(
        user_id=user_id,
        rating=RiskRating.LOW,
        country=country,
        nationality=nationality,
        occupation="Engineer",
        annual_income=Decimal(120_000),
        net_worth=Decimal(300_000),
        expected_monthly_funding=expected_monthly_funding,
        source_of_funds="salary",
    )


def filing_person(**changes: object) -> FilingPerson:
    values: dict[str, object] = {
        "family_name": "Doe",
        "given_name": "Jane",
        "birth_date": date(1980, 2, 14),
        "tin": "123456789",
        "street": "1 Main Street",
        "city": "New York",
        "state": "NY",
        "zip_code": "10001",
        "country": "US",
        "occupation": "Engineer",
    }
    values.update(changes)
    return FilingPerson(**values)  # type: ignore[arg-type]


@dataclass
class StandInKyc:
    profiles: dict[str, CustomerRiskProfile] = field(default_factory=dict)
    people: dict[str, FilingPerson] = field(default_factory=dict)

    async def profile(self, session: AsyncSession, user_id: str) -> CustomerRiskProfile | None:
        return self.profiles.get(user_id)

    async def filing_person(self, session: AsyncSession, user_id: str) -> FilingPerson | None:
        return self.people.get(user_id)
