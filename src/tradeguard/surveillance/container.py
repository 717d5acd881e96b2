"""Builds the surveillance services from settings, once per process (app, CLI command, test)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tradeguard.config import Settings
from tradeguard.core.clock import NS_PER_SECOND, Clock
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import unit_of_work
from tradeguard.identity.service import SignInSignals
from tradeguard.ledger.service import Ledger
from tradeguard.surveillance.actions import ActionDesk, MailQueue, StaffContacts
from tradeguard.surveillance.cases import CaseDesk, StaffRoles
from tradeguard.surveillance.consumer import OwnerDirectory, SurveillanceConsumer
from tradeguard.surveillance.domain import (
    ClosingParameters,
    FrontRunParameters,
    MomentumParameters,
    PumpParameters,
    SpoofParameters,
    StuffingParameters,
    SurveillanceParameters,
    WashParameters,
)
from tradeguard.surveillance.linkage import LinkParameters
from tradeguard.surveillance.linking import LinkDeriver, SharedBankAccounts
from tradeguard.surveillance.metrics import SurveillanceMetrics
from tradeguard.surveillance.service import AlertStore, OwnerLinks
from tradeguard.surveillance.verify import SurveillanceVerifier
from tradeguard.trading.accounts import AccountService
from tradeguard.trading.orders import OrderService


def link_parameters_from(settings: Settings) -> LinkParameters:
    """The owner-link derivation's parameters as the settings give them."""
    return LinkParameters(
        lookback_ns=settings.surveillance_links_lookback_days * 86_400 * NS_PER_SECOND,
        network_window_ns=settings.surveillance_links_network_window_seconds * NS_PER_SECOND,
        network_min_occurrences=settings.surveillance_links_network_min_occurrences,
        network_max_users=settings.surveillance_links_network_max_users,
        device_max_users=settings.surveillance_links_device_max_users,
        ipv4_prefix=settings.surveillance_links_ipv4_prefix,
        ipv6_prefix=settings.surveillance_links_ipv6_prefix,
    )


def parameters_from(settings: Settings) -> SurveillanceParameters:
    """The detectors' parameters as the settings give them."""
    return SurveillanceParameters(
        wash=WashParameters(
            window_ns=settings.surveillance_wash_window_seconds * NS_PER_SECOND,
            min_quantity=settings.surveillance_wash_min_quantity,
            max_net_fraction=settings.surveillance_wash_max_net_fraction,
            price_tolerance=settings.surveillance_wash_price_tolerance,
            min_round_trips=settings.surveillance_wash_min_round_trips,
            min_aggressive_share=settings.surveillance_wash_min_aggressive_share,
            min_volume_share=settings.surveillance_wash_min_volume_share,
        ),
        spoof=SpoofParameters(
            max_order_age_ns=settings.surveillance_spoof_max_order_age_seconds * NS_PER_SECOND,
            cancel_window_ns=settings.surveillance_spoof_cancel_window_seconds * NS_PER_SECOND,
            min_quantity=settings.surveillance_spoof_min_quantity,
            size_ratio=settings.surveillance_spoof_size_ratio,
            imbalance_ratio=settings.surveillance_spoof_imbalance_ratio,
            layering_min_levels=settings.surveillance_layering_min_levels,
            max_distance_bps=settings.surveillance_spoof_max_distance_bps,
            requote_window_ns=settings.surveillance_spoof_requote_window_ms * 1_000_000,
            near_touch_bps=settings.surveillance_spoof_near_touch_bps,
        ),
        pump=PumpParameters(
            window_ns=settings.surveillance_pump_window_seconds * NS_PER_SECOND,
            min_rise=settings.surveillance_pump_min_rise,
            near_peak=settings.surveillance_pump_near_peak,
            min_accumulation=settings.surveillance_pump_min_accumulation,
            min_sold_fraction=settings.surveillance_pump_min_sold_fraction,
            min_accounts=settings.surveillance_pump_min_accounts,
            min_quantity=settings.surveillance_pump_min_quantity,
            min_buy_share=settings.surveillance_pump_min_buy_share,
            min_member_share=settings.surveillance_pump_min_member_share,
        ),
        frontrun=FrontRunParameters(
            insiders=frozenset(settings.surveillance_frontrun_insider_accounts),
            ahead_window_ns=settings.surveillance_frontrun_ahead_window_seconds * NS_PER_SECOND,
            unwind_window_ns=settings.surveillance_frontrun_unwind_window_seconds * NS_PER_SECOND,
            min_quantity=settings.surveillance_frontrun_min_quantity,
            large_order_notional=settings.surveillance_frontrun_large_order_notional,
            restricted_window_ns=settings.surveillance_frontrun_restricted_window_seconds
            * NS_PER_SECOND,
        ),
        closing=ClosingParameters(
            window_ns=settings.surveillance_close_window_seconds * NS_PER_SECOND,
            min_quantity=settings.surveillance_close_min_quantity,
            max_opposite_fraction=settings.surveillance_close_max_opposite_fraction,
            min_volume_share=settings.surveillance_close_min_volume_share,
            min_move=settings.surveillance_close_min_move,
        ),
        stuffing=StuffingParameters(
            window_ns=settings.surveillance_stuffing_window_ms * 1_000_000,
            min_messages=settings.surveillance_stuffing_min_messages,
            min_cancel_ratio=settings.surveillance_stuffing_min_cancel_ratio,
            max_fill_ratio=settings.surveillance_stuffing_max_fill_ratio,
        ),
        momentum=MomentumParameters(
            window_ns=settings.surveillance_momentum_window_seconds * NS_PER_SECOND,
            min_orders=settings.surveillance_momentum_min_orders,
            min_quantity=settings.surveillance_momentum_min_quantity,
            min_levels=settings.surveillance_momentum_min_levels,
            min_move_bps=settings.surveillance_momentum_min_move_bps,
            min_owner_share=settings.surveillance_momentum_min_owner_share,
            unwind_window_ns=settings.surveillance_momentum_unwind_window_seconds * NS_PER_SECOND,
            min_unwind_fraction=settings.surveillance_momentum_min_unwind_fraction,
            min_profit_bps=settings.surveillance_momentum_min_profit_bps,
        ),
        book_horizon_ns=settings.surveillance_book_horizon_seconds * NS_PER_SECOND,
        fold_window_ns=settings.surveillance_fold_window_seconds * NS_PER_SECOND,
    )


@dataclass(frozen=True, slots=True)
class SurveillanceServices:
    sessions: async_sessionmaker[AsyncSession]
    params: SurveillanceParameters
    alerts: AlertStore
    links: OwnerLinks
    consumer: SurveillanceConsumer
    cases: CaseDesk
    actions: ActionDesk
    metrics: SurveillanceMetrics
    # Derives device and network links from identity's sign-ins; None when built without
    # identity's sign-in service (commands that never derive).
    deriver: LinkDeriver | None = None
    # Checks the tables against the ledger (surveillance/verify.py).
    verifier: SurveillanceVerifier | None = None

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[AsyncSession]:
        async with unit_of_work(self.sessions) as session:
            yield session


def build_surveillance(
    settings: Settings,
    *,
    clock: Clock,
    ids: IdGenerator,
    sessions: async_sessionmaker[AsyncSession],
    ledger: Ledger,
    accounts: AccountService,
    orders: OrderService,
    staff: StaffRoles | None = None,
    contacts: StaffContacts | None = None,
    mail: MailQueue | None = None,
    consumer_name: str | None = None,
    batch_size: int | None = None,
    registry: CollectorRegistry | None = None,
    sign_ins: SignInSignals | None = None,
    bank_accounts: SharedBankAccounts | None = None,
) -> SurveillanceServices:
    """`staff` (identity's service) checks that a case's assignee is compliance staff;
    without it cases cannot be assigned (commands that never assign need not build it).
    `registry` is where the alert latency is exported (the app's /metrics); without it, a
    registry of its own. `contacts` (identity's service) and `mail` (the notify outbox)
    email compliance under a `notify` rule; without them the action records that nobody was
    mailed. `sign_ins` (identity's service) feeds the owner-link derivation; without it
    there is no `deriver`."""
    params = parameters_from(settings)
    metrics = SurveillanceMetrics(registry)
    actions = ActionDesk(
        clock=clock,
        ids=ids,
        ledger=ledger,
        accounts=accounts,
        orders=orders,
        contacts=contacts,
        mail=mail,
    )
    store = AlertStore(clock=clock, ids=ids, ledger=ledger, fold_window_ns=params.fold_window_ns)
    links = OwnerLinks(clock=clock, ids=ids, ledger=ledger, accounts=accounts)
    consumer = SurveillanceConsumer(
        sessions=sessions,
        clock=clock,
        params=params,
        store=store,
        owners=OwnerDirectory(accounts, links),
        batch_size=batch_size or settings.surveillance_batch_size,
        actions=actions,
        metrics=metrics,
        tick_grace_ns=settings.surveillance_tick_grace_ms * 1_000_000,
        **({"name": consumer_name} if consumer_name else {}),
    )
    return SurveillanceServices(
        sessions=sessions,
        params=params,
        alerts=store,
        links=links,
        consumer=consumer,
        cases=CaseDesk(clock=clock, ids=ids, ledger=ledger, accounts=accounts, staff=staff),
        actions=actions,
        metrics=metrics,
        verifier=SurveillanceVerifier(clock=clock, ledger=ledger, actions=actions),
        deriver=(
            LinkDeriver(
                sessions=sessions,
                clock=clock,
                links=links,
                signals=sign_ins,
                traders=accounts,
                params=link_parameters_from(settings),
                min_interval_ns=settings.surveillance_links_interval_seconds * NS_PER_SECOND,
                bank_accounts=bank_accounts,
            )
            if sign_ins is not None
            else None
        ),
    )
