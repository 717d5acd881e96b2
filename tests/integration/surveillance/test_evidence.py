"""An alert's evidence shows the trades behind it (MAN-5): for each order its side, price,
quantity, time and status at the finding, for each execution its price, quantity, time and
counterparty (the street, or the other customer's account number masked), so that a
compliance officer reads them in the alert (API and CLI) without querying elsewhere."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.surveillance.support import (
    MONDAY_OPEN,
    chain,
    fresh_surveillance,
    surveillance_of,
    trade_a_market,
)
from tests.support.access import staff
from tests.support.api import Api, running_api
from tests.support.trading import trading_of
from tradeguard.access.domain import AccessLevel, Role
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock, ns_to_iso
from tradeguard.db.engine import unit_of_work
from tradeguard.surveillance.models import SurveillanceAlert
from tradeguard.trading.models import Execution, Order

ALERTS = "/api/v1/surveillance/alerts"
MASKED = re.compile(r"^[A-Z]{2}\*+\d{2}$")


@pytest.fixture
async def api(settings: Settings, engine: AsyncEngine) -> AsyncIterator[Api]:
    async with running_api(settings, engine, FrozenClock(MONDAY_OPEN)) as running:
        yield running


@pytest.mark.spec("MAN-5")
class TestTradesInTheEvidence:
    async def test_every_order_and_execution_of_an_alert_is_shown_as_the_trading_core_recorded_it(
        self, api: Api
    ) -> None:
        market = await trade_a_market(api)
        await chain(api)
        await surveillance_of(api).consumer.run()
        async with api.client() as client:
            carol = await staff(api, client, "carol", Role.COMPLIANCE, AccessLevel.READ_ONLY)
            listed = (await carol.get(ALERTS)).json()
            shown = {
                a["alert_type"]: (await carol.get(f"{ALERTS}/{a['id']}")).json() for a in listed
            }
        assert set(shown) == {"WASH_TRADE", "SPOOFING"}
        trading = trading_of(api)
        async with unit_of_work(trading.sessions) as session:
            for alert in shown.values():
                assert [o["order_id"] for o in alert["orders"]] == alert["order_ids"]
                assert [x["execution_id"] for x in alert["executions"]] == alert["execution_ids"]
                # The same figures in the evidence, for a machine reading it.
                assert alert["evidence"]["orders"] == alert["orders"]
                for detail in alert["orders"]:
                    row = await session.get(Order, detail["order_id"])
                    assert row is not None
                    assert detail["account_id"] == row.account_id
                    assert detail["side"] == row.side
                    assert Decimal(detail["price"]) == row.limit_price
                    assert detail["quantity"] == row.quantity
                    assert detail["time"] == ns_to_iso(row.created_ns)
                    assert detail["status"] in {
                        "working",
                        "partially_filled",
                        "filled",
                        "cancelled",
                    }
                for detail in alert["executions"]:
                    x = await session.get(Execution, detail["execution_id"])
                    assert x is not None
                    assert detail["order_id"] == x.order_id
                    assert Decimal(detail["price"]) == x.price
                    assert detail["quantity"] == x.quantity
                    assert detail["time"] == ns_to_iso(x.executed_ns)
                    assert detail["side"] == x.side
                    assert detail["liquidity"] == x.liquidity
            numbers = {
                a: (await trading.accounts.get(session, a)).number for a in market.ursula.accounts
            }
        spoof = shown["SPOOFING"]
        [bid] = [o for o in spoof["orders"] if o["order_id"] == market.spoof_order]
        assert (bid["side"], bid["price"], bid["quantity"], bid["filled_quantity"]) == (
            "buy",
            "49.97",
            5000,
            0,
        )
        assert bid["status"] == "cancelled"
        [sale] = spoof["executions"]
        assert (sale["side"], sale["price"], sale["quantity"]) == ("sell", "49.98", 300)
        assert sale["counterparty"] == "street"
        # Ursula's crosses: each execution names the other side by masked account number.
        wash = shown["WASH_TRADE"]
        internal = [x for x in wash["executions"] if x["counterparty"] != "street"]
        assert internal
        for x in internal:
            assert MASKED.match(x["counterparty"]), x["counterparty"]
            other = next(a for a in market.ursula.accounts if a != x["account_id"])
            assert x["counterparty"][-2:] == numbers[other][-2:]
            assert numbers[other] not in x["counterparty"]
            assert other not in str(x)
        assert {o["status"] for o in wash["orders"]} <= {"filled", "partially_filled"}

    async def test_a_match_cut_by_the_end_of_a_batch_still_names_its_counterparty(
        self, api: Api
    ) -> None:
        await trade_a_market(api)
        await chain(api)
        while True:
            # One event a pass: a finding at the taker's fill of a cross is recorded before
            # the pass reads the maker's fill.
            result = await fresh_surveillance(api, batch_size=1).consumer.run_once()
            if result.events == 0:
                break
        async with surveillance_of(api).unit_of_work() as session:
            alerts = list((await session.execute(select(SurveillanceAlert))).scalars().all())
        wash = next(a for a in alerts if a.alert_type == "WASH_TRADE")
        parties = {x["counterparty"] for x in wash.evidence["executions"]}
        assert parties - {"street"}
        assert all(MASKED.match(p) for p in parties - {"street"}), parties

    async def test_a_folded_finding_adds_its_trades_to_the_alerts_evidence(self, api: Api) -> None:
        market = await trade_a_market(api)
        await chain(api)
        await surveillance_of(api).consumer.run()
        async with surveillance_of(api).unit_of_work() as session:
            alerts = list((await session.execute(select(SurveillanceAlert))).scalars().all())
        wash = next(a for a in alerts if a.alert_type == "WASH_TRADE")
        # Every order id the alert keeps has its details, including those of the findings
        # folded in before the latest.
        assert {o["order_id"] for o in wash.evidence["orders"]} >= set(wash.order_ids)
        assert market.ursula.user_id == wash.owner
