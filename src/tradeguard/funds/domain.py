"""Money movement rules (pure): bank details, rails, statuses, withdrawal limits and their
windows (WDL-1, WDL-2), cooling periods (WDL-4, ATO-1), and what may leave an account.

The windows are defined in the firm's time zone (`funds_timezone`, America/New_York by
default), and documented in docs/funds.md:

- **day** (WDL-1): the calendar day in the firm's time zone, from local midnight to the
  next local midnight. On the days clocks change that day lasts 23 or 25 hours; a
  withdrawal belongs to the local day it was requested in.
- **week** (WDL-2): a rolling 7 x 24 hours ending at the request (not a calendar week, so
  there is no Monday reset to exploit by withdrawing on Sunday and again on Monday).

Both count every withdrawal that has not been given back (awaiting verification, in
review, approved, sent, completed), so two parallel requests cannot both fit under a limit
that only one of them fits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo

from tradeguard.core.clock import NS_PER_SECOND

ZERO = Decimal(0)
CENT = Decimal("0.01")
DAY_NS = 86_400 * NS_PER_SECOND
WEEK_NS = 7 * DAY_NS


class FundsError(ValueError):
    """Input a customer or operator can correct; the message says how (never a secret)."""


class Rail(StrEnum):
    ACH = "ach"
    WIRE = "wire"
    CARD = "card"


class BankAccountType(StrEnum):
    CHECKING = "checking"
    SAVINGS = "savings"


class BankAccountStatus(StrEnum):
    # Micro-deposits sent; the owner has not yet proved the amounts.
    PENDING = "pending_verification"
    VERIFIED = "verified"
    # Too many wrong amounts: the owner adds the account again (new micro-deposits).
    FAILED = "verification_failed"
    REMOVED = "removed"
    # Its bank sent a transfer back as closed, unknown or not authorized: never used again.
    BLOCKED = "blocked"


class DepositStatus(StrEnum):
    PENDING = "pending"  # credited for trading, not yet collected: not withdrawable
    SETTLED = "settled"
    RETURNED = "returned"  # the bank sent it back (an ACH return): the credit is reversed
    FAILED = "failed"  # refused before any credit (card declined)


class WithdrawalStatus(StrEnum):
    AWAITING_VERIFICATION = "awaiting_verification"  # email and SMS codes sent
    IN_REVIEW = "in_review"  # large or flagged: two staff members must approve (four-eyes)
    SENT = "sent"  # submitted to the processor
    COMPLETED = "completed"
    REFUSED = "refused"  # by the customer's "this was not me" link, or by staff
    EXPIRED = "expired"  # codes not confirmed in time
    CANCELLED = "cancelled"  # by the customer before it was sent
    FAILED = "failed"  # the processor returned it

    @property
    def counts_against_limits(self) -> bool:
        """Money that left, or may still leave: everything not given back."""
        return self in COUNTED_STATUSES

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


COUNTED_STATUSES = frozenset(
    {
        WithdrawalStatus.AWAITING_VERIFICATION,
        WithdrawalStatus.IN_REVIEW,
        WithdrawalStatus.SENT,
        WithdrawalStatus.COMPLETED,
    }
)
FINAL_STATUSES = frozenset(
    {
        WithdrawalStatus.COMPLETED,
        WithdrawalStatus.REFUSED,
        WithdrawalStatus.EXPIRED,
        WithdrawalStatus.CANCELLED,
        WithdrawalStatus.FAILED,
    }
)


class Refusal(StrEnum):
    """Why a withdrawal request is refused: stable codes, one per rule."""

    DAILY_LIMIT = "DAILY_LIMIT"  # WDL-1
    WEEKLY_LIMIT = "WEEKLY_LIMIT"  # WDL-2
    NEW_ACCOUNT = "NEW_ACCOUNT_COOLING"  # WDL-4
    SECURITY_CHANGE = "SECURITY_CHANGE_COOLING"  # ATO-1
    NEW_DESTINATION = "NEW_DESTINATION_HOLD"
    INSUFFICIENT_FUNDS = "INSUFFICIENT_WITHDRAWABLE_CASH"
    DESTINATION_NOT_VERIFIED = "DESTINATION_NOT_VERIFIED"
    ACCOUNT_NOT_ACTIVE = "ACCOUNT_NOT_ACTIVE"
    FROZEN = "WITHDRAWALS_FROZEN"  # ATO-2: "this was not me", or staff
    NO_SMS_FACTOR = "NO_SMS_FACTOR"  # ACCT-2 needs a phone to text a code to
    DEBIT_BALANCE = "DEBIT_BALANCE"  # an account of the customer owes money (an ACH return)
    # The bank account's holder matched the sanctions list: held until a reviewer clears it,
    # or blocked (KYC-2).
    PAYEE_SCREENING = "PAYEE_SANCTIONS_SCREENING"


# ABA routing numbers -----------------------------------------------------------------------------

_ABA_WEIGHTS = (3, 7, 1, 3, 7, 1, 3, 7, 1)


def valid_routing_number(routing: str) -> bool:
    """An ABA routing transit number: 9 digits whose weighted sum (3, 7, 1, ...) is a
    multiple of 10, and whose first two digits are a Federal Reserve routing symbol
    (00-12, 21-32; 61-72 for thrifts; 80 for traveller's cheques)."""
    if len(routing) != 9 or not routing.isascii() or not routing.isdigit():
        return False
    if routing == "000000000":  # passes the checksum, names no bank
        return False
    prefix = int(routing[:2])
    if not (prefix <= 12 or 21 <= prefix <= 32 or 61 <= prefix <= 72 or prefix == 80):
        return False
    total = sum(int(digit) * weight for digit, weight in zip(routing, _ABA_WEIGHTS, strict=True))
    return total % 10 == 0


def normalized_account_number(value: str) -> str:
    """A US bank account number: 4 to 17 digits (NACHA's DFI account number field), with
    spaces and dashes as people type them dropped. Raises FundsError otherwise."""
    digits = value.replace(" ", "").replace("-", "")
    if not (4 <= len(digits) <= 17 and digits.isascii() and digits.isdigit()):
        raise FundsError("account_number must be 4 to 17 digits")
    return digits


def indexed_account_number(number: str) -> str:
    """The account number as its blind index sees it: leading zeros dropped, so that
    `0123456789` and `123456789` at one routing number are one account (banks pad account
    numbers with zeros as they like). What is sealed and sent to the processor stays as the
    customer typed it."""
    return number.lstrip("0") or "0"


def padded_forms(number: str) -> tuple[str, ...]:
    """Every way `number` could have been typed with leading zeros (4 to 17 digits): the
    inputs of indexes stored before leading zeros were dropped."""
    core = indexed_account_number(number)
    shortest = max(len(core), 4)
    return tuple(core.rjust(n, "0") for n in range(shortest, 18))


def parse_amount(value: Decimal, *, minimum: Decimal, maximum: Decimal) -> Decimal:
    """A positive USD amount in whole cents within [minimum, maximum]."""
    if not value.is_finite() or value != value.quantize(CENT):
        raise FundsError("amount must be in dollars with at most 2 decimal places")
    if value < minimum or value > maximum:
        raise FundsError(f"amount must be between {minimum} and {maximum}")
    return value


# ACH returns (NACHA Operating Rules, Appendix Four) ---------------------------------------------

ACH_RETURN_CODES: dict[str, str] = {
    "R01": "insufficient funds",
    "R02": "account closed",
    "R03": "no account / unable to locate account",
    "R04": "invalid account number",
    "R08": "payment stopped",
    "R10": "customer advises not authorized",
    "R16": "account frozen",
    "R20": "non-transaction account",
    "R29": "corporate customer advises not authorized",
    # Not NACHA's: a card charge the cardholder disputed as fraud (a chargeback, Visa's
    # reason category 10), in the same four characters.
    "CB10": "cardholder disputes the charge as fraud (chargeback)",
}
# Unauthorized returns: the owner of the bank account says they never allowed the debit, a
# takeover signal (the account at the firm may not belong to the bank account's owner).
UNAUTHORIZED_RETURNS = frozenset({"R05", "R07", "R10", "R29", "CB10"})
# Returns after which the bank account is never used again: it is closed or unknown, or its
# owner says they never allowed the debit.
BLOCKING_RETURNS = frozenset({"R02", "R03", "R04", "R16", "R20"}) | UNAUTHORIZED_RETURNS


# Limits and windows ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WithdrawalPolicy:
    daily_limit: Decimal
    weekly_limit: Decimal
    review_threshold: Decimal
    minimum: Decimal
    new_account_cooling_ns: int
    security_change_cooling_ns: int
    new_destination_hold_ns: int
    timezone: str

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def day_window(now_ns: int, zone: ZoneInfo) -> tuple[int, int]:
    """The firm's local calendar day containing `now_ns`, as [start, end) in ns since the
    epoch. Across a clock change the day is 23 or 25 hours long."""
    seconds = now_ns // NS_PER_SECOND
    local = datetime.fromtimestamp(seconds, zone)
    midnight = datetime(local.year, local.month, local.day, tzinfo=zone)
    following = midnight.date() + timedelta(days=1)
    next_midnight = datetime(following.year, following.month, following.day, tzinfo=zone)
    return (
        int(midnight.timestamp()) * NS_PER_SECOND,
        int(next_midnight.timestamp()) * NS_PER_SECOND,
    )


def week_window(now_ns: int) -> tuple[int, int]:
    """The rolling 7 x 24 hours ending at (and including) `now_ns`."""
    return now_ns - WEEK_NS + 1, now_ns + 1


@dataclass(frozen=True, slots=True)
class CountedWithdrawal:
    amount: Decimal
    requested_ns: int


@dataclass(frozen=True, slots=True)
class LimitUse:
    day_used: Decimal
    week_used: Decimal
    day_left: Decimal
    week_left: Decimal
    day_resets_ns: int


def limit_use(
    policy: WithdrawalPolicy, counted: Iterable[CountedWithdrawal], now_ns: int
) -> LimitUse:
    day_start, day_end = day_window(now_ns, policy.zone)
    week_start, week_end = week_window(now_ns)
    day_used = week_used = ZERO
    for item in counted:
        if day_start <= item.requested_ns < day_end:
            day_used += item.amount
        if week_start <= item.requested_ns < week_end:
            week_used += item.amount
    return LimitUse(
        day_used=day_used,
        week_used=week_used,
        day_left=max(ZERO, policy.daily_limit - day_used),
        week_left=max(ZERO, policy.weekly_limit - week_used),
        day_resets_ns=day_end,
    )


def limit_refusal(policy: WithdrawalPolicy, use: LimitUse, amount: Decimal) -> Refusal | None:
    """WDL-1 and WDL-2: a request that would take either window past its limit is refused
    whole (never split); a request that reaches a limit exactly is allowed."""
    if use.day_used + amount > policy.daily_limit:
        return Refusal.DAILY_LIMIT
    if use.week_used + amount > policy.weekly_limit:
        return Refusal.WEEKLY_LIMIT
    return None


@dataclass(frozen=True, slots=True)
class Cooling:
    refusal: Refusal
    until_ns: int


def cooling_refusal(
    policy: WithdrawalPolicy,
    *,
    now_ns: int,
    opened_ns: int,
    last_security_change_ns: int | None,
    destination_verified_ns: int,
) -> Cooling | None:
    """WDL-4 (no withdrawal in the first 24 hours of an account), ATO-1 (none for a while
    after a password, email, phone, second-factor or bank-account change) and the hold on a
    newly confirmed destination, in that order; each says until when."""
    checks = (
        (Refusal.NEW_ACCOUNT, opened_ns + policy.new_account_cooling_ns),
        (
            Refusal.SECURITY_CHANGE,
            (last_security_change_ns + policy.security_change_cooling_ns)
            if last_security_change_ns is not None
            else None,
        ),
        (Refusal.NEW_DESTINATION, destination_verified_ns + policy.new_destination_hold_ns),
    )
    for refusal, until in checks:
        if until is not None and now_ns < until:
            return Cooling(refusal, until)
    return None


def withdrawable_cash(
    *, settled: Decimal, unsettled: Decimal, held: Decimal, uncollected: Decimal
) -> Decimal:
    """Cash that may leave: settled cash, less what open orders reserve, less deposits not
    yet collected (an ACH debit can come back for 60 days, but the firm waits only for
    settlement, documented), less unsettled purchases already owed. Proceeds of sales that
    have not settled do not count (T+1)."""
    owed = min(unsettled, ZERO)
    return max(ZERO, settled - held - uncollected + owed)


def needs_review(policy: WithdrawalPolicy, amount: Decimal, *, flagged: bool) -> bool:
    """WDL-3: large withdrawals, and any a takeover signal flagged, wait for two staff."""
    return flagged or amount >= policy.review_threshold
