"""What every trading service shares: clock, ids, ledger, policy, the market view, and the
reference-data cache."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.config import Settings
from tradeguard.core.calendar import ExchangeCalendar
from tradeguard.core.clock import Clock
from tradeguard.core.errors import Conflict, InvalidInput, NotFound, ServiceUnavailable
from tradeguard.core.ids import IdGenerator
from tradeguard.core.orders import StpMode
from tradeguard.ledger.domain import LedgerEvent, Party
from tradeguard.ledger.service import Ledger
from tradeguard.risk.domain import RiskLimits
from tradeguard.trading import repository
from tradeguard.trading.domain import StaffAccountAction
from tradeguard.trading.models import Instrument


class MarketView(Protocol):
    """Live prices from the venue's market data (absent: the instrument's stored price)."""

    def reference_price(self, symbol: str) -> Decimal | None: ...

    def mark_price(self, symbol: str) -> Decimal | None: ...

    def nbbo(self, symbol: str) -> tuple[Decimal | None, Decimal | None]: ...


class OnboardingGate(Protocol):
    """Whether a customer may have active accounts yet (KYC-2): their account application
    is approved. KYC answers it (kyc/onboarding/adapters.py) without trading importing KYC;
    with no gate installed, accounts open active."""

    async def cleared(self, session: AsyncSession, user_id: str) -> bool: ...


class StaticMarket:
    """No live market: prices are the stored reference prices."""

    def reference_price(self, symbol: str) -> Decimal | None:
        return None

    def mark_price(self, symbol: str) -> Decimal | None:
        return None

    def nbbo(self, symbol: str) -> tuple[Decimal | None, Decimal | None]:
        return None, None


@dataclass(frozen=True, slots=True)
class InstrumentInfo:
    symbol: str
    name: str
    currency: str
    tick_size: Decimal
    lot_size: int
    min_quantity: int
    max_quantity: int
    reference_price: Decimal | None
    band_tier: int
    tradable: bool
    threshold_security: bool
    easy_to_borrow: bool
    restricted: bool


def instrument_info(row: Instrument, *, restricted: bool) -> InstrumentInfo:
    return InstrumentInfo(
        symbol=row.symbol,
        name=row.name,
        currency=row.currency,
        tick_size=row.tick_size,
        lot_size=int(row.lot_size),
        min_quantity=row.min_quantity,
        max_quantity=row.max_quantity,
        reference_price=row.reference_price,
        band_tier=row.band_tier,
        tradable=row.status == "active",
        threshold_security=row.threshold_security,
        easy_to_borrow=row.easy_to_borrow,
        restricted=restricted,
    )


class ReferenceCache:
    """Instruments and the restricted list, reloaded whenever the control version moves.

    Order placement reads the control version under its shared lock and refreshes first if
    it moved, so an order is always checked against committed reference data.
    """

    def __init__(self) -> None:
        self.version = -1
        self._instruments: dict[str, InstrumentInfo] = {}
        self._market_halted = False
        self._halted_symbols: frozenset[str] = frozenset()

    async def ensure(self, session: AsyncSession, version: int) -> None:
        if version != self.version:
            await self.reload(session, version)

    async def reload(self, session: AsyncSession, version: int) -> None:
        restricted = {row.symbol for row in await repository.restricted(session)}
        self._instruments = {
            row.symbol: instrument_info(row, restricted=row.symbol in restricted)
            for row in await repository.instruments(session)
        }
        halts = await repository.active_halts(session)
        self._market_halted = any(h.scope == "market" for h in halts)
        self._halted_symbols = frozenset(h.target for h in halts if h.scope == "symbol")
        self.version = version

    def halted(self, symbol: str) -> tuple[bool, bool]:
        """(market-wide halt, this symbol halted) as of the loaded control version; every halt
        and resumption moves the version, so an order checked under it sees the latest."""
        return self._market_halted, symbol in self._halted_symbols

    def get(self, symbol: str) -> InstrumentInfo | None:
        return self._instruments.get(symbol)

    def all(self) -> list[InstrumentInfo]:
        return [self._instruments[s] for s in sorted(self._instruments)]


@dataclass(frozen=True, slots=True)
class TradingPolicy:
    """Firm-wide trading settings, read once from Settings."""

    limits: RiskLimits
    enforce_session: bool
    commission_per_share: Decimal
    stream_send_buffer: int

    @classmethod
    def from_settings(cls, settings: Settings) -> TradingPolicy:
        return cls(
            limits=RiskLimits(
                max_order_quantity=settings.risk_max_order_quantity,
                max_order_notional=settings.risk_max_order_notional,
                duplicate_window_ns=settings.risk_duplicate_window_ms * 1_000_000,
                max_orders_per_second=settings.risk_max_orders_per_second,
                burst_window_ns=settings.risk_burst_window_seconds * 1_000_000_000,
                burst_max_orders=settings.risk_burst_max_orders,
                unusual_size_multiple=settings.risk_unusual_size_multiple,
                unusual_size_min_history=settings.risk_unusual_size_min_history,
                position_limit=settings.risk_position_limit,
                gross_exposure_cap=settings.risk_gross_exposure_cap,
                daily_loss_limit=settings.risk_daily_loss_limit,
                initial_margin_rate=settings.risk_initial_margin_rate,
                commission_per_share=settings.commission_per_share,
                pdt_day_trades=settings.pdt_day_trades,
                pdt_window_days=settings.pdt_window_days,
                pdt_min_equity=settings.pdt_min_equity,
                pdt_min_share=settings.pdt_min_share,
                stp_mode=StpMode(settings.risk_stp_mode),
            ),
            enforce_session=settings.market_hours == "exchange",
            commission_per_share=settings.commission_per_share,
            stream_send_buffer=settings.stream_send_buffer,
        )


@dataclass(slots=True)
class TradingDeps:
    clock: Clock
    ids: IdGenerator
    ledger: Ledger
    calendar: ExchangeCalendar
    policy: TradingPolicy
    market: MarketView = field(default_factory=StaticMarket)
    reference: ReferenceCache = field(default_factory=ReferenceCache)
    # Installed when settings.kyc_required: accounts of customers not yet approved open
    # PENDING (no orders, no money in or out) until the approval activates them.
    onboarding: OnboardingGate | None = None

    def session_date(self, now_ns: int) -> date:
        """The trading date an order or a trade at `now_ns` books to. With exchange hours,
        after the close (or on a holiday) that is the next session's date; in an always-open
        market, a weekend or holiday books to the next business day."""
        calendar = self.calendar
        if not self.policy.enforce_session:
            return calendar.session_date(now_ns)
        day = calendar.trading_date(now_ns)
        if not calendar.is_business_day(day) or now_ns >= calendar.session_close_ns(day):
            return calendar.next_business_day(day)
        return day

    def market_open(self, now_ns: int) -> bool:
        """Whether the venue may match now (always, in an always-open market)."""
        return not self.policy.enforce_session or self.calendar.is_open(now_ns)

    async def write_staged(
        self, session: AsyncSession, rows: repository.StagedWrites | None = None
    ) -> None:
        """Write staged rows of the order path: `rows`, or else whatever this transaction
        staged so far (a group commit's, before it commits or before a read that depends on
        them)."""
        rows = rows if rows is not None else repository.staging(session)
        if rows is None:
            return
        if rows.events:
            await self.ledger.write(session, rows.take_events())
        await repository.write_rows(session, rows)

    async def stage(self, session: AsyncSession, rows: repository.StagedWrites) -> None:
        """Add one order's staged rows to the transaction's staging, or write them now if
        the transaction stages nothing."""
        staged = repository.staging(session)
        if staged is None:
            await self.write_staged(session, rows)
        else:
            staged.merge(rows)

    async def audit(
        self,
        session: AsyncSession,
        type_: str,
        *,
        actor: Party,
        subject: Party | None = None,
        data: dict[str, object] | None = None,
        request_id: str | None = None,
    ) -> None:
        await self.ledger.append(
            session,
            LedgerEvent(
                type=type_, actor=actor, subject=subject, data=data or {}, request_id=request_id
            ),
        )


@dataclass(frozen=True, slots=True)
class StaffActor:
    """Who acts through a staff trading route, as the customer's access log records them."""

    user_id: str
    role: str
    request_id: str | None = None
    ip: str | None = None
    # "staff" (a signed-in staff member; `user_id` is theirs) or "operator" (the command
    # line, run on the server; `user_id` is the operating-system user's name).
    kind: str = "staff"

    @classmethod
    def console(cls, operator: str) -> StaffActor:
        """The operator at the command line, as the customer's log records them."""
        return cls(user_id=operator, role="OPERATOR", kind="operator")

    @property
    def party(self) -> Party:
        return Party(self.kind, self.user_id)


class StaffAccessLog(Protocol):
    """The customer's own "who accessed my data" log (IAC-4), as staff trading routes write it.

    The back office keeps that log and sits above trading, so it installs its implementation
    in `TradingServices.staff_access_log`. `record` adds one line inside the caller's
    transaction: the line commits with the read or change it reports, or not at all.
    """

    async def record(
        self,
        session: AsyncSession,
        *,
        customer_id: str,
        staff: StaffActor,
        action: StaffAccountAction,
        account_id: str | None = None,
        reason: str | None = None,
    ) -> None: ...


class StaffAccessLogMissing(ServiceUnavailable):
    """No access log is installed: staff account routes refuse rather than show or change a
    customer's account without the customer being able to see it (deny by default)."""

    slug = "access-log-unavailable"
    title = "The customer access log is not available"


class AccountNotFound(NotFound):
    slug = "account-not-found"
    title = "Account not found"


class OrderNotFound(NotFound):
    slug = "order-not-found"
    title = "Order not found"


class InstrumentNotFound(NotFound):
    slug = "instrument-not-found"
    title = "Instrument not found"


class OrderConflict(Conflict):
    slug = "order-conflict"
    title = "The order cannot change that way"


class ClientOrderIdReused(Conflict):
    slug = "client-order-id-reused"
    title = "Client order id already used for a different order"


class TradingInputError(InvalidInput):
    slug = "invalid-trading-input"
    title = "The trading request is not valid"
