"""Buying power under Regulation T (12 CFR 220): what an opening order must reserve.

Cash account (12 CFR 220.8): a purchase is paid in full, so the funds available are the
cash on hand, settled and unsettled, less what open orders already reserve. Unsettled sale
proceeds may pay for a purchase; Reg T's free-riding restriction (a security bought with
unsettled funds must not be sold before those funds settle, 220.8(c)) is not modelled here.

Margin account (12 CFR 220.4 and the initial margin of 220.12: 50%): the funds available
are the equity above the initial-margin requirement of the positions already held (long and
short market value), less what open orders reserve. An opening order reserves its initial
margin: notional x rate. A short sale's proceeds stay in the account, so it reserves the
same 50% on top (the 150% of 220.12(c) less the 100% the proceeds cover).

Every opening order also reserves a commission estimate. Reducing orders reserve nothing:
they release margin rather than use it, and a long sale's commission comes out of its
proceeds.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

from tradeguard.risk.domain import ZERO, AccountState, AccountType, RiskLimits

# Enum members bound to module names for the hot path: in Python 3.11 reading a member such
# as `Side.BUY` is a descriptor lookup on the enum class (about 0.1 us), per read.
_CASH = AccountType.CASH

_ONE = Decimal(1)
_CENT = Decimal("0.01")
_MICRO = Decimal("0.000001")


def available_funds(account: AccountState, limits: RiskLimits) -> Decimal:
    """Cash-equivalent an opening order may still reserve (may be negative)."""
    if account.account_type is _CASH:
        return account.cash_settled + account.cash_unsettled - account.cash_held
    requirement = limits.initial_margin_rate * (
        account.long_market_value + account.short_market_value
    )
    return account.equity - requirement - account.cash_held


def required_hold(
    notional: Decimal, quantity: int, account_type: AccountType, limits: RiskLimits
) -> Decimal:
    """What an opening order reserves: its cash or initial-margin cost plus commission."""
    rate = _ONE if account_type is _CASH else limits.initial_margin_rate
    commission = (limits.commission_per_share * quantity).quantize(_CENT, rounding=ROUND_CEILING)
    # Reserved money is kept to the millionth (the journal's grain), rounded up: a hold is
    # never less than what the order may need.
    return (notional * rate + commission).quantize(_MICRO, rounding=ROUND_CEILING)


def buying_power(account: AccountState, limits: RiskLimits) -> Decimal:
    """For display: the notional value of stock the account could buy now (never negative)."""
    funds = available_funds(account, limits)
    if funds <= 0:
        return ZERO
    if account.account_type is _CASH:
        return funds
    return funds / limits.initial_margin_rate
