"""What onboarding offers the other KYC/AML parts (kyc/contracts.py): the applicant's declared
identity for documents, the approved customer's risk profile for AML monitoring, and every
approved customer as a screening subject."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from tests.integration.kyc.onboarding.conftest import Desk, onboarding_of
from tests.support.kyc_applications import application
from tradeguard.db.engine import unit_of_work
from tradeguard.kyc.contracts import RiskRating, SubjectKind


@pytest.mark.spec("KYC-2")
class TestContracts:
    async def test_documents_aml_and_rescreening_read_the_application(self, desk: Desk) -> None:
        services = onboarding_of(desk.api)
        user_id = desk.customer.user_id
        async with unit_of_work(services.sessions) as session:
            assert await services.applicants.applicant(session, user_id) is None
            assert await services.profiles.profile(session, user_id) is None
        application_id = await desk.submitted(application())
        async with unit_of_work(services.sessions) as session:
            facts = await services.applicants.applicant(session, user_id)
            assert facts is not None
            assert facts.application_id == application_id
            assert (facts.given_names, facts.family_name) == ("Alice Marie", "Example")
            assert facts.birth_date == date(1985, 4, 30)
            assert (facts.nationality, facts.country, facts.status) == ("US", "US", "submitted")
            # Not approved yet: no profile for AML, not a subject of re-screening.
            assert await services.profiles.profile(session, user_id) is None
            assert [s async for s in services.subjects.subjects(session)] == []
        await desk.verified()
        approved = await desk.staff(f"{application_id}/approve")
        assert approved.status_code == 200, approved.text
        async with unit_of_work(services.sessions) as session:
            profile = await services.profiles.profile(session, user_id)
            assert profile is not None
            assert profile.rating is RiskRating.LOW
            assert profile.annual_income == Decimal(100_000)
            assert profile.net_worth == Decimal(250_000)
            assert profile.expected_monthly_funding == Decimal(2500)
            assert profile.source_of_funds == "employment,savings"
            assert profile.occupation == "technology"
            [subject] = [s async for s in services.subjects.subjects(session)]
        assert subject.kind is SubjectKind.CUSTOMER
        assert subject.ref == user_id
        assert subject.name == "Alice Marie Example"
        assert subject.birth_date == date(1985, 4, 30)
