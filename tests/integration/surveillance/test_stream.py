"""The surveillance stream over a real ledger (SQLite and PostgreSQL): orders, cancels and
executions recorded by the trading core are read in chain order behind a stored
checkpoint; the alerts, their ledger events and the checkpoint commit together, so a
consumer restarted at any point (or several taking turns) raises exactly the alerts an
uninterrupted run raises, none twice. MAN-2's re-quote test on the trading core's own cancels
and cancel-replaces: a re-quote pulled seconds later, or a spoof moved away, is alerted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.surveillance.support import (
    MONDAY_OPEN,
    Customer,
    cancel,
    chain,
    customer,
    expected_alerts,
    fresh_surveillance,
    order,
    surveillance_of,
    trade_a_market,
)
from tests.support.api import Api, audit_events, running_api
from tests.support.ledger import drain_waiting, writer_in_flight
from tests.support.trading import SETUP, add_instrument, street_order, trading_of
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.core.orders import Side
from tradeguard.db.engine import unit_of_work
from tradeguard.ledger.domain import Party
from tradeguard.surveillance.domain import AlertType
from tradeguard.surveillance.models import SurveillanceAlert, SurveillanceCheckpoint
from tradeguard.trading.desk import ReplaceRequest
from tradeguard.trading.models import Execution, Order


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(MONDAY_OPEN)


@pytest.fixture
async def api(settings: Settings, engine: AsyncEngine, clock: FrozenClock) -> AsyncIterator[Api]:
    async with running_api(settings, engine, clock) as running:
        yield running


async def stored_alerts(api: Api) -> list[SurveillanceAlert]:
    async with surveillance_of(api).unit_of_work() as session:
        query = select(SurveillanceAlert).order_by(SurveillanceAlert.first_trigger_seq)
        return list((await session.execute(query)).scalars().all())


def summary(alerts: list[Any]) -> list[tuple[str, int, int]]:
    """(type, first trigger seq, findings folded in) of each alert."""
    rows = []
    for alert in alerts:
        if isinstance(alert, SurveillanceAlert):
            rows.append((alert.alert_type, alert.first_trigger_seq, alert.occurrences))
        else:
            rows.append((alert.alert_type.value, alert.first.trigger_seq, alert.occurrences))
    return sorted(rows)


@pytest.mark.spec("MAN-5")
class TestStream:
    async def test_the_stream_raises_each_alert_once_with_its_evidence_and_ledger_event(
        self, api: Api
    ) -> None:
        market = await trade_a_market(api)
        await chain(api)
        result = await surveillance_of(api).consumer.run()
        again = await surveillance_of(api).consumer.run()
        alerts = await stored_alerts(api)
        types = {a.alert_type for a in alerts}
        assert types == {AlertType.WASH_TRADE.value, AlertType.SPOOFING.value}
        assert result.alerts == len(alerts)
        assert again.events == 0
        assert again.alerts == 0
        wash = next(a for a in alerts if a.alert_type == AlertType.WASH_TRADE.value)
        assert wash.detector == "MAN-1"
        assert wash.owner == market.ursula.user_id
        assert wash.accounts == sorted(market.ursula.accounts)
        assert wash.evidence["self_matched_quantity"] >= 500
        spoof = next(a for a in alerts if a.alert_type == AlertType.SPOOFING.value)
        assert spoof.owner == market.sam.user_id
        assert spoof.evidence["cancelled_order_ids"] == [market.spoof_order]
        assert spoof.evidence["cancelled_quantity"] == 5000
        assert spoof.evidence["seconds_after_execution"] == 1.5
        bids = spoof.evidence["book_at_execution"]["bids"]
        assert {"price": "49.97", "quantity": 5000, "orders": 1, "suspect_quantity": 5000} in bids
        # The evidence names real orders and executions of the trading core.
        async with unit_of_work(trading_of(api).sessions) as session:
            for alert in alerts:
                orders = await session.scalar(
                    select(func.count()).select_from(Order).where(Order.id.in_(alert.order_ids))
                )
                executions = await session.scalar(
                    select(func.count())
                    .select_from(Execution)
                    .where(Execution.id.in_(alert.execution_ids))
                )
                assert orders == len(alert.order_ids)
                assert executions == len(alert.execution_ids)
        # Each alert is a ledger event, and honest Mia is in none.
        raised = await audit_events(api, "surveillance:alert:raised")
        assert sorted(e["data"]["alert_id"] for e in raised) == sorted(a.id for a in alerts)
        assert all(market.mia.user_id != a.owner for a in alerts)
        assert all(a.latency_ns >= 0 for a in alerts)

    async def test_a_new_consumer_at_every_batch_raises_what_one_uninterrupted_run_does(
        self, api: Api
    ) -> None:
        await trade_a_market(api)
        await chain(api)
        expected = await expected_alerts(api)
        assert {a.alert_type for a in expected} == {AlertType.WASH_TRADE, AlertType.SPOOFING}
        passes = 0
        while True:
            # A new process each pass: nothing in memory, the engine rebuilt from the
            # checkpoint's resume point before reading on.
            consumer = fresh_surveillance(api, batch_size=3).consumer
            result = await consumer.run_once()
            passes += 1
            if result.events == 0:
                break
            assert result.rebuilt
        assert passes > 10
        assert summary(await stored_alerts(api)) == summary(expected)
        raised = await audit_events(api, "surveillance:alert:raised")
        assert len(raised) == len(expected)
        extended = await audit_events(api, "surveillance:alert:extended")
        assert len(extended) == sum(a.occurrences - 1 for a in expected)

    async def test_consumers_taking_turns_while_trading_goes_on_raise_each_alert_once(
        self, api: Api
    ) -> None:
        first = fresh_surveillance(api, batch_size=4).consumer
        second = fresh_surveillance(api, batch_size=4).consumer
        turn = 0

        async def read_some() -> None:
            # Two workers alternate on one checkpoint while orders keep arriving.
            nonlocal turn
            await chain(api)
            await (first if turn % 2 == 0 else second).run_once()
            turn += 1

        await trade_a_market(api, after_each_step=read_some)
        await chain(api)
        await first.run()
        await second.run()
        expected = await expected_alerts(api)
        assert summary(await stored_alerts(api)) == summary(expected)
        async with surveillance_of(api).unit_of_work() as session:
            mark = await session.get(SurveillanceCheckpoint, "surveillance")
        raised = await audit_events(api, "surveillance:alert:raised")
        assert len(raised) == len(expected)
        # The checkpoint stands past the last trigger (the events read include the
        # surveillance events themselves: the stream skips them).
        assert mark is not None
        assert mark.last_seq >= max(a.latest.trigger_seq for a in expected)

    async def test_a_pass_that_fails_at_commit_leaves_no_alert_and_the_next_resumes_exactly(
        self, api: Api
    ) -> None:
        await trade_a_market(api)
        await chain(api)
        services = fresh_surveillance(api, batch_size=10_000)
        # The database refuses to move the checkpoint (a real failure inside the pass's
        # transaction, after its alerts and their ledger events were written).
        async with api.engine.begin() as conn:
            for statement in REFUSE_CHECKPOINT[api.engine.dialect.name]:
                await conn.execute(text(statement))
        with pytest.raises(DBAPIError):
            await services.consumer.run_once()
        assert await stored_alerts(api) == []
        assert await audit_events(api, "surveillance:alert:raised") == []
        async with api.engine.begin() as conn:
            await conn.execute(
                text("DROP TRIGGER refuse_checkpoint ON surveillance_checkpoints")
                if api.engine.dialect.name == "postgresql"
                else text("DROP TRIGGER refuse_checkpoint")
            )
        await services.consumer.run()
        expected = await expected_alerts(api)
        assert summary(await stored_alerts(api)) == summary(expected)
        assert len(await audit_events(api, "surveillance:alert:raised")) == len(expected)


@pytest.mark.postgres
@pytest.mark.spec("MAN-5")
class TestStreamWithAnotherWriter:
    async def test_a_writer_in_flight_in_the_database_holds_the_market_back_not_cuts_it_short(
        self, settings: Settings, pg_engine: AsyncEngine
    ) -> None:
        # Another client (a request, a worker, another process) begins a write after the wash
        # trades and before the spoof: the chain must wait for it, not end at the wash. Cut
        # short there, the stream raised WASH_TRADE only: the flaky run under a busy database.
        async with (
            running_api(settings, pg_engine, FrozenClock(MONDAY_OPEN)) as api,
            AsyncExitStack() as other,
        ):
            steps = 0

            async def begin_writing_before_the_spoof() -> None:
                nonlocal steps
                steps += 1
                if steps == 5:  # both wash crosses are in; the spoofing bid is next
                    await other.enter_async_context(writer_in_flight(pg_engine))

            await trade_a_market(api, after_each_step=begin_writing_before_the_spoof)
            with drain_waiting() as waiting:
                waited = asyncio.create_task(waiting.wait())
                chaining = asyncio.create_task(chain(api))
                await asyncio.wait({chaining, waited}, return_when=asyncio.FIRST_COMPLETED)
                waited.cancel()
                await other.aclose()  # the other writer commits; the chain goes on
                await chaining
            await surveillance_of(api).consumer.run()
            alerts = await stored_alerts(api)
            assert {a.alert_type for a in alerts} == {
                AlertType.WASH_TRADE.value,
                AlertType.SPOOFING.value,
            }


REFUSE_CHECKPOINT = {
    "sqlite": [
        "CREATE TRIGGER refuse_checkpoint BEFORE UPDATE ON surveillance_checkpoints "
        "BEGIN SELECT RAISE(ABORT, 'checkpoint refused'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_checkpoint() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'checkpoint refused'; END $$",
        "CREATE TRIGGER refuse_checkpoint BEFORE UPDATE ON surveillance_checkpoints "
        "FOR EACH ROW EXECUTE FUNCTION refuse_checkpoint()",
    ],
}


async def replace(api: Api, who: Customer, account: str, order_id: str, price: str) -> str:
    outcome = await trading_of(api).desk.replace(
        account_id=account,
        order_id=order_id,
        user_id=who.user_id,
        request=ReplaceRequest(
            client_order_id=f"r-{order_id}", quantity=3000, limit_price=Decimal(price)
        ),
        actor=Party("user", who.user_id),
    )
    assert outcome.accepted, outcome.order.reject_code
    return outcome.order.id


@pytest.mark.spec("MAN-2")
class TestRequoteStream:
    async def test_a_pulled_re_quote_and_a_spoof_moved_away_are_alerted(self, api: Api) -> None:
        await add_instrument(api, "ACME", "50.00")
        await street_order(api, "ACME", Side.SELL, 100_000, "50.02")
        await street_order(api, "ACME", Side.BUY, 100_000, "49.98")
        faker = await customer(api, "faker")
        mover = await customer(api, "mover")
        honest = await customer(api, "honest")
        (f1,) = faker.accounts
        (m1,) = mover.accounts
        (h1,) = honest.accounts
        for who, account in ((faker, f1), (mover, m1), (honest, h1)):
            await order(api, who, account, "buy", 300, "50.02")
        api.clock.advance(seconds=60)
        # Each bids 3,000 a tick below the street's bid, sells 100 into it, pulls the bid.
        bids = {}
        for who, account in ((faker, f1), (mover, m1), (honest, h1)):
            bids[account] = await order(api, who, account, "buy", 3000, "49.97")
        api.clock.advance(seconds=1)
        for who, account in ((faker, f1), (mover, m1), (honest, h1)):
            await order(api, who, account, "sell", 100, "49.98")
        api.clock.advance(seconds=0.5)
        await cancel(api, faker, f1, bids[f1])
        await cancel(api, honest, h1, bids[h1])
        # The mover moves its bid away below the market instead (a cancel-replace); the moved
        # bid rests, but it is the spoof moved away, not a re-quote.
        moved = await replace(api, mover, m1, bids[m1], "49.50")
        api.clock.advance(seconds=0.8)
        # The faker and the honest bidder bid 1,600 a tick lower; the faker pulls it 2.5 s
        # later, the honest bidder leaves it.
        fake = await order(api, faker, f1, "buy", 1600, "49.96")
        await order(api, honest, h1, "buy", 1600, "49.96")
        api.clock.advance(seconds=2.5)
        await cancel(api, faker, f1, fake)
        api.clock.advance(seconds=40)
        await cancel(api, mover, m1, moved)
        api.clock.advance(seconds=1)
        await order(api, honest, h1, "sell", 100, "49.98")  # the market goes on
        await chain(api)
        await surveillance_of(api).consumer.run()

        alerts = await stored_alerts(api)
        assert [(a.alert_type, a.owner) for a in alerts] == [
            (AlertType.SPOOFING.value, faker.user_id),
            (AlertType.SPOOFING.value, mover.user_id),
        ]
        assert [a.evidence["cancelled_order_ids"] for a in alerts] == [[bids[f1]], [bids[m1]]]
        expected = await expected_alerts(api)
        # What one uninterrupted pass of the engine finds (released as each re-quote test
        # ends, so not necessarily in trigger order).
        assert sorted((a.alert_type.value, a.first.trigger_seq) for a in expected) == [
            (a.alert_type, a.first_trigger_seq) for a in alerts
        ]


@pytest.mark.spec("MAN-2")
class TestSpoofAcrossAnOwnersAccounts:
    async def test_a_spoof_in_one_account_and_the_sale_in_another_of_the_owner_is_alerted(
        self, api: Api
    ) -> None:
        """The second outside review: erin's bid rests in one account and her sale executes
        from another; dave's bids and frank's sale, the two joined by a manual owner link.
        Both alerts name every account involved."""
        await add_instrument(api, "ACME", "50.00")
        await street_order(api, "ACME", Side.SELL, 100_000, "50.02")
        await street_order(api, "ACME", Side.BUY, 100_000, "49.98")
        erin = await customer(api, "erin", accounts=2)
        dave = await customer(api, "dave")
        frank = await customer(api, "frank")
        stranger = await customer(api, "stranger")
        other = await customer(api, "other")
        e1, e2 = erin.accounts
        (d1,) = dave.accounts
        (f1,) = frank.accounts
        (s1,) = stranger.accounts
        (o1,) = other.accounts
        services = surveillance_of(api)
        async with services.unit_of_work() as session:
            await services.links.add(
                session, account_a=d1, account_b=f1, reason="one household", actor=SETUP
            )
        for who, account in ((erin, e2), (frank, f1), (other, o1)):
            await order(api, who, account, "buy", 300, "50.02")
        api.clock.advance(seconds=60)
        erin_bid = await order(api, erin, e1, "buy", 3000, "49.97")
        # (Three sizes: the desk refuses an identical order as a duplicate.)
        dave_bids = [await order(api, dave, d1, "buy", n, "49.97") for n in (1000, 1100, 900)]
        stranger_bid = await order(api, stranger, s1, "buy", 3000, "49.97")
        api.clock.advance(seconds=1)
        for who, account in ((erin, e2), (frank, f1), (other, o1)):
            await order(api, who, account, "sell", 100, "49.98")
        api.clock.advance(seconds=0.5)
        await cancel(api, erin, e1, erin_bid)
        for bid in dave_bids:
            await cancel(api, dave, d1, bid)
        # Two unrelated owners doing the same: nothing.
        await cancel(api, stranger, s1, stranger_bid)
        api.clock.advance(seconds=5)
        await order(api, other, o1, "sell", 100, "49.98")  # the market goes on
        await chain(api)
        await surveillance_of(api).consumer.run()

        alerts = await stored_alerts(api)
        by_owner = {a.owner: a for a in alerts}
        assert set(by_owner) == {erin.user_id, min(dave.user_id, frank.user_id)}
        assert {a.alert_type for a in alerts} == {AlertType.SPOOFING.value}
        erins = by_owner[erin.user_id]
        assert sorted(erins.accounts) == sorted([e2, e1])
        assert erins.evidence["executing_accounts"] == [e2]
        assert erins.evidence["cancelling_accounts"] == [e1]
        assert erins.evidence["cancelled_order_ids"] == [erin_bid]
        daves = by_owner[min(dave.user_id, frank.user_id)]
        assert sorted(daves.accounts) == sorted([f1, d1])
        assert daves.evidence["executing_accounts"] == [f1]
        assert daves.evidence["cancelling_accounts"] == [d1]
        assert sorted(daves.evidence["cancelled_order_ids"]) == sorted(dave_bids)
        assert daves.evidence["owner_links"][0]["kind"] == "manual"
