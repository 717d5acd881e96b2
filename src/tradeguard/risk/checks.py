"""Pre-trade checks (SEC Rule 15c3-5(c)): one pure function per control.

Each check is `(intent, snapshot, ctx) -> Reject | None` and reads nothing else: no clock,
no database. `CheckContext` holds what several checks need and the pipeline computes once
per order: whether the order reduces a position, the notional estimate, the price collar
and a market order's protective price, the cash to hold, whether it is a day trade.

Every check is safe on its own: one that needs the instrument denies with
INSTRUMENT_UNKNOWN when the snapshot has none, rather than assuming an earlier check ran.

A reducing order is one that can only shrink a position: a sale of at most the long shares
not already reserved by open sales, or a purchase of at most the short shares not already
being covered by open purchases. A sale marked short never reduces. Reducing orders skip
the checks that guard against new risk (notional, position limit, gross exposure, daily
loss, buying power) and pass a restricted list, a REDUCING trading state and a
closing-only account, so a customer can always get out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.core.orders import OrderType, Side, StpMode, TimeInForce
from tradeguard.risk.bands import price_collar
from tradeguard.risk.buying_power import available_funds, required_hold
from tradeguard.risk.domain import (
    ZERO,
    AccountStatus,
    AccountType,
    InstrumentState,
    OrderIntent,
    PositionState,
    Reject,
    RejectCode,
    RiskSnapshot,
    TradingState,
)
from tradeguard.risk.pdt import is_pattern_day_trader, would_day_trade


@dataclass(frozen=True, slots=True)
class CheckContext:
    """Values computed once per order and shared by the checks."""

    reducing: bool
    notional: Decimal  # quantity x the price below (zero when no price is known)
    notional_price: Decimal | None
    protective_price: Decimal | None  # a market order's collar edge: it must not trade through
    collar: tuple[Decimal, Decimal] | None
    hold_cash: Decimal
    day_trade: bool


Check = Callable[[OrderIntent, RiskSnapshot, CheckContext], Reject | None]

_UNKNOWN = Reject(RejectCode.INSTRUMENT_UNKNOWN, "no such instrument")


def is_reducing(intent: OrderIntent, position: PositionState) -> bool:
    """Whether the order can only shrink the position (see the module docstring)."""
    if intent.side is Side.SELL:
        return intent.quantity <= position.quantity - position.held_for_sale
    if intent.side is Side.BUY:
        return (
            position.quantity < 0
            and intent.quantity <= -position.quantity - position.open_buy_quantity
        )
    return False


def build_context(intent: OrderIntent, snapshot: RiskSnapshot) -> CheckContext:
    """Compute the per-order values once, before any check runs."""
    reducing = is_reducing(intent, snapshot.position)
    instrument = _instrument(intent, snapshot)
    collar = None
    protective = None
    price = intent.limit_price
    reference = instrument.reference_price if instrument is not None else None
    if instrument is not None and reference is not None:
        collar = price_collar(reference, instrument.band_tier, instrument.tick_size)
        if intent.order_type is OrderType.MARKET:
            # A market order is sent with the collar edge as its limit, so it can never
            # execute outside the band: the most a buy can pay, the least a sale can get.
            protective = collar[1] if intent.side is Side.BUY else collar[0]
            price = protective
        if price is not None and intent.side is not Side.BUY:
            # A sale executes at or above its limit, and about at the market; estimating
            # it at its limit alone would understate a short sale's exposure.
            price = max(price, reference)
    notional = intent.quantity * price if price is not None else ZERO
    if reducing or intent.side is Side.SELL:
        hold = ZERO
    else:
        hold = required_hold(
            notional, intent.quantity, snapshot.account.account_type, snapshot.limits
        )
    return CheckContext(
        reducing=reducing,
        notional=notional,
        notional_price=price,
        protective_price=protective,
        collar=collar,
        hold_cash=hold,
        day_trade=would_day_trade(intent.side, snapshot.position),
    )


def _instrument(intent: OrderIntent, snapshot: RiskSnapshot) -> InstrumentState | None:
    instrument = snapshot.instrument
    if instrument is None or instrument.symbol != intent.symbol:
        return None
    return instrument


# -- account and trading state (PRE-1) ---------------------------------------------------


def check_account_status(
    intent: OrderIntent, snapshot: RiskSnapshot, ctx: CheckContext
) -> Reject | None:
    """Only an ACTIVE account trades; a CLOSING_ONLY account may still reduce."""
    status = snapshot.account.status
    if status is AccountStatus.ACTIVE:
        return None
    if status is AccountStatus.CLOSING_ONLY:
        if ctx.reducing:
            return None
        return Reject(RejectCode.ACCOUNT_CLOSING_ONLY, "the account accepts closing orders only")
    return Reject(RejectCode.ACCOUNT_NOT_ACTIVE, f"the account is {status.value}")


def check_trading_state(
    intent: OrderIntent, snapshot: RiskSnapshot, ctx: CheckContext
) -> Reject | None:
    """HALTED denies every new order; REDUCING admits reducing orders only (Nautilus states)."""
    state = snapshot.account.trading_state
    if state is TradingState.HALTED:
        return Reject(RejectCode.ACCOUNT_HALTED, "trading state is HALTED")
    if state is TradingState.REDUCING and not ctx.reducing:
        return Reject(
            RejectCode.ACCOUNT_REDUCING_ONLY,
            "trading state is REDUCING and the order would not reduce the position",
        )
    return None


# -- halts and the session (PRE-4) -------------------------------------------------------


def check_market_halt(
    intent: OrderIntent, snapshot: RiskSnapshot, ctx: CheckContext
) -> Reject | None:
    """A market-wide halt stops every new order."""
    if snapshot.market.market_halted:
        return Reject(RejectCode.MARKET_HALTED, "trading is halted market-wide")
    return None


def check_instrument_known(
    intent: OrderIntent, snapshot: RiskSnapshot, ctx: CheckContext
) -> Reject | None:
    """The symbol must be a known instrument (and the snapshot must be for it)."""
    if _instrument(intent, snapshot) is None:
        return _UNKNOWN
    return None


def check_symbol_halt(
    intent: OrderIntent, snapshot: RiskSnapshot, ctx: CheckContext
) -> Reject | None:
    """A halt in the symbol (regulatory, LULD pause, news) stops new orders in it."""
    instrument = _instrument(intent, snapshot)
    if instrument is None:
        return _UNKNOWN
    if instrument.halted:
        return Reject(RejectCode.SYMBOL_HALTED, f"trading in {instrument.symbol} is halted")
    return None


def check_session(intent: OrderIntent, snapshot: RiskSnapshot, ctx: CheckContext) -> Reject | None:
    """Outside the regular session, market and IOC orders have nothing to execute against.

    DAY and GTC limit orders are accepted to rest: the venue queues them for the next open,
    as brokers do for orders entered overnight.
    """
    market = snapshot.market
    if not market.enforce_session or market.session_open:
        return None
    if intent.order_type is OrderType.MARKET or intent.time_in_force is TimeInForce.IOC:
        return Reject(
            RejectCode.MARKET_CLOSED, "the session is closed: only resting limit orders pass"
        )
    return None


# -- throttles (PRE-3 rapid placement) ---------------------------------------------------


def check_order_rate(
    intent: OrderIntent, snapshot: RiskSnapshot, ctx: CheckContext
) -> Reject | None:
    """At most max_orders_per_second attempts, accepted or not, in the trailing second."""
    limit = snapshot.limits.max_orders_per_second
    if _attempts_within(snapshot, NS_PER_SECOND, limit) >= limit:
        return Reject(RejectCode.THROTTLE_ORDER_RATE, f"more than {limit} orders in one second")
    return None


def check_placement_burst(
    intent: OrderIntent, snapshot: RiskSnapshot, ctx: CheckContext
) -> Reject | None:
    """At most burst_max_orders attempts within the burst window."""
    limits = snapshot.limits
    if _attempts_within(snapshot, limits.burst_window_ns, limits.burst_max_orders) >= (
        limits.burst_max_orders
    ):
        return Reject(
            RejectCode.PATTERN_PLACEMENT_BURST,
            f"{limits.burst_max_orders} orders within {limits.burst_window_ns // 10**6} ms",
        )
    return None


def _attempts_within(snapshot: RiskSnapshot, window_ns: int, stop_at: int) -> int:
    # `recent` is newest first: stop at the first attempt older than the window, or once
    # the limit is reached (the answer cannot change after that).
    cutoff = snapshot.market.now_ns - window_ns
    count = 0
    for order in snapshot.recent:
        if order.created_ns <= cutoff or count >= stop_at:
            break
        count += 1
    return count


# -- instrument (PRE-4 restricted securities) --------------------------------------------


def check_instrument_tradable(
    intent: OrderIntent, snapshot: RiskSnapshot, ctx: CheckContext
) -> Reject | None:
    """Instruments not (or no longer) open for trading take no orders."""
    instrument = _instrument(intent, snapshot)
    if instrument is None:
        return _UNKNOWN
    if not instrument.tradable:
        return Reject(RejectCode.INSTRUMENT_NOT_TRADABLE, f"{instrument.symbol} is not tradable")
    return None


def check_restricted_list(
    intent: OrderIntent, snapshot: RiskSnapshot, ctx: CheckContext
) -> Reject | None:
    """The firm's restricted list blocks new positions but lets customers close existing ones.

    A restricted list stops the firm from soliciting or building positions in a security
    (pending news, an underwriting, a conflict); trapping a customer in a position would not
    serve that purpose, so closing orders pass. A security the customer may not hold at all
    (sanctions) is not tradable instead.
    """
    instrument = _instrument(intent, snapshot)
    if instrument is None:
        return _UNKNOWN
    if instrument.restricted and not ctx.reducing:
        return Reject(
            RejectCode.INSTRUMENT_RESTRICTED,
            f"{instrument.symbol} is restricted: only closing orders are accepted",
        )
    return None


def check_reference_price(
    intent: OrderIntent, snapshot: RiskSnapshot, ctx: CheckContext
) -> Reject | None:
    """Without a reference price neither the collar nor the notional can be checked."""
    instrument = _instrument(intent, snapshot)
    if instrument is None:
        return _UNKNOWN
    if instrument.reference_price is None:
        return Reject(
            RejectCode.INSTRUMENT_NO_REFERENCE_PRICE,
            f"no reference price for {instrument.symbol}",
        )
    return None


# -- order shape (PRE-2 order size limits) -----------------------------------------------


def check_price_tick(
    intent: OrderIntent, snapshot: RiskSnapshot, ctx: CheckContext
) -> Reject | None:
    """A limit price must sit on the instrument's tick grid."""
    instrument = _instrument(intent, snapshot)
    if instrument is None:
        return _UNKNOWN
    price = intent.limit_price
    if price is not None and price % instrument.tick_size != 0:
        return Reject(
            RejectCode.ORDER_PRICE_OFF_TICK,
            f"limit price {price} is not a multiple of the tick {instrument.tick_size}",
        )
    return None


def check_quantity_lot(
    intent: OrderIntent, snapshot: RiskSnapshot, ctx: CheckContext
) -> Reject | None:
    """The quantity must be a whole number of lots."""
    instrument = _instrument(intent, snapshot)
    if instrument is None:
        return _UNKNOWN
    if intent.quantity % instrument.lot_size != 0:
        return Reject(
            RejectCode.ORDER_QUANTITY_OFF_LOT,
            f"quantity {intent.quantity} is not a multiple of the lot {instrument.lot_size}",
        )
    return None


def check_quantity_min(
    intent: OrderIntent, snapshot: RiskSnapshot, ctx: CheckContext
) -> Reject | None:
    """The quantity must reach the instrument's minimum."""
    instrument = _instrument(intent, snapshot)
    if instrument is None:
        return _UNKNOWN
    if intent.quantity < instrument.min_quantity:
        return Reject(
            RejectCode.ORDER_QUANTITY_BELOW_MIN,
            f"quantity {intent.quantity} is below the minimum {instrument.min_quantity}",
        )
    return None


def check_quantity_max(
    intent: OrderIntent, snapshot: RiskSnapshot, ctx: CheckContext
) -> Reject | None:
    """The quantity may not exceed the instrument's maximum nor the account's (REG-1)."""
    instrument = _instrument(intent, snapshot)
    if instrument is None:
        return _UNKNOWN
    maximum = min(instrument.max_quantity, snapshot.limits.max_order_quantity)
    if intent.quantity > maximum:
        return Reject(
            RejectCode.ORDER_QUANTITY_ABOVE_MAX,
            f"quantity {intent.quantity} is above the maximum {maximum}",
        )
    return None


# -- erroneous orders (REG-1, Rule 15c3-5(c)(1)(ii)) -------------------------------------


def check_price_collar(
    intent: OrderIntent, snapshot: RiskSnapshot, ctx: CheckContext
) -> Reject | None:
    """A limit price must lie inside the LULD-style collar around the reference price."""
    price = intent.limit_price
    if price is None:
        return None  # a market order is sent with the collar edge as its protective limit
    if ctx.collar is None:
        return Reject(
            RejectCode.INSTRUMENT_NO_REFERENCE_PRICE, "no price collar without a reference"
        )
    lower, upper = ctx.collar
    if price < lower or price > upper:
        return Reject(
            RejectCode.ORDER_PRICE_OUTSIDE_COLLAR,
            f"limit price {price} is outside the collar {lower}-{upper}",
        )
    return None


def check_order_notional(
    intent: OrderIntent, snapshot: RiskSnapshot, ctx: CheckContext
) -> Reject | None:
    """An opening order's value may not exceed the single-order maximum."""
    maximum = snapshot.limits.max_order_notional
    if not ctx.reducing and ctx.notional > maximum:
        return Reject(
            RejectCode.ORDER_NOTIONAL_ABOVE_MAX,
            f"order value {ctx.notional:.2f} is above the maximum {maximum}",
        )
    return None


def check_duplicate(
    intent: OrderIntent, snapshot: RiskSnapshot, ctx: CheckContext
) -> Reject | None:
    """The same order (symbol, side, quantity, limit) accepted within the window is a repeat."""
    cutoff = snapshot.market.now_ns - snapshot.limits.duplicate_window_ns
    for order in snapshot.recent:
        if order.created_ns <= cutoff:
            break
        if (
            order.accepted
            and order.quantity == intent.quantity
            and order.side is intent.side
            and order.limit_price == intent.limit_price
            and order.symbol == intent.symbol
        ):
            return Reject(
                RejectCode.ORDER_DUPLICATE,
                "an identical order was accepted moments ago; resend with a new quantity or price",
            )
    return None


# -- unusual patterns (PRE-3) ------------------------------------------------------------


def check_unusual_size(
    intent: OrderIntent, snapshot: RiskSnapshot, ctx: CheckContext
) -> Reject | None:
    """A quantity far above the median of the account's accepted orders is a fraud signal.

    It applies to closing orders too: an account takeover often starts by selling the
    victim's holdings.
    """
    limits = snapshot.limits
    quantities = sorted(order.quantity for order in snapshot.recent if order.accepted)
    count = len(quantities)
    if count < limits.unusual_size_min_history:
        return None
    middle = count // 2
    if count % 2:
        median = Decimal(quantities[middle])
    else:
        median = Decimal(quantities[middle - 1] + quantities[middle]) / 2
    if intent.quantity > limits.unusual_size_multiple * median:
        return Reject(
            RejectCode.PATTERN_UNUSUAL_SIZE,
            f"quantity {intent.quantity} is over {limits.unusual_size_multiple}x "
            f"the account's median order of {median}",
        )
    return None


# -- short sales (REG-3, Reg SHO) --------------------------------------------------------


def check_sell_marking(
    intent: OrderIntent, snapshot: RiskSnapshot, ctx: CheckContext
) -> Reject | None:
    """Rule 200(g): a sale marked long needs the shares, net of those other sales reserve."""
    if intent.side is not Side.SELL:
        return None
    position = snapshot.position
    available = max(position.quantity - position.held_for_sale, 0)
    if intent.quantity > available:
        return Reject(
            RejectCode.ORDER_SELL_EXCEEDS_POSITION,
            f"selling {intent.quantity} with {available} available: mark the order sell short",
        )
    return None


def check_short_account_type(
    intent: OrderIntent, snapshot: RiskSnapshot, ctx: CheckContext
) -> Reject | None:
    """Short sales are credit: Reg T allows them in margin accounts only (220.8(a))."""
    if intent.side is Side.SELL_SHORT and snapshot.account.account_type is AccountType.CASH:
        return Reject(RejectCode.SHORT_CASH_ACCOUNT, "short sales need a margin account")
    return None


def check_short_penalty_box(
    intent: OrderIntent, snapshot: RiskSnapshot, ctx: CheckContext
) -> Reject | None:
    """Rule 204(b): while a fail is not closed out, a short sale needs a pre-borrow."""
    short_sale = snapshot.short_sale
    if (
        intent.side is Side.SELL_SHORT
        and short_sale.penalty_box
        and intent.quantity > short_sale.preborrow_available
    ):
        return Reject(
            RejectCode.SHORT_PENALTY_BOX,
            f"a Rule 204 fail is open: {short_sale.preborrow_available} shares pre-borrowed",
        )
    return None


def check_short_preborrow(
    intent: OrderIntent, snapshot: RiskSnapshot, ctx: CheckContext
) -> Reject | None:
    """Firm policy: short sales in a threshold security need the shares borrowed first.

    Threshold securities (Rule 203(c)(6)) have persistent fails; borrowing in advance keeps
    the firm from adding to them and from the Rule 203(b)(3) close-out.
    """
    instrument = _instrument(intent, snapshot)
    if instrument is None:
        return _UNKNOWN
    available = snapshot.short_sale.preborrow_available
    if (
        intent.side is Side.SELL_SHORT
        and instrument.threshold_security
        and intent.quantity > available
    ):
        return Reject(
            RejectCode.SHORT_PREBORROW_REQUIRED,
            f"{instrument.symbol} is a threshold security: {available} shares pre-borrowed",
        )
    return None


def check_short_locate(
    intent: OrderIntent, snapshot: RiskSnapshot, ctx: CheckContext
) -> Reject | None:
    """Rule 203(b)(1): a short sale needs a locate, unless the security is easy to borrow.

    An easy-to-borrow list gives the "reasonable grounds to believe" the security can be
    borrowed that the rule asks for, so no individual locate is consumed.
    """
    instrument = _instrument(intent, snapshot)
    if instrument is None:
        return _UNKNOWN
    if intent.side is not Side.SELL_SHORT or uses_preborrow(instrument, snapshot):
        return None
    available = snapshot.short_sale.locate_available
    if not instrument.easy_to_borrow and intent.quantity > available:
        return Reject(
            RejectCode.SHORT_NO_LOCATE,
            f"short {intent.quantity} with a locate for {available}",
        )
    return None


def uses_preborrow(instrument: InstrumentState, snapshot: RiskSnapshot) -> bool:
    """Whether a short sale here draws on pre-borrowed shares rather than on locates."""
    return instrument.threshold_security or snapshot.short_sale.penalty_box


# -- self-trade (PRE-3) ------------------------------------------------------------------


def check_self_trade(
    intent: OrderIntent, snapshot: RiskSnapshot, ctx: CheckContext
) -> Reject | None:
    """With cancel-newest STP, an order that would cross the account's own order is refused.

    A trade between two orders of the same account changes no ownership: it is a wash
    trade. The other modes (cancel oldest, cancel both, decrement) act on the resting order
    too, so the venue applies them at match time.
    """
    if snapshot.limits.stp_mode is not StpMode.CANCEL_NEWEST:
        return None
    own = snapshot.own_orders
    price = intent.limit_price
    if intent.side is Side.BUY:
        crosses = own.best_ask is not None and (price is None or price >= own.best_ask)
    else:
        crosses = own.best_bid is not None and (price is None or price <= own.best_bid)
    if crosses:
        return Reject(
            RejectCode.STP_SELF_TRADE, "the order would trade against the account's own order"
        )
    return None


# -- pattern day trading (PRE-4, FINRA Rule 4210(f)(8)(B)) -------------------------------


def check_pattern_day_trader(
    intent: OrderIntent, snapshot: RiskSnapshot, ctx: CheckContext
) -> Reject | None:
    """Margin accounts under the PDT minimum equity: no becoming, or acting as, a PDT.

    A pattern day trader must have the minimum equity in the account "prior to any
    day-trading activities", 4210(f)(8)(B)(iv)(a): under it, a flagged account may only
    reduce positions, and not by a day trade. An unflagged account may not make the day
    trade that would make it a pattern day trader.
    """
    account = snapshot.account
    limits = snapshot.limits
    if account.account_type is not AccountType.MARGIN or account.equity >= limits.pdt_min_equity:
        return None
    counts = snapshot.day_trades
    flagged = counts.pdt_flagged or is_pattern_day_trader(
        counts.day_trades, counts.total_trades, limits
    )
    if flagged and (ctx.day_trade or not ctx.reducing):
        return Reject(
            RejectCode.PDT_EQUITY_BELOW_MINIMUM,
            f"pattern day trader with equity below {limits.pdt_min_equity}: "
            "only closing orders that are not day trades",
        )
    if ctx.day_trade and is_pattern_day_trader(
        counts.day_trades + 1, counts.total_trades + 1, limits
    ):
        return Reject(
            RejectCode.PDT_DAY_TRADE_LIMIT,
            f"this would be day trade {counts.day_trades + 1} in {limits.pdt_window_days} "
            f"business days with equity below {limits.pdt_min_equity}",
        )
    return None


# -- credit and capital thresholds (PRE-2, REG-1 Rule 15c3-5(c)(1)(i)) -------------------


def check_position_limit(
    intent: OrderIntent, snapshot: RiskSnapshot, ctx: CheckContext
) -> Reject | None:
    """The position, with open orders the same way and this order, stays within the limit."""
    if ctx.reducing:
        return None
    position = snapshot.position
    if intent.side is Side.BUY:
        projected = position.quantity + position.open_buy_quantity + intent.quantity
    else:
        projected = position.open_sell_quantity + intent.quantity - position.quantity
    limit = snapshot.limits.position_limit
    if projected > limit:
        return Reject(
            RejectCode.RISK_POSITION_LIMIT,
            f"the position would reach {projected} shares; the limit is {limit}",
        )
    return None


def check_gross_exposure(
    intent: OrderIntent, snapshot: RiskSnapshot, ctx: CheckContext
) -> Reject | None:
    """Current gross exposure plus this order's notional stays within the cap."""
    cap = snapshot.limits.gross_exposure_cap
    if not ctx.reducing and snapshot.gross_exposure + ctx.notional > cap:
        return Reject(
            RejectCode.RISK_GROSS_EXPOSURE, f"gross exposure would exceed the cap of {cap}"
        )
    return None


def check_daily_loss(
    intent: OrderIntent, snapshot: RiskSnapshot, ctx: CheckContext
) -> Reject | None:
    """Once equity has fallen by the daily loss limit since the open, no new risk today."""
    account = snapshot.account
    limit = snapshot.limits.daily_loss_limit
    if not ctx.reducing and account.start_of_day_equity - account.equity >= limit:
        return Reject(RejectCode.RISK_DAILY_LOSS_LIMIT, f"today's loss has reached {limit}")
    return None


def check_buying_power(
    intent: OrderIntent, snapshot: RiskSnapshot, ctx: CheckContext
) -> Reject | None:
    """The order's hold (cash or initial margin, plus commission) must fit the funds left."""
    if ctx.reducing:
        return None
    available = available_funds(snapshot.account, snapshot.limits)
    if ctx.hold_cash > available:
        return Reject(
            RejectCode.RISK_BUYING_POWER,
            f"the order needs {ctx.hold_cash:.2f}; {max(available, ZERO):.2f} is available",
        )
    return None
