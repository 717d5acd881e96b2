"""Pre-trade risk vocabulary (SEC Rule 15c3-5 controls): reject codes, states, the snapshot.

The order service builds one immutable `RiskSnapshot` per order inside its database
transaction and hands it, with the `OrderIntent`, to `risk.pipeline.evaluate`. Everything a
check may look at is in these two objects, so the checks are pure functions: no clock, no
database, no I/O. Money is Decimal, share quantities are int.

Cancels never pass through the pipeline (as in Nautilus Trader's RiskEngine, a cancel is
always allowed: it can only reduce risk). A cancel/replace arrives as an intent with
`replaces_order_id` set; the service must build its snapshot as if the replaced order were
already gone (its holds released, its quantity out of the open-order totals and out of the
own-book prices), so the replacement is judged on what the account would hold after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum

from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.core.errors import InvalidInput
from tradeguard.core.orders import OrderType, Side, StpMode, TimeInForce

# The snapshot carries at most this many of the account's most recent order attempts, so
# a rate or burst limit above it could never trigger; RiskLimits refuses such limits.
RECENT_ORDERS_MAX = 64
ZERO = Decimal(0)


class RejectCode(StrEnum):
    """Stable reasons a pre-trade check denies an order (`CATEGORY_CONDITION`)."""

    ACCOUNT_NOT_ACTIVE = "ACCOUNT_NOT_ACTIVE"
    ACCOUNT_CLOSING_ONLY = "ACCOUNT_CLOSING_ONLY"
    ACCOUNT_HALTED = "ACCOUNT_HALTED"
    ACCOUNT_REDUCING_ONLY = "ACCOUNT_REDUCING_ONLY"
    MARKET_HALTED = "MARKET_HALTED"
    MARKET_CLOSED = "MARKET_CLOSED"
    SYMBOL_HALTED = "SYMBOL_HALTED"
    INSTRUMENT_UNKNOWN = "INSTRUMENT_UNKNOWN"
    INSTRUMENT_NOT_TRADABLE = "INSTRUMENT_NOT_TRADABLE"
    INSTRUMENT_RESTRICTED = "INSTRUMENT_RESTRICTED"
    INSTRUMENT_NO_REFERENCE_PRICE = "INSTRUMENT_NO_REFERENCE_PRICE"
    ORDER_PRICE_OFF_TICK = "ORDER_PRICE_OFF_TICK"
    ORDER_QUANTITY_OFF_LOT = "ORDER_QUANTITY_OFF_LOT"
    ORDER_QUANTITY_BELOW_MIN = "ORDER_QUANTITY_BELOW_MIN"
    ORDER_QUANTITY_ABOVE_MAX = "ORDER_QUANTITY_ABOVE_MAX"
    ORDER_NOTIONAL_ABOVE_MAX = "ORDER_NOTIONAL_ABOVE_MAX"
    ORDER_PRICE_OUTSIDE_COLLAR = "ORDER_PRICE_OUTSIDE_COLLAR"
    ORDER_DUPLICATE = "ORDER_DUPLICATE"
    ORDER_SELL_EXCEEDS_POSITION = "ORDER_SELL_EXCEEDS_POSITION"
    THROTTLE_ORDER_RATE = "THROTTLE_ORDER_RATE"
    PATTERN_PLACEMENT_BURST = "PATTERN_PLACEMENT_BURST"
    PATTERN_UNUSUAL_SIZE = "PATTERN_UNUSUAL_SIZE"
    SHORT_CASH_ACCOUNT = "SHORT_CASH_ACCOUNT"
    SHORT_NO_LOCATE = "SHORT_NO_LOCATE"
    SHORT_PREBORROW_REQUIRED = "SHORT_PREBORROW_REQUIRED"
    SHORT_PENALTY_BOX = "SHORT_PENALTY_BOX"
    PDT_DAY_TRADE_LIMIT = "PDT_DAY_TRADE_LIMIT"
    PDT_EQUITY_BELOW_MINIMUM = "PDT_EQUITY_BELOW_MINIMUM"
    STP_SELF_TRADE = "STP_SELF_TRADE"
    RISK_BUYING_POWER = "RISK_BUYING_POWER"
    RISK_POSITION_LIMIT = "RISK_POSITION_LIMIT"
    RISK_GROSS_EXPOSURE = "RISK_GROSS_EXPOSURE"
    RISK_DAILY_LOSS_LIMIT = "RISK_DAILY_LOSS_LIMIT"


REJECT_DESCRIPTIONS: dict[RejectCode, str] = {
    RejectCode.ACCOUNT_NOT_ACTIVE: "The account is not open for trading.",
    RejectCode.ACCOUNT_CLOSING_ONLY: "The account may only place orders that reduce a position.",
    RejectCode.ACCOUNT_HALTED: "Trading is halted for this account; only cancels pass.",
    RejectCode.ACCOUNT_REDUCING_ONLY: "The account is REDUCING: only reducing orders pass.",
    RejectCode.MARKET_HALTED: "Trading is halted market-wide.",
    RejectCode.MARKET_CLOSED: "The session is closed: market and IOC orders cannot be accepted.",
    RejectCode.SYMBOL_HALTED: "Trading in this symbol is halted.",
    RejectCode.INSTRUMENT_UNKNOWN: "No such instrument.",
    RejectCode.INSTRUMENT_NOT_TRADABLE: "The instrument is not open for trading.",
    RejectCode.INSTRUMENT_RESTRICTED: "On the restricted list: only closing orders pass.",
    RejectCode.INSTRUMENT_NO_REFERENCE_PRICE: "No reference price, so the order cannot be checked.",
    RejectCode.ORDER_PRICE_OFF_TICK: "The limit price is not a multiple of the tick size.",
    RejectCode.ORDER_QUANTITY_OFF_LOT: "The quantity is not a multiple of the lot size.",
    RejectCode.ORDER_QUANTITY_BELOW_MIN: "The quantity is below the instrument's minimum.",
    RejectCode.ORDER_QUANTITY_ABOVE_MAX: "The quantity is above the maximum order size.",
    RejectCode.ORDER_NOTIONAL_ABOVE_MAX: "The order's value is above the single-order maximum.",
    RejectCode.ORDER_PRICE_OUTSIDE_COLLAR: "The limit price is outside the price collar.",
    RejectCode.ORDER_DUPLICATE: "An identical order was accepted moments ago.",
    RejectCode.ORDER_SELL_EXCEEDS_POSITION: "The sale exceeds the shares held; mark it short.",
    RejectCode.THROTTLE_ORDER_RATE: "Too many orders in the last second.",
    RejectCode.PATTERN_PLACEMENT_BURST: "Orders are being placed unusually fast.",
    RejectCode.PATTERN_UNUSUAL_SIZE: "The quantity is far above what the account usually trades.",
    RejectCode.SHORT_CASH_ACCOUNT: "Short sales need a margin account.",
    RejectCode.SHORT_NO_LOCATE: "No locate covers this short sale (Reg SHO 203(b)(1)).",
    RejectCode.SHORT_PREBORROW_REQUIRED: "A threshold security: short sales need a pre-borrow.",
    RejectCode.SHORT_PENALTY_BOX: "Open fail (Reg SHO 204(b)): shorts need a pre-borrow.",
    RejectCode.PDT_DAY_TRADE_LIMIT: "This day trade would make a PDT under the minimum.",
    RejectCode.PDT_EQUITY_BELOW_MINIMUM: "A PDT under the minimum equity may only reduce.",
    RejectCode.STP_SELF_TRADE: "The order would trade against the account's own order.",
    RejectCode.RISK_BUYING_POWER: "Not enough buying power for this order.",
    RejectCode.RISK_POSITION_LIMIT: "The order would take the position above its limit.",
    RejectCode.RISK_GROSS_EXPOSURE: "The order would take gross exposure above its cap.",
    RejectCode.RISK_DAILY_LOSS_LIMIT: "The daily loss limit is reached: only reducing orders.",
}


class AccountType(StrEnum):
    CASH = "cash"
    MARGIN = "margin"


class AccountStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    CLOSING_ONLY = "closing_only"
    SUSPENDED = "suspended"
    CLOSED = "closed"


class TradingState(StrEnum):
    """Nautilus Trader's trading states: ACTIVE, REDUCING (only reducing orders), HALTED."""

    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """A new order (or the replacement in a cancel/replace) as the customer asked for it."""

    account_id: str
    symbol: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    quantity: int
    limit_price: Decimal | None
    client_order_id: str
    replaces_order_id: str | None = None

    def __post_init__(self) -> None:
        # The API validates requests first; these guards keep a malformed intent from
        # ever reaching a check, whoever builds it.
        if type(self.quantity) is not int or self.quantity <= 0:
            raise InvalidInput("quantity must be a positive whole number of shares")
        if self.order_type is OrderType.LIMIT:
            if self.limit_price is None or not self.limit_price.is_finite():
                raise InvalidInput("a limit order needs a finite limit price")
            if self.limit_price <= 0:
                raise InvalidInput("the limit price must be positive")
        elif self.limit_price is not None:
            raise InvalidInput("a market order has no limit price")


@dataclass(frozen=True, slots=True)
class InstrumentState:
    symbol: str
    tick_size: Decimal
    lot_size: int
    min_quantity: int
    max_quantity: int
    reference_price: Decimal | None
    band_tier: int  # LULD Plan tier: 1 (S&P 500, Russell 1000, some ETPs) or 2
    tradable: bool
    restricted: bool  # on the firm's restricted list
    threshold_security: bool  # on an SRO's Reg SHO threshold list
    easy_to_borrow: bool  # on the firm's easy-to-borrow list
    halted: bool


@dataclass(frozen=True, slots=True)
class MarketState:
    now_ns: int
    trading_date: date
    market_halted: bool
    session_open: bool
    enforce_session: bool  # False in an always-open demo market
    best_bid: Decimal | None
    best_ask: Decimal | None


@dataclass(frozen=True, slots=True)
class AccountState:
    account_id: str
    account_type: AccountType
    status: AccountStatus
    trading_state: TradingState
    cash_settled: Decimal
    cash_unsettled: Decimal
    cash_held: Decimal  # cash-equivalent reserved by open orders
    long_market_value: Decimal
    short_market_value: Decimal  # absolute value
    start_of_day_equity: Decimal

    @property
    def equity(self) -> Decimal:
        """Net liquidation value: cash plus long market value less short market value."""
        return (
            self.cash_settled
            + self.cash_unsettled
            + self.long_market_value
            - self.short_market_value
        )


@dataclass(frozen=True, slots=True)
class PositionState:
    """This account's position in this symbol."""

    quantity: int  # signed; negative is short
    held_for_sale: int  # shares reserved by open sell orders
    open_buy_quantity: int
    open_sell_quantity: int  # remaining quantity of open sell and sell-short orders
    opened_today_long: int  # shares bought today that still make up the long position
    opened_today_short: int  # shares sold short today that still make up the short position
    mark_price: Decimal | None

    @classmethod
    def flat(cls) -> PositionState:
        """No position and no open orders in the symbol."""
        return cls(0, 0, 0, 0, 0, 0, None)


@dataclass(frozen=True, slots=True)
class OwnOrders:
    """This account's resting orders: own best prices in this symbol, open notional overall."""

    best_bid: Decimal | None  # highest own resting buy price in this symbol
    best_ask: Decimal | None  # lowest own resting sell price in this symbol
    open_notional: Decimal  # remaining notional of all this account's open orders


@dataclass(frozen=True, slots=True)
class RecentOrder:
    """One of the account's recent order attempts, accepted or rejected, in any symbol."""

    symbol: str
    side: Side
    quantity: int
    limit_price: Decimal | None
    created_ns: int
    accepted: bool


@dataclass(frozen=True, slots=True)
class ShortSaleState:
    locate_available: int  # unexpired, unused locate quantity for this symbol
    preborrow_available: int  # shares borrowed in advance for this symbol
    penalty_box: bool  # Rule 204(b): an open fail past its close-out deadline in this symbol


@dataclass(frozen=True, slots=True)
class DayTradeState:
    """FINRA Rule 4210(f)(8)(B) counts over the rolling window of business days."""

    day_trades: int  # day trades in the window, not counting this order
    total_trades: int  # trades in the margin account in the same window
    pdt_flagged: bool  # already designated a pattern day trader


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """Per-account pre-trade limits (SEC Rule 15c3-5(c)(1): credit and capital thresholds)."""

    max_order_quantity: int
    max_order_notional: Decimal
    duplicate_window_ns: int
    max_orders_per_second: int
    burst_window_ns: int
    burst_max_orders: int
    unusual_size_multiple: Decimal
    unusual_size_min_history: int
    position_limit: int
    gross_exposure_cap: Decimal
    daily_loss_limit: Decimal
    initial_margin_rate: Decimal
    commission_per_share: Decimal
    pdt_day_trades: int
    pdt_window_days: int
    pdt_min_equity: Decimal
    pdt_min_share: Decimal
    stp_mode: StpMode

    def __post_init__(self) -> None:
        if not 0 < self.max_orders_per_second <= RECENT_ORDERS_MAX:
            raise InvalidInput(f"max_orders_per_second must be 1..{RECENT_ORDERS_MAX}")
        if not 0 < self.burst_max_orders <= RECENT_ORDERS_MAX:
            raise InvalidInput(f"burst_max_orders must be 1..{RECENT_ORDERS_MAX}")
        if not 0 < self.unusual_size_min_history <= RECENT_ORDERS_MAX:
            raise InvalidInput(f"unusual_size_min_history must be 1..{RECENT_ORDERS_MAX}")
        if not ZERO < self.initial_margin_rate <= 1:
            raise InvalidInput("initial_margin_rate must be in (0, 1]")
        positive = (
            self.max_order_quantity,
            self.max_order_notional,
            self.duplicate_window_ns,
            self.burst_window_ns,
            self.unusual_size_multiple,
            self.position_limit,
            self.gross_exposure_cap,
            self.daily_loss_limit,
            self.pdt_day_trades,
            self.pdt_window_days,
        )
        if any(value <= 0 for value in positive):
            raise InvalidInput("risk limits must be positive")
        if self.commission_per_share < 0 or self.pdt_min_equity < 0 or self.pdt_min_share < 0:
            raise InvalidInput("commission and PDT thresholds cannot be negative")

    @classmethod
    def defaults(cls) -> RiskLimits:
        """Conservative limits for a retail account; staff tighten or widen them per account."""
        return cls(
            # Erroneous-order (fat-finger) caps per order, Rule 15c3-5(c)(2)(i): 50,000
            # shares or $1,000,000, well above a retail ticket and far below a mistake.
            max_order_quantity=50_000,
            max_order_notional=Decimal(1_000_000),
            # The same order again within 5 s is almost always a double click or a retry
            # without an idempotency key.
            duplicate_window_ns=5 * NS_PER_SECOND,
            # 10 attempts per trailing second, 30 per 10 s: a person clicking cannot get
            # near either; a runaway script or a layering pattern reaches both.
            max_orders_per_second=10,
            burst_window_ns=10 * NS_PER_SECOND,
            burst_max_orders=30,
            # 20x the median of the last accepted orders, once there are 10 to compare.
            unusual_size_multiple=Decimal(20),
            unusual_size_min_history=10,
            # 100,000 shares per symbol and $5,000,000 gross: credit thresholds for a
            # retail account, Rule 15c3-5(c)(1)(i).
            position_limit=100_000,
            gross_exposure_cap=Decimal(5_000_000),
            # New risk stops for the day once equity has fallen $50,000 since the open.
            daily_loss_limit=Decimal(50_000),
            # Regulation T initial margin, 12 CFR 220.12(a) and (c): 50%.
            initial_margin_rate=Decimal("0.5"),
            # A per-share commission estimate reserved with the order; the real charge
            # is booked at execution.
            commission_per_share=Decimal("0.005"),
            # FINRA Rule 4210(f)(8)(B): four or more day trades in five business days,
            # more than 6% of the trades in the period, $25,000 minimum equity.
            pdt_day_trades=4,
            pdt_window_days=5,
            pdt_min_equity=Decimal(25_000),
            pdt_min_share=Decimal("0.06"),
            stp_mode=StpMode.CANCEL_NEWEST,
        )


@dataclass(frozen=True, slots=True)
class RiskSnapshot:
    """Everything the checks may read, built once per order inside its transaction."""

    account: AccountState
    instrument: InstrumentState | None  # None: the symbol is not a known instrument
    market: MarketState
    position: PositionState
    own_orders: OwnOrders
    recent: tuple[RecentOrder, ...]  # newest first, at most RECENT_ORDERS_MAX
    short_sale: ShortSaleState
    day_trades: DayTradeState
    limits: RiskLimits
    # Current gross exposure: sum of |position| x mark over all symbols plus the remaining
    # notional of all open orders.
    gross_exposure: Decimal


@dataclass(frozen=True, slots=True)
class Reject:
    """A check's denial: a stable code and a short human reason (no personal data)."""

    code: RejectCode
    detail: str


@dataclass(frozen=True, slots=True)
class RiskDecision:
    """The pipeline's answer, with what the order service must reserve when it is accepted."""

    accepted: bool
    code: RejectCode | None
    check: str | None  # name of the failing check
    detail: str | None
    reducing: bool
    # Cash to reserve: notional x (1 for cash accounts | initial margin rate for margin
    # accounts) + commission estimate; zero for reducing orders and long sales.
    hold_cash: Decimal
    hold_shares: int  # shares to reserve for a long sale
    locate_use: int  # locate or pre-borrow quantity a short sale consumes
    preborrow: bool  # locate_use is taken from pre-borrowed shares, not from locates
    day_trade: bool  # executing this order as placed would create a day trade
    notional: Decimal  # the notional estimate the checks used
    protective_price: Decimal | None  # the collar edge a market order must not trade through
