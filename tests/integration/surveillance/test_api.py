"""The surveillance API (MAN-1, MAN-2, MAN-5): compliance lists and reads alerts with their
evidence; nobody else can, the customer an alert is about included; bad input is a
problem+json 422 and unknown query parameters are refused."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.surveillance.support import (
    MONDAY_OPEN,
    Market,
    chain,
    surveillance_of,
    trade_a_market,
)
from tests.support.access import staff
from tests.support.api import Api, audit_events, is_problem, running_api
from tests.support.cases import Cases
from tests.support.trading import signed_in_trader
from tradeguard.access.domain import AccessLevel, Role
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.identity.guard import PERMISSION_CHECKED
from tradeguard.surveillance.repository import AlertFilter

ALERTS = "/api/v1/surveillance/alerts"
UNKNOWN = "0190c5a0-0000-7000-8000-000000000000"


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(MONDAY_OPEN)


@pytest.fixture
async def api(settings: Settings, engine: AsyncEngine, clock: FrozenClock) -> AsyncIterator[Api]:
    async with running_api(settings, engine, clock) as running:
        yield running


async def surveil(api: Api, ursula_id: str | None = None) -> Market:
    market = await trade_a_market(api, ursula_id=ursula_id)
    await chain(api)
    await surveillance_of(api).consumer.run()
    return market


class TestCompliance:
    @pytest.mark.spec("MAN-1", "MAN-2", "MAN-5")
    async def test_compliance_lists_filters_and_reads_alerts_with_their_evidence(
        self, api: Api
    ) -> None:
        market = await surveil(api)
        async with api.client() as client:
            # Read-only is enough: reading alerts is a view permission.
            carol = await staff(api, client, "carol", Role.COMPLIANCE, AccessLevel.READ_ONLY)
            listed = await carol.get(ALERTS)
            wash = await carol.get(ALERTS, params={"alert_type": "WASH_TRADE"})
            spoofing = await carol.get(ALERTS, params={"detector": "MAN-2", "symbol": "ACME"})
            by_account = await carol.get(ALERTS, params={"account_id": market.sam.accounts[0]})
            by_owner = await carol.get(ALERTS, params={"owner": market.ursula.user_id})
            nobody = await carol.get(ALERTS, params={"account_id": market.mia.accounts[0]})
            first_page = await carol.get(ALERTS, params={"limit": 1})
            second_page = await carol.get(
                ALERTS, params={"limit": 1, "before": first_page.json()[0]["id"]}
            )
            one = await carol.get(f"{ALERTS}/{spoofing.json()[0]['id']}")
        assert listed.status_code == 200, listed.text
        assert {a["alert_type"] for a in listed.json()} == {"WASH_TRADE", "SPOOFING"}
        assert [a["owner"] for a in wash.json()] == [market.ursula.user_id]
        assert [a["alert_type"] for a in spoofing.json()] == ["SPOOFING"]
        assert [a["alert_type"] for a in by_account.json()] == ["SPOOFING"]
        assert [a["alert_type"] for a in by_owner.json()] == ["WASH_TRADE"]
        assert nobody.json() == []
        assert len(first_page.json()) == len(second_page.json()) == 1
        assert first_page.json()[0]["id"] > second_page.json()[0]["id"]
        body = one.json()
        assert body["detector"] == "MAN-2"
        assert body["accounts"] == market.sam.accounts
        assert body["evidence"]["cancelled_order_ids"] == [market.spoof_order]
        assert body["evidence"]["book_at_execution"]["bids"]
        assert body["order_ids"]
        assert body["execution_ids"]
        assert body["window_start"].endswith("Z")
        assert body["latency_ms"] >= 0
        # Every read is a permission check in the ledger, allowed.
        checks = [
            e
            for e in await audit_events(api, PERMISSION_CHECKED)
            if e["data"]["permission"] == "compliance:surveillance"
        ]
        assert checks
        assert all(e["data"]["allowed"] for e in checks)

    async def test_an_unknown_alert_is_a_404(self, api: Api) -> None:
        await surveil(api)
        async with api.client() as client:
            carol = await staff(api, client, "carol", Role.COMPLIANCE)
            response = await carol.get(f"{ALERTS}/{UNKNOWN}")
        assert is_problem(response, 404, "alert-not-found"), response.text


BAD_FILTERS: list[tuple[dict[str, str], str]] = [
    ({"alert_type": "BOGUS"}, "alert_type"),  # not a substring of any type
    ({"detector": "MAN-9"}, "detector"),
    ({"symbol": "acme; drop"}, "symbol"),
    ({"account_id": "not-a-uuid"}, "account_id"),
    ({"owner": "' OR 1=1 --"}, "owner"),
    ({"before": "x" * 36}, "before"),
    ({"limit": "0"}, "limit"),
    ({"limit": "501"}, "limit"),
    ({"limit": "ten"}, "limit"),
]


class TestBadInput:
    async def test_bad_filters_are_a_422_problem_naming_the_field(self, api: Api) -> None:
        cases = Cases()
        async with api.client() as client:
            carol = await staff(api, client, "carol", Role.COMPLIANCE)
            for params, field in BAD_FILTERS:
                response = await carol.get(ALERTS, params=params)
                with cases.case(repr(params)):
                    assert is_problem(response, 422, "invalid-input"), response.text
                    assert [e["loc"][-1] for e in response.json()["errors"]] == [field]
                    # The value is not echoed back.
                    assert params[field] not in response.text or params[field] in ("0", "501")
        cases.check()

    async def test_unknown_query_parameters_are_refused_and_named(self, api: Api) -> None:
        async with api.client() as client:
            carol = await staff(api, client, "carol", Role.COMPLIANCE)
            listed = await carol.get(ALERTS, params={"alert_typ": "WASH_TRADE", "x": "1"})
            one = await carol.get(f"{ALERTS}/{UNKNOWN}", params={"verbose": "1"})
        assert is_problem(listed, 422, "invalid-input")
        assert [e["loc"] for e in listed.json()["errors"]] == [
            ["query", "alert_typ"],
            ["query", "x"],
        ]
        assert is_problem(one, 422, "invalid-input")

    async def test_a_malformed_alert_id_is_a_422(self, api: Api) -> None:
        async with api.client() as client:
            carol = await staff(api, client, "carol", Role.COMPLIANCE)
            response = await carol.get(f"{ALERTS}/..%2F..%2Fetc")
        assert response.status_code in (404, 422)
        assert response.headers["content-type"].startswith("application/problem+json")


class TestAccess:
    @pytest.mark.spec("RBAC-4")
    async def test_anonymous_callers_are_refused(self, api: Api) -> None:
        async with api.client() as client:
            response = await client.get(ALERTS)
        assert is_problem(response, 401, "unauthorized")

    @pytest.mark.spec("RBAC-4")
    async def test_the_customer_an_alert_is_about_cannot_read_it_or_learn_it_exists(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            ursula = await signed_in_trader(api, client, "ursula")
            await surveil(api, ursula_id=ursula.user_id)
            async with surveillance_of(api).unit_of_work() as session:
                mine = [
                    a.id
                    for a in await surveillance_of(api).alerts.search(
                        session, AlertFilter(owner=ursula.user_id)
                    )
                ]
            assert mine
            listed = await ursula.get(ALERTS)
            about_me = await ursula.get(f"{ALERTS}/{mine[0]}")
            unknown = await ursula.get(f"{ALERTS}/{UNKNOWN}")
        assert is_problem(listed, 403, "forbidden")
        assert is_problem(about_me, 403, "forbidden")
        # The same answer whether the alert exists or not: nothing about it leaks.
        varying = {"instance", "request_id"}
        assert {k: v for k, v in about_me.json().items() if k not in varying} == {
            k: v for k, v in unknown.json().items() if k not in varying
        }
        # (The instance is the path the caller sent; nothing else names the alert.)
        assert mine[0] not in about_me.json()["detail"]

    @pytest.mark.spec("RBAC-4", "RBAC-6")
    async def test_staff_without_the_permission_are_refused_and_the_refusal_audited(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            ada = await staff(api, client, "ada", Role.ADMIN)
            response = await ada.get(ALERTS)
        assert is_problem(response, 403, "forbidden")
        denied = [
            e
            for e in await audit_events(api, PERMISSION_CHECKED)
            if e["data"]["permission"] == "compliance:surveillance"
        ]
        assert [e["data"]["allowed"] for e in denied] == [False]
