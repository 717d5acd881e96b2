"""Background work of the trading core: venue start-up and recovery, the control-version
watch, settlement, Reg SHO deadlines, DAY-order expiry, and the simulated street."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from tradeguard.core.clock import Clock
from tradeguard.core.workers import (
    BackoffPolicy,
    FailureObserver,
    FailureTracker,
    run_until_stopped,
)
from tradeguard.db.availability import unavailable_reason
from tradeguard.db.engine import unit_of_work
from tradeguard.trading.container import TradingServices
from tradeguard.trading.domain import MARKET_TARGET, HaltScope
from tradeguard.trading.executions import Notice, order_payload

logger = logging.getLogger("tradeguard.trading.tasks")

CONTROL_POLL_SECONDS = 0.25
MAINTENANCE_SECONDS = 2.0


async def sync_reference(services: TradingServices, *, rebuild: bool) -> int:
    """Reload reference data and halts into memory and (re)open the venue's books."""
    async with unit_of_work(services.sessions) as session:
        version = await services.reference.refresh_cache(session)
        halts = await services.halts.active(session)
    venue = services.venue
    if venue is None:
        return version
    for info in services.deps.reference.all():
        venue.list_symbol(info.symbol, tick=info.tick_size, price=info.reference_price)
    market_halted = any(h.scope == HaltScope.MARKET and h.target == MARKET_TARGET for h in halts)
    halted_symbols = {h.target for h in halts if h.scope == HaltScope.SYMBOL}
    for symbol in venue.symbols():
        venue.set_halted(symbol, market_halted or symbol in halted_symbols)
    if rebuild and services.deps.market_open(services.deps.clock.now_ns()):
        # While the exchange is closed the books stay empty (nothing may match); they are
        # rebuilt from the open orders at the open.
        await venue.rebuild_all()
    return version


CONTROL_COMPONENT = "trading-control-watch"
MAINTENANCE_COMPONENT = "trading-maintenance"
STREET_COMPONENT = "venue-street"


def tracker_for(
    component: str, clock: Clock, observer: FailureObserver | None, *, base: float, cap: float
) -> FailureTracker:
    """Back-off, one log line per change of state, metrics (like every background worker)."""
    return FailureTracker(
        component,
        logger=logger,
        clock=clock,
        policy=BackoffPolicy(base_seconds=base, cap_seconds=cap),
        observer=observer,
        describe=unavailable_reason,
    )


async def watch_control(
    services: TradingServices, stop: asyncio.Event, tracker: FailureTracker
) -> None:
    """Pick up changes made elsewhere (the CLI, another replica): reference data, halts, and
    orders cancelled behind the venue's back (the books are rebuilt from the database)."""
    seen = services.deps.reference.version

    async def one_pass() -> float:
        nonlocal seen
        async with unit_of_work(services.sessions) as session:
            version = await services.reference.control_version(session)
        if version != seen:
            seen = await sync_reference(services, rebuild=True)
        return CONTROL_POLL_SECONDS

    await run_until_stopped(one_pass, tracker=tracker, stop=stop)


async def run_maintenance_once(services: TradingServices) -> None:
    async with unit_of_work(services.sessions) as session:
        await services.settlement.settle_due(session)
    async with unit_of_work(services.sessions) as session:
        await services.settlement.check_fail_deadlines(session)
    await expire_day_orders(services)


async def expire_day_orders(services: TradingServices) -> int:
    async with unit_of_work(services.sessions) as session:
        due = await services.settlement.expiring_day_orders(session)
    by_symbol: dict[str, list[str]] = defaultdict(list)
    for order in due:
        by_symbol[order.symbol].append(order.id)
    expired = 0
    for symbol, ids in by_symbol.items():

        async def work(ids: list[str] = ids) -> list[Notice]:
            async with unit_of_work(services.sessions) as session:
                rows = await services.settlement.expire(session, ids)
                return [Notice(o.account_id, "order", order_payload(o)) for o in rows]

        if services.venue is None:
            notices = await work()
        else:
            notices = await services.venue.under_lock(symbol, work, remove=ids)
        expired += len(notices)
        await services.hub.publish(notices)
    return expired


async def open_the_market(services: TradingServices, was_open: bool) -> bool:
    """At the opening bell, load every book from the open orders (the orders that arrived
    while the exchange was closed meet in time priority); returns whether it is open now."""
    is_open = services.deps.market_open(services.deps.clock.now_ns())
    if is_open and not was_open and services.venue is not None:
        logger.info("session open: rebuilding the order books from the open orders")
        await services.venue.rebuild_all()
    return is_open


async def run_maintenance(
    services: TradingServices, stop: asyncio.Event, tracker: FailureTracker
) -> None:
    was_open = services.deps.market_open(services.deps.clock.now_ns())

    async def one_pass() -> float:
        nonlocal was_open
        was_open = await open_the_market(services, was_open)
        await run_maintenance_once(services)
        return MAINTENANCE_SECONDS

    await run_until_stopped(one_pass, tracker=tracker, stop=stop)


def start_tasks(
    services: TradingServices,
    stop: asyncio.Event,
    *,
    tick_ms: int,
    observer: FailureObserver | None = None,
) -> list[asyncio.Task[None]]:
    clock = services.deps.clock
    tasks = [
        asyncio.create_task(
            watch_control(
                services,
                stop,
                tracker_for(CONTROL_COMPONENT, clock, observer, base=CONTROL_POLL_SECONDS, cap=30),
            ),
            name=CONTROL_COMPONENT,
        ),
        asyncio.create_task(
            run_maintenance(
                services,
                stop,
                tracker_for(
                    MAINTENANCE_COMPONENT, clock, observer, base=MAINTENANCE_SECONDS, cap=60
                ),
            ),
            name=MAINTENANCE_COMPONENT,
        ),
    ]
    if services.venue is not None:
        tasks.append(
            asyncio.create_task(
                services.venue.run_street(
                    tick_ms,
                    stop,
                    tracker_for(STREET_COMPONENT, clock, observer, base=tick_ms / 1000, cap=30),
                ),
                name=STREET_COMPONENT,
            )
        )
    return tasks


COMPONENTS = (CONTROL_COMPONENT, MAINTENANCE_COMPONENT, STREET_COMPONENT)
