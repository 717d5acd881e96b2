"""The outside review's findings on onboarding, against the real app, database, ledger and
sanctions screening (no stand-ins): an approved customer matched on a re-screen is
restricted (accounts suspended, new accounts pending, re-rated) until a reviewer clears the
hit; a confirmed hit keeps them restricted; lowering a rating takes two staff members."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.kyc.onboarding.conftest import ADMIN, APPLICATION, MONDAY_OPEN
from tests.support.api import Api, audit_events, running_api
from tests.support.kyc import load_sample_list, verified_documents
from tests.support.kyc_applications import application
from tests.support.trading import Trader, signed_in_staff, signed_in_trader
from tradeguard.access.domain import Role
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.db.engine import unit_of_work
from tradeguard.kyc.contracts import ScreeningDecision, SubjectKind
from tradeguard.kyc.onboarding.container import OnboardingServices
from tradeguard.kyc.onboarding.models import Application
from tradeguard.kyc.sanctions.container import SanctionsServices
from tradeguard.kyc.sanctions.tasks import run_rescreen
from tradeguard.ledger.domain import Party
from tradeguard.risk.domain import AccountStatus, AccountType

SAMPLE = Path("/work/shared/data/ofac/sdn-sample")
LISTED_ROW = (
    b'99000001,"EXAMPLE, Jordan Quincy","individual","SDGT",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,'
    b'-0- ,"DOB 1980; nationality Iran."\r\n'
)
OPERATOR = Party("operator", "tester")
LISTED = {
    "identity": {
        "given_names": "Jordan Quincy",
        "family_name": "Example",
        "birth_date": "1980-03-01",
    }
}


def listed_copy(tmp_path: Path) -> Path:
    """The sample list with one more entry: the name our customer has."""
    if not SAMPLE.is_dir():
        pytest.skip("the OFAC sample files are not present")
    target = tmp_path / "listed"
    shutil.copytree(SAMPLE, target)
    sdn = (target / "sdn.csv").read_bytes().rstrip(b"\x1a").rstrip(b"\r\n") + b"\r\n"
    (target / "sdn.csv").write_bytes(sdn + LISTED_ROW)
    return target


@dataclass
class Real:
    api: Api
    customer: Trader
    reviewer: Trader
    second: Trader

    @property
    def onboarding(self) -> OnboardingServices:
        services: OnboardingServices = self.api.app.state.onboarding
        return services

    @property
    def sanctions(self) -> SanctionsServices:
        services: SanctionsServices = self.api.app.state.sanctions
        return services

    async def load(self, directory: Path) -> None:
        service = self.sanctions.service
        files = await service.fetch(str(directory))
        async with unit_of_work(self.sanctions.sessions) as session:
            await service.load(session, files, source=str(directory), actor=OPERATOR)

    async def import_customer(self, sections: dict[str, Any]) -> str:
        async with unit_of_work(self.onboarding.sessions) as session:
            row = await self.onboarding.applications.import_approved(
                session,
                user_id=self.customer.user_id,
                sections=sections,
                actor=OPERATOR,
                reason="back-book customer verified before",
            )
            return row.id

    async def open_account(self) -> tuple[str, str]:
        async with unit_of_work(self.onboarding.sessions) as session:
            account = await self.onboarding.deps.trading.open_account(
                session,
                user_id=self.customer.user_id,
                account_type=AccountType.CASH,
                actor=Party("user", self.customer.user_id),
            )
            return account.id, account.status

    async def statuses(self) -> dict[str, str]:
        async with unit_of_work(self.onboarding.sessions) as session:
            accounts = await self.onboarding.deps.trading.list_for(session, self.customer.user_id)
            return {a.id: a.status for a in accounts}

    async def application(self, application_id: str) -> Application:
        async with unit_of_work(self.onboarding.sessions) as session:
            row = await self.onboarding.applications.get(session, application_id)
            session.expunge(row)
            return row

    async def hit_ids(self) -> list[str]:
        async with unit_of_work(self.sanctions.sessions) as session:
            outcome = await self.sanctions.service.standing(
                session, SubjectKind.CUSTOMER, self.customer.user_id
            )
            return [h.hit_id for h in outcome.hits]

    async def review_hit(self, hit_id: str, action: str) -> None:
        async with unit_of_work(self.sanctions.sessions) as session:
            review = getattr(self.sanctions.service, action)
            await review(session, hit_id=hit_id, staff_id=self.reviewer.user_id, note="checked")


@pytest.fixture
async def real(settings: Settings, engine: AsyncEngine) -> AsyncIterator[Real]:
    gated = settings.model_copy(update={"kyc_required": True})
    async with (
        running_api(gated, engine, FrozenClock(MONDAY_OPEN)) as api,
        api.client() as one,
        api.client() as two,
        api.client() as three,
    ):
        customer = await signed_in_trader(api, one, "alice")
        reviewer = await signed_in_staff(api, two, "carol", Role.COMPLIANCE)
        second = await signed_in_staff(api, three, "dave", Role.COMPLIANCE)
        yield Real(api, customer, reviewer, second)


async def _restricted_after_rescreen(real: Real, tmp_path: Path) -> tuple[str, str]:
    application_id = await real.import_customer(application(**LISTED))
    account_id, status = await real.open_account()
    assert status == AccountStatus.ACTIVE.value
    before = await real.application(application_id)
    assert before.screening in (None, ScreeningDecision.CLEAR.value)
    await real.load(listed_copy(tmp_path))
    report = await run_rescreen(real.sanctions)
    assert report.new_hits, (report, await real.hit_ids())
    return application_id, account_id


@pytest.mark.spec("KYC-2")
class TestSanctionsStandingAfterApproval:
    async def test_a_rescreen_hit_suspends_the_accounts_and_rerates(
        self, real: Real, tmp_path: Path
    ) -> None:
        application_id, account_id = await _restricted_after_rescreen(real, tmp_path)
        assert (await real.statuses())[account_id] == AccountStatus.SUSPENDED.value
        row = await real.application(application_id)
        assert row.screening in ("review", "block")
        assert row.rating == "high"
        assert any(f["code"].startswith("SANCTIONS_") for f in row.rating_factors)
        # New accounts wait while the hit is open.
        _, status = await real.open_account()
        assert status == AccountStatus.PENDING.value
        # The staff view shows the standing.
        shown = await real.reviewer.get(f"{ADMIN}/{application_id}")
        assert shown.status_code == 200, shown.text
        assert shown.json()["screening"] in ("review", "block")
        # Withdrawals are refused: funds pays only from ACTIVE or CLOSING_ONLY accounts.
        from tradeguard.funds.withdrawals import PAYING  # noqa: PLC0415

        assert AccountStatus.SUSPENDED.value not in PAYING
        restricted = await audit_events(real.api, "kyc:accounts:restricted")
        assert restricted
        assert restricted[-1]["data"]["accounts"] == [account_id]
        assert await audit_events(real.api, "kyc:application:screening_changed")

    async def test_a_cleared_hit_lifts_the_restriction(self, real: Real, tmp_path: Path) -> None:
        application_id, account_id = await _restricted_after_rescreen(real, tmp_path)
        pending, _ = await real.open_account()
        for hit_id in await real.hit_ids():
            await real.review_hit(hit_id, "clear")
        statuses = await real.statuses()
        assert statuses[account_id] == AccountStatus.ACTIVE.value
        assert statuses[pending] == AccountStatus.ACTIVE.value
        row = await real.application(application_id)
        assert row.screening == "clear"
        assert row.sanctions_restricted is None
        lifted = await audit_events(real.api, "kyc:accounts:restriction_lifted")
        assert lifted
        assert lifted[-1]["data"]["accounts"] == [account_id]
        _, status = await real.open_account()
        assert status == AccountStatus.ACTIVE.value

    async def test_a_confirmed_hit_keeps_the_customer_blocked(
        self, real: Real, tmp_path: Path
    ) -> None:
        application_id, account_id = await _restricted_after_rescreen(real, tmp_path)
        for hit_id in await real.hit_ids():
            await real.review_hit(hit_id, "confirm")
        assert (await real.statuses())[account_id] == AccountStatus.SUSPENDED.value
        row = await real.application(application_id)
        assert row.screening == "block"
        assert row.rating == "high"
        assert any(f["code"] == "SANCTIONS_BLOCK" for f in row.rating_factors)
        _, status = await real.open_account()
        assert status == AccountStatus.PENDING.value

    async def test_a_name_change_onto_the_list_restricts_at_once(
        self, real: Real, tmp_path: Path
    ) -> None:
        born = {"birth_date": "1980-03-01"}
        application_id = await real.import_customer(application(identity=born))
        account_id, _ = await real.open_account()
        await real.load(listed_copy(tmp_path))
        names = {"given_names": "Jordan Quincy", "family_name": "Example"}
        changed = await real.customer.put(APPLICATION, {"identity": names})
        assert changed.status_code == 200, changed.text
        assert (await real.statuses())[account_id] == AccountStatus.SUSPENDED.value
        row = await real.application(application_id)
        assert row.screening in ("review", "block")


async def _rate(real: Real, application_id: str, rating: str, who: Trader) -> httpx.Response:
    return await who.post(
        f"{ADMIN}/{application_id}/rating", {"rating": rating, "reason": "documented wealth"}
    )


@pytest.mark.spec("KYC-2")
class TestLoweringARatingTakesTwo:
    @pytest.fixture
    async def high(self, real: Real) -> str:
        # What approval needs besides the rating, through the real services: the OFAC
        # sample loaded (the customer screens clear) and verified identity documents.
        await load_sample_list(real.api)
        pep = {"employment": {"politically_exposed": True, "pep_details": "city mayor"}}
        body = application(**pep)
        saved = await real.customer.put(APPLICATION, body)
        assert saved.status_code == 200, saved.text
        await verified_documents(real.api, real.customer, body["identity"])
        done = await real.customer.post(f"{APPLICATION}/submit")
        assert done.status_code == 200, done.text
        application_id = str(done.json()["id"])
        assert (await real.application(application_id)).rating == "high"
        return application_id

    async def test_one_person_cannot_lower_and_approve_alone(self, real: Real, high: str) -> None:
        proposed = await _rate(real, high, "low", real.reviewer)
        assert proposed.status_code == 200, proposed.text
        shown = proposed.json()["rating"]
        assert (shown["rating"], shown["proposed"]) == ("high", "low")
        assert shown["proposed_by"] == real.reviewer.user_id
        row = await real.application(high)
        assert row.rating == "high"
        assert row.rating_proposed == "low"
        again = await _rate(real, high, "low", real.reviewer)
        assert again.status_code == 409
        assert (await real.application(high)).rating == "high"
        approved = await real.reviewer.post(f"{ADMIN}/{high}/approve")
        assert approved.status_code in (200, 409)
        assert (await real.application(high)).status == "submitted"

    async def test_a_second_person_lowers_but_edd_and_four_eyes_stay(
        self, real: Real, high: str
    ) -> None:
        assert (await _rate(real, high, "low", real.reviewer)).status_code == 200
        lowered = await _rate(real, high, "low", real.second)
        assert lowered.status_code == 200, lowered.text
        assert (await real.application(high)).rating == "low"
        assert await audit_events(real.api, "kyc:rating:override_proposed")
        # The factors still say HIGH: EDD is still needed and two approvers.
        blocked = await real.reviewer.post(f"{ADMIN}/{high}/approve")
        assert blocked.status_code == 409
        assert "EDD_MISSING" in blocked.text
        edd = await real.reviewer.post(
            f"{ADMIN}/{high}/edd", {"note": "source of wealth evidence seen: salary slips"}
        )
        assert edd.status_code == 200, edd.text
        first = await real.reviewer.post(f"{ADMIN}/{high}/approve")
        assert first.status_code == 200, first.text
        assert (await real.application(high)).status == "submitted"
        same = await real.reviewer.post(f"{ADMIN}/{high}/approve")
        assert same.status_code == 409
        done = await real.second.post(f"{ADMIN}/{high}/approve")
        assert done.status_code == 200, done.text
        assert (await real.application(high)).status == "approved"

    async def test_raising_a_rating_needs_one_person(self, real: Real) -> None:
        saved = await real.customer.put(APPLICATION, application())
        assert saved.status_code == 200
        done = await real.customer.post(f"{APPLICATION}/submit")
        application_id = str(done.json()["id"])
        raised = await _rate(real, application_id, "high", real.reviewer)
        assert raised.status_code == 200
        assert (await real.application(application_id)).rating == "high"
