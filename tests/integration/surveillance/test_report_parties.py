"""The report draft of a case (MAN-5) names each customer separately, even when surveillance
judged two linked users as one beneficial owner, and counts only the trades behind the
alerts: the crosses of a wash, not the customers' other trading."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.surveillance.support import (
    MONDAY_OPEN,
    chain,
    customer,
    order,
    surveillance_of,
)
from tests.integration.surveillance.test_cases import escalated_case, two_officers
from tests.support.api import Api, running_api
from tests.support.trading import SETUP, add_instrument, street_order, trading_of
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.core.orders import Side
from tradeguard.db.engine import unit_of_work
from tradeguard.surveillance.repository import AlertFilter

CASES = "/api/v1/surveillance/cases"


@pytest.fixture
async def api(settings: Settings, engine: AsyncEngine) -> AsyncIterator[Api]:
    async with running_api(settings, engine, FrozenClock(MONDAY_OPEN)) as running:
        yield running


@pytest.mark.spec("MAN-5", "MAN-1")
class TestReportParties:
    async def test_linked_users_are_listed_separately_and_only_the_crosses_are_counted(
        self, api: Api
    ) -> None:
        await add_instrument(api, "ACME", "50.00")
        await street_order(api, "ACME", Side.SELL, 50_000, "50.02")
        await street_order(api, "ACME", Side.BUY, 50_000, "49.98")
        una = await customer(api, "una")
        ivo = await customer(api, "ivo")  # her partner: another user, linked by compliance
        (u1,) = una.accounts
        (i1,) = ivo.accounts
        services = surveillance_of(api)
        async with services.unit_of_work() as session:
            await services.links.add(
                session, account_a=u1, account_b=i1, reason="household", actor=SETUP
            )
        # Honest trading first: each buys from the street (not part of any wash).
        await order(api, una, u1, "buy", 1000, "50.02")
        await order(api, ivo, i1, "buy", 700, "50.02")
        api.clock.advance(seconds=30)
        # Two crosses between them at 50.00.
        await order(api, una, u1, "sell", 500, "50.00")
        api.clock.advance(seconds=1)
        await order(api, ivo, i1, "buy", 500, "50.00")
        api.clock.advance(seconds=40)
        await order(api, ivo, i1, "sell", 500, "50.00")
        api.clock.advance(seconds=1)
        await order(api, una, u1, "buy", 500, "50.00")
        api.clock.advance(seconds=5)
        await chain(api)
        await services.consumer.run()
        async with services.unit_of_work() as session:
            alerts = await services.alerts.search(session, AlertFilter())
        assert [a.alert_type for a in alerts] == ["WASH_TRADE"]
        (wash,) = alerts
        assert sorted(wash.accounts) == sorted([u1, i1])
        async with api.client() as client:
            carol, dora = await two_officers(api, client)
            case_id = await escalated_case(carol, dora, wash.id)
            closed = await carol.post(
                f"{CASES}/{case_id}/close",
                {"disposition": "reported", "reason": "a household crossing its accounts"},
            )
            assert closed.status_code == 200, closed.text
            draft = (await carol.get(f"{CASES}/{case_id}/report")).json()
            document = (await carol.get(f"{CASES}/{case_id}/report.md")).text
        async with unit_of_work(trading_of(api).sessions) as session:
            numbers = {a: (await trading_of(api).accounts.get(session, a)).number for a in (u1, i1)}
        parties = {p["user_ref"]: p for p in draft["parties"]}
        # Two subjects, each with their own account, both judged as the one owner.
        assert set(parties) == {una.user_id, ivo.user_id}
        assert [a["account_id"] for a in parties[una.user_id]["accounts"]] == [u1]
        assert [a["account_id"] for a in parties[ivo.user_id]["accounts"]] == [i1]
        assert parties[una.user_id]["linked_with"] == [ivo.user_id]
        assert parties[ivo.user_id]["linked_with"] == [una.user_id]
        assert {p["beneficial_owner_ref"] for p in parties.values()} == {wash.owner}
        assert all(numbers[a] not in document for a in numbers)
        # (Markdown-escaped in the document.)
        for user in (una.user_id, ivo.user_id):
            assert user.replace("-", "\\-") in document
        # Only the crosses: 4 fills of 500 at 50.00; the street purchases at 50.02 are not.
        assert [(t["side"], t["quantity"], t["price"]) for t in draft["trades"]].count(
            ("buy", 500, "50.00")
        ) == 2
        assert len(draft["trades"]) == 4
        assert {t["price"] for t in draft["trades"]} == {"50.00"}
        assert draft["activity"]["total_amount"] == "100000.00"
        assert draft["alerts"][0]["amount"] == "100000.00"
        assert draft["alerts"][0]["trade_count"] == 4
        assert (
            "2 customer(s), judged as 1 beneficial owner(s); 4 execution(s)" in (draft["narrative"])
        )
        assert "bought 1000 and sold 1000 shares" in draft["narrative"]
        assert Decimal(draft["activity"]["total_amount"]) >= Decimal(5000)
        assert "## Trades behind the alerts" in document
