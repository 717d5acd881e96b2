"""Arranging surveillance tests: a real market through the trading core (orders, cancels and
executions recorded by the trading services on the real database), and what the detectors
should find in it."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from tests.support.api import PASSWORD, Api
from tests.support.trading import SETUP, add_instrument, street_order, trading_of
from tradeguard.access.domain import Role
from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.core.orders import OrderType, Side, TimeInForce
from tradeguard.db.engine import unit_of_work
from tradeguard.ledger.domain import Party
from tradeguard.ledger.sequencer import LedgerSequencer
from tradeguard.ledger.service import events_after
from tradeguard.risk.domain import AccountType
from tradeguard.surveillance.container import SurveillanceServices, build_surveillance
from tradeguard.surveillance.domain import FindingFolder, FoldedAlert
from tradeguard.surveillance.engine import SurveillanceEngine
from tradeguard.surveillance.events import MARKET_EVENT_TYPES, parse_market_event
from tradeguard.surveillance.owners import BeneficialOwners
from tradeguard.trading.orders import OrderRequest

# Monday 5 January 2026, 10:00 in New York (15:00 UTC): a regular session is open.
MONDAY_OPEN = int(datetime(2026, 1, 5, 15, 0, tzinfo=UTC).timestamp()) * NS_PER_SECOND
_orders = itertools.count(1)


def surveillance_of(api: Api) -> SurveillanceServices:
    services: SurveillanceServices = api.app.state.surveillance
    return services


def fresh_surveillance(api: Api, *, batch_size: int) -> SurveillanceServices:
    """Surveillance as a new process would build it: nothing in memory, the checkpoint in
    the database (the same settings, database and ledger as the app)."""
    trading = trading_of(api)
    return build_surveillance(
        api.app.state.runtime.settings,
        clock=api.clock,
        ids=api.app.state.runtime.ids,
        sessions=api.app.state.runtime.sessions,
        ledger=trading.deps.ledger,
        accounts=trading.accounts,
        orders=trading.orders,
        staff=api.services.accounts,
        batch_size=batch_size,
    )


@dataclass
class Customer:
    user_id: str
    accounts: list[str] = field(default_factory=list)


async def customer(
    api: Api, username: str, accounts: int = 1, *, user_id: str | None = None
) -> Customer:
    """A trader (a new user, or the existing `user_id`) with funded cash accounts, opened
    through the trading core's own services."""
    if user_id is None:
        async with api.services.unit_of_work() as session:
            user = await api.services.accounts.create_user(
                session,
                username=username,
                email=f"{username}@example.com",
                password=PASSWORD,
                role=Role.TRADER,
                email_verified=True,
            )
        user_id = user.id
    trading = trading_of(api)
    found = Customer(user_id)
    for _ in range(accounts):
        async with unit_of_work(trading.sessions) as session:
            account = await trading.accounts.open_account(
                session, user_id=user_id, account_type=AccountType.CASH, actor=SETUP
            )
            await trading.accounts.adjust(
                session,
                account_id=account.id,
                amount=Decimal(1_000_000),
                reason="test funding",
                actor=SETUP,
            )
        found.accounts.append(account.id)
    return found


async def order(
    api: Api,
    who: Customer,
    account: str,
    side: str,
    quantity: int,
    price: str,
    *,
    symbol: str = "ACME",
) -> str:
    """A DAY limit order placed through the trading desk (the API's own path)."""
    outcome = await trading_of(api).desk.place(
        account_id=account,
        user_id=who.user_id,
        request=OrderRequest(
            client_order_id=f"c-{next(_orders)}",
            symbol=symbol,
            side=Side(side),
            order_type=OrderType.LIMIT,
            time_in_force=TimeInForce.DAY,
            quantity=quantity,
            limit_price=Decimal(price),
        ),
        actor=Party("user", who.user_id),
    )
    assert outcome.accepted, outcome.order.reject_code
    return outcome.order.id


async def cancel(api: Api, who: Customer, account: str, order_id: str) -> None:
    await trading_of(api).desk.cancel(
        account_id=account, order_id=order_id, user_id=who.user_id, actor=Party("user", who.user_id)
    )


@dataclass
class Market:
    ursula: Customer  # two accounts, crossing each other: wash trades (MAN-1)
    sam: Customer  # a large bid, a sale, the bid cancelled: spoofing (MAN-2)
    mia: Customer  # an honest trader: a round trip minutes apart
    spoof_order: str = ""
    steps: int = 0


async def trade_a_market(
    api: Api, *, after_each_step: object = None, ursula_id: str | None = None
) -> Market:
    """A morning of ACME: the street quoting 49.98 / 50.02, a wash-trading user (the user
    `ursula_id`, when given), a spoofer and an honest trader. `after_each_step` (an async
    callable) runs between steps, as a stream consumer would run while trading goes on."""
    await add_instrument(api, "ACME", "50.00")
    await street_order(api, "ACME", Side.SELL, 50_000, "50.02")
    await street_order(api, "ACME", Side.BUY, 50_000, "49.98")
    market = Market(
        ursula=await customer(api, "ursula", accounts=2, user_id=ursula_id),
        sam=await customer(api, "sam"),
        mia=await customer(api, "mia"),
    )
    u = market.ursula
    a1, a2 = u.accounts
    (sam,) = market.sam.accounts
    (mia,) = market.mia.accounts

    async def step(seconds: float) -> None:
        api.clock.advance(seconds=seconds)
        market.steps += 1
        if after_each_step is not None:
            await after_each_step()  # type: ignore[operator]

    # Shares to sell later, bought from the street.
    await order(api, u, a1, "buy", 1000, "50.02")
    await order(api, market.sam, sam, "buy", 300, "50.02")
    await order(api, market.mia, mia, "buy", 200, "50.02")
    await step(30)
    # Ursula crosses her two accounts at 50.00, inside the street's spread, twice.
    await order(api, u, a1, "sell", 500, "50.00")
    await step(1)
    await order(api, u, a2, "buy", 500, "50.00")
    await step(40)
    await order(api, u, a2, "sell", 500, "50.00")
    await step(1)
    await order(api, u, a1, "buy", 500, "50.00")
    await step(20)
    # Sam shows 5,000 shares bid below the street's bid, sells 300 into the street's bid,
    # and pulls the bid a second and a half later.
    market.spoof_order = await order(api, market.sam, sam, "buy", 5000, "49.97")
    await step(2)
    await order(api, market.sam, sam, "sell", 300, "49.98")
    await step(1.5)
    await cancel(api, market.sam, sam, market.spoof_order)
    await step(3)
    # Mia sells what she bought, minutes later: one round trip, nothing to see.
    await order(api, market.mia, mia, "sell", 200, "49.98")
    await step(5)
    # Another trade (it moves time past the spoofing model's re-quote test).
    await order(api, market.mia, mia, "buy", 100, "50.02")
    await step(1)
    return market


async def chain(api: Api) -> None:
    await LedgerSequencer(api.engine, clock=api.clock).drain()


async def expected_alerts(api: Api) -> list[FoldedAlert]:
    """What the detectors find over the whole chained ledger in one uninterrupted pass."""
    services = surveillance_of(api)
    trading = trading_of(api)
    documents = []
    async with unit_of_work(services.sessions) as session:
        after = 0
        while batch := await events_after(session, after_seq=after, limit=1000):
            documents.extend(batch)
            after = batch[-1].seq
        accounts = sorted(
            {
                d.document["subject"]["id"]
                for d in documents
                if d.document["type"] in MARKET_EVENT_TYPES
            }
            | services.params.frontrun.insiders
        )
        owners = BeneficialOwners(
            await trading.accounts.owners_of(session, accounts),
            owner_links=await services.links.live(session),
        )
    engine = SurveillanceEngine(services.params)
    engine.set_owners(owners.owner)
    folder = FindingFolder(services.params.fold_window_ns)
    for item in documents:
        event = parse_market_event(item.seq, item.document, owners.owner)
        if event is not None:
            for finding in engine.feed(event):
                folder.add(finding)
    return folder.alerts
