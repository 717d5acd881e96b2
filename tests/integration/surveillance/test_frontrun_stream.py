"""MAN-4 through the real stream (SQLite and PostgreSQL): a staff account trading through
the trading core ahead of a large client order and unwinding, and buying a symbol shortly
before compliance puts it on the restricted list (the trading core's own
`trading:restricted_list:added` event), become FRONT_RUNNING and RESTRICTED_LIST_AHEAD
alerts; a customer who did the same is in none."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.surveillance.support import MONDAY_OPEN, chain, customer, order
from tests.support.api import Api, audit_events, running_api
from tests.support.trading import SETUP, add_instrument, street_order, trading_of
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.core.orders import Side
from tradeguard.surveillance.container import SurveillanceServices, build_surveillance
from tradeguard.surveillance.domain import AlertType
from tradeguard.surveillance.models import SurveillanceAlert


@pytest.fixture
async def api(settings: Settings, engine: AsyncEngine) -> AsyncIterator[Api]:
    async with running_api(settings, engine, FrozenClock(MONDAY_OPEN)) as running:
        yield running


def surveillance_with_insiders(api: Api, insiders: list[str]) -> SurveillanceServices:
    """The stream as a worker configured with the firm's staff accounts would build it
    (TRADEGUARD_SURVEILLANCE_FRONTRUN_INSIDER_ACCOUNTS)."""
    trading = trading_of(api)
    runtime = api.app.state.runtime
    settings = runtime.settings.model_copy(
        update={"surveillance_frontrun_insider_accounts": tuple(insiders)}
    )
    return build_surveillance(
        settings,
        clock=api.clock,
        ids=runtime.ids,
        sessions=runtime.sessions,
        ledger=trading.deps.ledger,
        accounts=trading.accounts,
        orders=trading.orders,
        staff=api.services.accounts,
    )


@pytest.mark.spec("MAN-4")
class TestFrontRunningStream:
    async def test_staff_trading_ahead_of_a_client_and_of_the_restricted_list_is_alerted(
        self, api: Api
    ) -> None:
        await add_instrument(api, "ACME", "50.00")
        await add_instrument(api, "BETA", "20.00")
        await street_order(api, "ACME", Side.SELL, 100_000, "50.02")
        await street_order(api, "ACME", Side.BUY, 100_000, "49.98")
        await street_order(api, "BETA", Side.SELL, 100_000, "20.02")
        staff = await customer(api, "staffer")
        client = await customer(api, "whale")
        other = await customer(api, "carl")  # a customer doing what the staffer does
        (s1,) = staff.accounts
        (c1,) = client.accounts
        (o1,) = other.accounts
        # Ahead of the client: the staffer and Carl buy, the client buys 5,000 (USD 250,100)
        # two minutes later, both sell ten minutes after that.
        await order(api, staff, s1, "buy", 400, "50.02")
        await order(api, other, o1, "buy", 400, "50.02")
        api.clock.advance(seconds=120)
        client_order = await order(api, client, c1, "buy", 5000, "50.02")
        api.clock.advance(seconds=600)
        unwind = await order(api, staff, s1, "sell", 400, "49.98")
        await order(api, other, o1, "sell", 400, "49.98")
        # The staffer (and Carl) buy BETA; an hour later compliance restricts it.
        await order(api, staff, s1, "buy", 1000, "20.02", symbol="BETA")
        await order(api, other, o1, "buy", 1000, "20.02", symbol="BETA")
        api.clock.advance(seconds=3600)
        await trading_of(api).desk.restrict(symbol="BETA", reason="banking mandate", actor=SETUP)
        api.clock.advance(seconds=1)
        await chain(api)

        services = surveillance_with_insiders(api, [s1])
        await services.consumer.run()
        async with services.unit_of_work() as session:
            query = select(SurveillanceAlert).order_by(SurveillanceAlert.first_trigger_seq)
            alerts = list((await session.execute(query)).scalars().all())
        assert [(a.alert_type, a.symbol) for a in alerts] == [
            (AlertType.FRONT_RUNNING.value, "ACME"),
            (AlertType.RESTRICTED_LIST_AHEAD.value, "BETA"),
        ]
        assert {a.owner for a in alerts} == {staff.user_id}
        assert all(a.detector == "MAN-4" and a.accounts == [s1] for a in alerts)
        front, listed = alerts
        assert front.evidence["client_order_id"] == client_order
        assert front.evidence["client_account"] == c1
        assert front.evidence["quantity_ahead"] == 400
        assert front.evidence["seconds_ahead"] == 120
        assert unwind in front.order_ids
        # The trades behind it: the staffer's buy ahead and the unwind, with their times.
        mine = {o["order_id"]: o for o in front.evidence["orders"] if o["account_id"] == s1}
        assert (mine[unwind]["side"], mine[unwind]["quantity"], mine[unwind]["price"]) == (
            "sell",
            400,
            "49.98",
        )
        assert {(o["side"], o["status"]) for o in mine.values()} == {
            ("buy", "filled"),
            ("sell", "filled"),
        }
        assert all(x["counterparty"] == "street" for x in front.evidence["executions"])
        ahead = next(o for o in mine.values() if o["side"] == "buy")
        assert ahead["time"] < mine[unwind]["time"]
        assert listed.evidence["net_quantity"] == 1000
        assert listed.evidence["minutes_before_listing"] == 60.0
        restricted = await audit_events(api, "trading:restricted_list:added")
        assert len(restricted) == 1
        raised = await audit_events(api, "surveillance:alert:raised")
        assert sorted(e["data"]["alert_id"] for e in raised) == sorted(a.id for a in alerts)

    async def test_a_registered_staffer_trading_honestly_around_client_orders_is_not_flagged(
        self, api: Api
    ) -> None:
        """The twin: the staffer is in the register and trades the same symbol the same way,
        but not shortly ahead of a large client order: long before one, after one, and ahead
        of a small one."""
        await add_instrument(api, "ACME", "50.00")
        await street_order(api, "ACME", Side.SELL, 100_000, "50.02")
        await street_order(api, "ACME", Side.BUY, 100_000, "49.98")
        staff = await customer(api, "staffer")
        client = await customer(api, "whale")
        (s1,) = staff.accounts
        (c1,) = client.accounts
        # Twenty minutes before the large order (the window is five), sold after it.
        await order(api, staff, s1, "buy", 400, "50.02")
        api.clock.advance(seconds=1200)
        await order(api, client, c1, "buy", 5000, "50.02")
        api.clock.advance(seconds=600)
        await order(api, staff, s1, "sell", 400, "49.98")
        # After a large order: following the market is not trading ahead of it.
        api.clock.advance(seconds=3600)
        await order(api, client, c1, "buy", 5000, "50.02")
        api.clock.advance(seconds=30)
        await order(api, staff, s1, "buy", 400, "50.02")
        api.clock.advance(seconds=600)
        await order(api, staff, s1, "sell", 400, "49.98")
        # Ahead of a small client order (100 shares: USD 5,002).
        api.clock.advance(seconds=3600)
        await order(api, staff, s1, "buy", 400, "50.02")
        api.clock.advance(seconds=120)
        await order(api, client, c1, "buy", 100, "50.02")
        api.clock.advance(seconds=600)
        await order(api, staff, s1, "sell", 400, "49.98")
        api.clock.advance(seconds=1)
        await chain(api)
        services = surveillance_with_insiders(api, [s1])
        result = await services.consumer.run()
        assert result.market_events > 0
        async with services.unit_of_work() as session:
            alerts = list((await session.execute(select(SurveillanceAlert))).scalars().all())
        assert [a.alert_type for a in alerts] == []

    async def test_without_the_staff_register_nothing_is_flagged(self, api: Api) -> None:
        await add_instrument(api, "ACME", "50.00")
        await street_order(api, "ACME", Side.SELL, 100_000, "50.02")
        await street_order(api, "ACME", Side.BUY, 100_000, "49.98")
        staff = await customer(api, "staffer")
        client = await customer(api, "whale")
        (s1,) = staff.accounts
        (c1,) = client.accounts
        await order(api, staff, s1, "buy", 400, "50.02")
        api.clock.advance(seconds=120)
        await order(api, client, c1, "buy", 5000, "50.02")
        api.clock.advance(seconds=600)
        await order(api, staff, s1, "sell", 400, "49.98")
        api.clock.advance(seconds=1)
        await chain(api)
        services = surveillance_with_insiders(api, [])
        result = await services.consumer.run()
        assert result.market_events > 0
        assert result.alerts == 0

    async def test_the_staff_members_other_account_and_a_linked_account_are_insiders(
        self, api: Api
    ) -> None:
        """Only the staffer's first account is registered; she trades through her second
        account and through her partner's, which compliance linked to hers as one owner."""
        await add_instrument(api, "ACME", "50.00")
        await add_instrument(api, "BETA", "20.00")
        await street_order(api, "ACME", Side.SELL, 100_000, "50.02")
        await street_order(api, "ACME", Side.BUY, 100_000, "49.98")
        await street_order(api, "BETA", Side.SELL, 100_000, "20.02")
        staff = await customer(api, "staffer", accounts=2)
        partner = await customer(api, "partner")
        client = await customer(api, "whale")
        s1, s2 = staff.accounts
        (p1,) = partner.accounts
        (c1,) = client.accounts
        services = surveillance_with_insiders(api, [s1])
        async with services.unit_of_work() as session:
            await services.links.add(
                session, account_a=s1, account_b=p1, reason="household", actor=SETUP
            )
        # The partner's holding, bought long before (it sells what the staffer bought).
        await order(api, partner, p1, "buy", 400, "50.02")
        api.clock.advance(seconds=3600)
        await order(api, staff, s2, "buy", 400, "50.02")
        api.clock.advance(seconds=120)
        await order(api, client, c1, "buy", 5000, "50.02")
        api.clock.advance(seconds=600)
        await order(api, partner, p1, "sell", 400, "49.98")
        await order(api, partner, p1, "buy", 1000, "20.02", symbol="BETA")
        api.clock.advance(seconds=3600)
        await trading_of(api).desk.restrict(symbol="BETA", reason="banking mandate", actor=SETUP)
        api.clock.advance(seconds=1)
        await chain(api)

        await services.consumer.run()
        async with services.unit_of_work() as session:
            query = select(SurveillanceAlert).order_by(SurveillanceAlert.first_trigger_seq)
            alerts = list((await session.execute(query)).scalars().all())
        owner = min(staff.user_id, partner.user_id)  # a linked group is named by its least id
        assert [(a.alert_type, a.symbol, a.owner, a.accounts) for a in alerts] == [
            (AlertType.FRONT_RUNNING.value, "ACME", owner, [s2, p1]),
            (AlertType.RESTRICTED_LIST_AHEAD.value, "BETA", owner, [p1]),
        ]
        assert alerts[0].evidence["insider_accounts"] == [s2, p1]
        assert alerts[0].evidence["owner_links"][0]["kind"] == "manual"
