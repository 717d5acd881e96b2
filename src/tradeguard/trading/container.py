"""Builds the trading services once per process (app, CLI command, test)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tradeguard.config import Settings
from tradeguard.core.calendar import ExchangeCalendar
from tradeguard.core.clock import Clock
from tradeguard.core.ids import IdGenerator
from tradeguard.ledger.service import Ledger
from tradeguard.trading.accounts import AccountService
from tradeguard.trading.common import StaffAccessLog, TradingDeps, TradingPolicy
from tradeguard.trading.desk import TradingDesk
from tradeguard.trading.executions import ExecutionRecorder
from tradeguard.trading.halts import HaltService
from tradeguard.trading.locates import LocateService
from tradeguard.trading.metrics import TradingMetrics
from tradeguard.trading.orders import OrderService
from tradeguard.trading.reconcile import Reconciler
from tradeguard.trading.reference import ReferenceService
from tradeguard.trading.reversals import ReversalService
from tradeguard.trading.settlement import SettlementService
from tradeguard.trading.snapshots import SnapshotBuilder
from tradeguard.trading.stream import StreamHub
from tradeguard.venue.simulated import SimulatedVenue, StreetConfig


@dataclass(slots=True)
class TradingServices:
    deps: TradingDeps
    sessions: async_sessionmaker[AsyncSession]
    accounts: AccountService
    orders: OrderService
    reference: ReferenceService
    halts: HaltService
    locates: LocateService
    settlement: SettlementService
    reconciler: Reconciler
    recorder: ExecutionRecorder
    hub: StreamHub
    desk: TradingDesk
    metrics: TradingMetrics
    venue: SimulatedVenue | None
    # Fraudulent executions undone by compensating entries (account recovery, ATO-3).
    reversals: ReversalService
    # The customer's access log for the staff account routes, installed by the back office
    # (web/app.py); while it is None those routes refuse (IAC-4, deny by default).
    staff_access_log: StaffAccessLog | None = None


def build_trading(
    settings: Settings,
    *,
    clock: Clock,
    ids: IdGenerator,
    sessions: async_sessionmaker[AsyncSession],
    registry: CollectorRegistry | None = None,
    with_venue: bool = True,
    street: bool | None = None,
    seed: int | None = None,
) -> TradingServices:
    """Wire the trading core. `with_venue=False` (the CLI) changes the database only; a
    running server's venue then rebuilds its books when it sees the control version move."""
    deps = TradingDeps(
        clock=clock,
        ids=ids,
        ledger=Ledger(clock=clock, ids=ids),
        calendar=ExchangeCalendar(),
        policy=TradingPolicy.from_settings(settings),
    )
    metrics = TradingMetrics(registry)
    accounts = AccountService(deps)
    orders = OrderService(deps, accounts, SnapshotBuilder(deps, accounts), metrics)
    hub = StreamHub(
        clock=clock, buffer=settings.stream_send_buffer, on_slow_drop=metrics.slow_client_dropped
    )
    metrics.count_streams(hub.connection_count)
    recorder = ExecutionRecorder(deps, orders, sessions, metrics, publish=hub.publish)
    venue: SimulatedVenue | None = None
    if with_venue:
        run_street = settings.market_simulator if street is None else street
        venue = SimulatedVenue(
            clock=clock,
            ids=ids,
            sink=recorder,
            street=StreetConfig(volatility=settings.market_volatility) if run_street else None,
            seed=seed,
            on_rebuild=metrics.book_rebuilt,
            session_open=lambda: deps.market_open(clock.now_ns()),
        )
        deps.market = venue
    halts = HaltService(deps, orders)
    reference = ReferenceService(deps)
    return TradingServices(
        deps=deps,
        sessions=sessions,
        accounts=accounts,
        orders=orders,
        reference=reference,
        halts=halts,
        locates=LocateService(deps),
        settlement=SettlementService(deps, orders),
        reconciler=Reconciler(deps),
        recorder=recorder,
        hub=hub,
        desk=TradingDesk(
            deps=deps,
            sessions=sessions,
            orders=orders,
            halts=halts,
            accounts=accounts,
            reference=reference,
            recorder=recorder,
            venue=venue,
            hub=hub,
        ),
        metrics=metrics,
        venue=venue,
        reversals=ReversalService(deps),
    )
