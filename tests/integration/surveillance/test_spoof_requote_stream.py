"""MAN-2's re-quote test through the real stream (SQLite and PostgreSQL): a spoofer who
"re-quotes" with an order pulled seconds later, and one who moves the spoofing bid away with
a cancel-replace (the trading core's own `PUT`), are alerted; a bidder whose re-quote stays
on the book is not."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.surveillance.support import (
    MONDAY_OPEN,
    Customer,
    cancel,
    chain,
    customer,
    expected_alerts,
    order,
    surveillance_of,
)
from tests.support.api import Api, running_api
from tests.support.trading import add_instrument, street_order, trading_of
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.core.orders import Side
from tradeguard.ledger.domain import Party
from tradeguard.surveillance.domain import AlertType
from tradeguard.surveillance.models import SurveillanceAlert
from tradeguard.trading.desk import ReplaceRequest


@pytest.fixture
async def api(settings: Settings, engine: AsyncEngine) -> AsyncIterator[Api]:
    async with running_api(settings, engine, FrozenClock(MONDAY_OPEN)) as running:
        yield running


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

        async with surveillance_of(api).unit_of_work() as session:
            query = select(SurveillanceAlert).order_by(SurveillanceAlert.first_trigger_seq)
            alerts = list((await session.execute(query)).scalars().all())
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
