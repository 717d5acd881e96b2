"""The pre-trade pipeline (SEC Rule 15c3-5(c)): every check, in order, over one snapshot.

`evaluate` computes the per-order context once, runs `CHECKS` in order and stops at the
first denial. The order is deliberate:

1. Who may trade: account status and trading state (PRE-1). A closed, suspended or halted
   account is told so, whatever else is wrong with the order.
2. Whether anything trades: market-wide halt, the instrument exists, symbol halt, the
   session (PRE-4).
3. Throttles (PRE-3): before the order's own details, so a flood is named as a flood
   whatever its orders look like; every attempt counts, rejected ones too.
4. The instrument's state: tradable, restricted list (PRE-4), a reference price.
5. Order shape: tick, lot, minimum and maximum quantity (PRE-2): stateless arithmetic.
6. Erroneous-order controls (REG-1): price collar, single-order notional, duplicates.
7. Unusual size (PRE-3), then Reg SHO (REG-3): sale marking, cash-account shorts, the
   Rule 204 penalty box, threshold pre-borrow, locate.
8. Self-trade prevention (PRE-3) and pattern day trading (PRE-4).
9. Credit and capital thresholds (PRE-2, REG-1): position limit, gross exposure, daily loss,
   and buying power last: it is the one a customer can most directly act on (deposit, or
   cancel an open order), so it should be the answer only when nothing else is wrong.

Every check is cheap and allocation-free on the pass path; the whole pipeline is measured
by `bench/pretrade.py` (target: p99 <= 25 us per order).
"""

from __future__ import annotations

from tradeguard.core.orders import Side
from tradeguard.risk.checks import (
    Check,
    build_context,
    check_account_status,
    check_buying_power,
    check_daily_loss,
    check_duplicate,
    check_gross_exposure,
    check_instrument_known,
    check_instrument_tradable,
    check_market_halt,
    check_order_notional,
    check_order_rate,
    check_pattern_day_trader,
    check_placement_burst,
    check_position_limit,
    check_price_collar,
    check_price_tick,
    check_quantity_lot,
    check_quantity_max,
    check_quantity_min,
    check_reference_price,
    check_restricted_list,
    check_self_trade,
    check_sell_marking,
    check_session,
    check_short_account_type,
    check_short_locate,
    check_short_penalty_box,
    check_short_preborrow,
    check_symbol_halt,
    check_trading_state,
    check_unusual_size,
    uses_preborrow,
)
from tradeguard.risk.domain import ZERO, OrderIntent, RiskDecision, RiskSnapshot

CHECKS: tuple[Check, ...] = (
    check_account_status,
    check_trading_state,
    check_market_halt,
    check_instrument_known,
    check_symbol_halt,
    check_session,
    check_order_rate,
    check_placement_burst,
    check_instrument_tradable,
    check_restricted_list,
    check_reference_price,
    check_price_tick,
    check_quantity_lot,
    check_quantity_min,
    check_quantity_max,
    check_price_collar,
    check_order_notional,
    check_duplicate,
    check_unusual_size,
    check_sell_marking,
    check_short_account_type,
    check_short_penalty_box,
    check_short_preborrow,
    check_short_locate,
    check_self_trade,
    check_pattern_day_trader,
    check_position_limit,
    check_gross_exposure,
    check_daily_loss,
    check_buying_power,
)

# The check's name in a decision is its function name without the prefix:
# check_price_collar -> "price_collar".
_NAMED_CHECKS = tuple((check.__name__.removeprefix("check_"), check) for check in CHECKS)


def evaluate(intent: OrderIntent, snapshot: RiskSnapshot) -> RiskDecision:
    """Run every pre-trade check on the order; the first denial decides."""
    ctx = build_context(intent, snapshot)
    for name, check in _NAMED_CHECKS:
        reject = check(intent, snapshot, ctx)
        if reject is not None:
            return RiskDecision(
                accepted=False,
                code=reject.code,
                check=name,
                detail=reject.detail,
                reducing=ctx.reducing,
                hold_cash=ZERO,
                hold_shares=0,
                locate_use=0,
                preborrow=False,
                day_trade=ctx.day_trade,
                notional=ctx.notional,
                protective_price=ctx.protective_price,
            )
    locate_use = 0
    preborrow = False
    instrument = snapshot.instrument
    if intent.side is Side.SELL_SHORT and instrument is not None:
        preborrow = uses_preborrow(instrument, snapshot)
        if preborrow or not instrument.easy_to_borrow:
            locate_use = intent.quantity
    return RiskDecision(
        accepted=True,
        code=None,
        check=None,
        detail=None,
        reducing=ctx.reducing,
        hold_cash=ctx.hold_cash,
        hold_shares=intent.quantity if intent.side is Side.SELL else 0,
        locate_use=locate_use,
        preborrow=preborrow,
        day_trade=ctx.day_trade,
        notional=ctx.notional,
        protective_price=ctx.protective_price,
    )
