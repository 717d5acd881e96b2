"""The staff sanctions API: versions and loading from the configured source only, ad hoc
screening, hits and their review; permissions, and bad input answered with problem+json
that changes nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.kyc.sanctions.conftest import (
    MORENO,
    OPERATOR,
    load_list,
    person,
    sample_dir,
    sanctions_of,
    version_count,
)
from tests.support.api import Api, audit_events, is_problem, running_api
from tests.support.trading import signed_in_staff, signed_in_trader
from tradeguard.access.domain import Role
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.db.engine import unit_of_work

BASE = "/api/v1/admin/sanctions"
STAFF_IP = "198.51.100.30"


async def raise_hit(api: Api, name: str = "Daniel Moreno", ref: str = "u-1") -> str:
    services = sanctions_of(api)
    async with unit_of_work(services.sessions) as session:
        outcome = await services.service.screen(
            session, person(ref, name), reason="test", actor=OPERATOR
        )
    return outcome.hits[0].hit_id


async def settle_jobs(api: Api) -> None:
    jobs = list(sanctions_of(api).jobs)
    if jobs:
        await asyncio.gather(*jobs)


class TestVersions:
    async def test_staff_load_the_configured_source_and_a_repeat_changes_nothing(
        self, api: Api
    ) -> None:
        async with api.client(STAFF_IP) as client:
            carol = await signed_in_staff(api, client, "carol", Role.COMPLIANCE)
            loaded = await carol.post(f"{BASE}/versions", {})
            assert loaded.status_code == 201, loaded.text
            body = loaded.json()
            assert body["created"] is True
            assert body["version"]["entries"] == 17
            assert body["version"]["source"] == str(sample_dir())
            assert body["rescreen_id"]
            await settle_jobs(api)
            again = await carol.post(f"{BASE}/versions", {"rescreen": False})
            assert again.json()["created"] is False
            listed = (await carol.get(f"{BASE}/versions")).json()
            assert [v["current"] for v in listed] == [True]
            runs = (await carol.get(f"{BASE}/rescreens")).json()
            assert [(r["id"], r["status"]) for r in runs] == [(body["rescreen_id"], "done")]

    async def test_a_client_cannot_name_a_path(self, api: Api) -> None:
        async with api.client(STAFF_IP) as client:
            carol = await signed_in_staff(api, client, "carol", Role.COMPLIANCE)
            refused = await carol.post(f"{BASE}/versions", {"path": "/etc"})
            assert refused.status_code == 422
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert await version_count(api) == 0


@pytest.fixture
async def unconfigured(
    settings: Settings, engine: AsyncEngine, clock: FrozenClock
) -> AsyncIterator[Api]:
    async with running_api(settings, engine, clock) as running:
        yield running


async def test_without_a_configured_source_loading_says_what_to_do(unconfigured: Api) -> None:
    async with unconfigured.client(STAFF_IP) as client:
        carol = await signed_in_staff(unconfigured, client, "carol", Role.COMPLIANCE)
        refused = await carol.post(f"{BASE}/versions", {})
        assert is_problem(refused, 503, "sanctions-source-not-configured")
        assert "TRADEGUARD_SANCTIONS_LIST_SOURCE" in refused.json()["detail"]
        screened = await carol.post(f"{BASE}/screen", {"name": "Daniel Moreno"})
        assert is_problem(screened, 503, "sanctions-no-list")


@pytest.mark.spec("KYC-2")
class TestAdHocScreen:
    async def test_a_name_is_scored_with_reasons_and_nothing_is_recorded(self, api: Api) -> None:
        await load_list(api, sample_dir())
        async with api.client(STAFF_IP) as client:
            carol = await signed_in_staff(api, client, "carol", Role.COMPLIANCE)
            found = await carol.post(
                f"{BASE}/screen",
                {"name": "Даниэль Морено", "birth_date": "1970-01-01", "nationality": "mx"},
            )
            assert found.status_code == 200, found.text
            body = found.json()
            assert body["matches"][0]["entry_id"] == MORENO
            assert body["matches"][0]["reasons"][0] == "matched the list's name: 'MORENO, Daniel'"
            hits = await carol.get(f"{BASE}/hits")
            assert hits.json() == []

    @pytest.mark.parametrize(
        "body",
        [
            {"name": ""},
            {"name": "x" * 301},
            {"name": "Daniel", "nationality": "Mexico"},
            {"name": "Daniel", "birth_date": "31/12/1970"},
            {"name": "Daniel", "limit": 0},
            {"name": "Daniel", "unexpected": True},
            {"name": " .-, "},
        ],
    )
    async def test_bad_input_is_a_problem(self, api: Api, body: dict[str, object]) -> None:
        await load_list(api, sample_dir())
        async with api.client(STAFF_IP) as client:
            carol = await signed_in_staff(api, client, "carol", Role.COMPLIANCE)
            refused = await carol.post(f"{BASE}/screen", body)
            assert refused.status_code == 422, refused.text
            assert refused.headers["content-type"].startswith("application/problem+json")


@pytest.mark.spec("KYC-2")
class TestHitReview:
    async def test_staff_list_clear_and_confirm_hits(self, api: Api) -> None:
        await load_list(api, sample_dir())
        first = await raise_hit(api, "Daniel Moreno", "u-1")
        second = await raise_hit(api, "Artem Lifshits", "u-2")
        async with api.client(STAFF_IP) as client:
            carol = await signed_in_staff(api, client, "carol", Role.COMPLIANCE)
            listed = (await carol.get(f"{BASE}/hits", params={"status": "open"})).json()
            assert {h["id"] for h in listed} == {first, second}
            one = (await carol.get(f"{BASE}/hits/{first}")).json()
            # A name only (no date of birth or nationality given): review, not block.
            assert (one["entry_id"], one["decision"], one["status"]) == (MORENO, "review", "open")
            cleared = await carol.post(
                f"{BASE}/hits/{first}/clear", {"reason": "born 1990; not the listed man"}
            )
            assert cleared.status_code == 200, cleared.text
            assert cleared.json()["status"] == "cleared"
            assert cleared.json()["review_note"] == "born 1990; not the listed man"
            twice = await carol.post(f"{BASE}/hits/{first}/clear", {"reason": "again"})
            assert is_problem(twice, 409, "conflict")
            confirmed = await carol.post(f"{BASE}/hits/{second}/confirm", {"reason": "passport"})
            assert confirmed.json()["decision"] == "block"
            assert confirmed.json()["reviewed_by"] == carol.user_id
        events = await audit_events(api, "sanctions:hit:confirmed")
        assert [e["data"]["hit_id"] for e in events] == [second]

    async def test_bad_review_input_changes_nothing(self, api: Api) -> None:
        await load_list(api, sample_dir())
        hit = await raise_hit(api)
        async with api.client(STAFF_IP) as client:
            carol = await signed_in_staff(api, client, "carol", Role.COMPLIANCE)
            short = await carol.post(f"{BASE}/hits/{hit}/clear", {"reason": "x"})
            assert short.status_code == 422
            missing = await carol.post(f"{BASE}/hits/{hit}/confirm", {})
            assert missing.status_code == 422
            unknown = await carol.post(
                f"{BASE}/hits/0190c5a0-0000-7000-8000-0000000000ff/clear", {"reason": "nope"}
            )
            assert is_problem(unknown, 404, "not-found")
            malformed = await carol.get(f"{BASE}/hits/not-an-id")
            assert malformed.status_code == 422
            still = (await carol.get(f"{BASE}/hits/{hit}")).json()
            assert still["status"] == "open"


class TestPermissions:
    @pytest.mark.parametrize(
        ("method", "path", "body"),
        [
            ("get", "/versions", None),
            ("post", "/versions", {}),
            ("post", "/screen", {"name": "Daniel Moreno"}),
            ("get", "/hits", None),
            ("post", "/hits/0190c5a0-0000-7000-8000-0000000000ff/clear", {"reason": "abc"}),
        ],
    )
    async def test_customers_and_support_staff_are_refused(
        self, api: Api, method: str, path: str, body: dict[str, object] | None
    ) -> None:
        await load_list(api, sample_dir())
        async with api.client() as client, api.client(STAFF_IP) as staff_client:
            alice = await signed_in_trader(api, client, "alice")
            sam = await signed_in_staff(api, staff_client, "sam", Role.SUPPORT)
            for who in (alice, sam):
                if method == "get":
                    answer = await who.get(BASE + path)
                else:
                    answer = await who.post(BASE + path, body)
                assert answer.status_code == 403, answer.text
        assert await version_count(api) == 1
