"""AML transaction monitoring rules (31 CFR 1023.320 suspicious activity; 1010.311/313
currency transaction reports): money movements, the rules over their windows, CTR
aggregation per person per business day, and the filing deadlines.

Pure: every rule is one function over a person's movements (the trigger and those before it
within the rule's window), so it is unit-tested and benchmarked without a database. Each
finding explains itself: its facts name the amounts, dates, accounts (masked), the window
and the threshold it crossed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo

from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.core.masking import HIDDEN

DAY_NS = 86_400 * NS_PER_SECOND
CENT = Decimal("0.01")


class MovementKind(StrEnum):
    DEPOSIT = "deposit"  # cash in
    WITHDRAWAL = "withdrawal"  # cash out
    RETURN = "return"  # a deposit the bank returned (evidence only)
    BUY = "buy"
    SELL = "sell"


class Direction(StrEnum):
    IN = "in"
    OUT = "out"


class Rule(StrEnum):
    STRUCTURING = "structuring"
    STRUCTURING_ACCOUNTS = "structuring_accounts"
    RAPID_IN_OUT = "rapid_in_out"
    PROFILE_DEVIATION = "profile_deviation"
    DORMANT_WAKING = "dormant_waking"
    RAPID_TRADING = "rapid_trading"
    HIGH_RISK_GEOGRAPHY = "high_risk_geography"


# The spec requirement each rule serves (AML-1 patterns, AML-2 unusual behaviour).
RULE_REQUIREMENTS: dict[Rule, str] = {
    Rule.STRUCTURING: "AML-1",
    Rule.STRUCTURING_ACCOUNTS: "AML-1",
    Rule.RAPID_IN_OUT: "AML-1",
    Rule.PROFILE_DEVIATION: "AML-2",
    Rule.DORMANT_WAKING: "AML-2",
    Rule.RAPID_TRADING: "AML-2",
    Rule.HIGH_RISK_GEOGRAPHY: "AML-1",
}


@dataclass(frozen=True, slots=True)
class Movement:
    """One money movement or execution of a person (the user owning the account)."""

    id: str  # "deposit:<id>", "withdrawal:<id>", "return:<id>", "execution:<id>"
    seq: int  # the ledger event that recorded it
    user_id: str
    account_id: str
    kind: MovementKind
    amount: Decimal  # cash moved, or an execution's notional
    ts_ns: int
    day: date  # the firm's business day
    rail: str | None = None
    symbol: str | None = None
    bank_account_id: str | None = None

    @property
    def direction(self) -> Direction | None:
        if self.kind is MovementKind.DEPOSIT:
            return Direction.IN
        if self.kind is MovementKind.WITHDRAWAL:
            return Direction.OUT
        return None

    @property
    def is_trade(self) -> bool:
        return self.kind in (MovementKind.BUY, MovementKind.SELL)


@dataclass(frozen=True, slots=True)
class AmlRules:
    """Thresholds and windows (config.py `aml_*`, validated there)."""

    timezone: str = "America/New_York"
    ctr_threshold: Decimal = Decimal(10_000)
    ctr_filing_days: int = 15
    ctr_rails: frozenset[str] = frozenset({"ach", "wire", "card"})
    structuring_floor: Decimal = Decimal("0.8")
    structuring_count: int = 3
    structuring_window_days: int = 5
    structuring_accounts: int = 2
    rapid_days: int = 5
    rapid_min_amount: Decimal = Decimal(5_000)
    rapid_out_share: Decimal = Decimal("0.8")
    rapid_trading_share: Decimal = Decimal("0.25")
    profile_window_days: int = 30
    profile_multiple: Decimal = Decimal(3)
    default_monthly_funding: Decimal = Decimal(20_000)
    dormant_days: int = 180
    dormant_min_amount: Decimal = Decimal(5_000)
    trading_window_days: int = 5
    trading_turnover: Decimal = Decimal(20)
    trading_min_notional: Decimal = Decimal(100_000)
    trading_round_trips: int = 20
    high_risk_countries: frozenset[str] = frozenset({"IR", "KP", "MM"})
    high_risk_min_amount: Decimal = Decimal(1_000)
    sar_days: int = 30
    sar_no_suspect_days: int = 60
    sar_reminder_days: tuple[int, ...] = (7, 2)
    four_eyes_score: int = 70
    retention_years: int = 5

    @property
    def lookback_days(self) -> int:
        """The longest window any rule looks back over (the history a trigger needs)."""
        return max(
            self.structuring_window_days,
            self.rapid_days,
            self.profile_window_days,
            self.trading_window_days,
        )

    def describe(self) -> list[dict[str, str]]:
        """The rules table (CLI `aml rules show`, docs/aml.md)."""
        t = self.ctr_threshold
        return [
            {
                "rule": "ctr",
                "what": "cash-in or cash-out per person per business day (separately)",
                "threshold": f"more than {t}",
                "window": f"business day in {self.timezone}",
                "rails": ",".join(sorted(self.ctr_rails)),
                "settings": "aml_ctr_threshold, aml_ctr_rails, aml_timezone, aml_ctr_filing_days",
            },
            {
                "rule": Rule.STRUCTURING.value,
                "what": "movements just under the CTR threshold, one direction",
                "threshold": f"at least {self.structuring_count} between "
                f"{(t * self.structuring_floor).quantize(CENT)} and {t}",
                "window": f"{self.structuring_window_days} business days",
                "settings": "aml_structuring_floor, aml_structuring_count, "
                "aml_structuring_window_days",
            },
            {
                "rule": Rule.STRUCTURING_ACCOUNTS.value,
                "what": "one business day split across accounts, each movement under the threshold",
                "threshold": f"{self.structuring_accounts}+ accounts, total at least "
                f"{(t * self.structuring_floor).quantize(CENT)}",
                "window": "business day",
                "settings": "aml_structuring_accounts, aml_structuring_floor",
            },
            {
                "rule": Rule.RAPID_IN_OUT.value,
                "what": "deposits then a withdrawal, little trading in between",
                "threshold": f"deposits at least {self.rapid_min_amount}, out at least "
                f"{self.rapid_out_share:%} of them, traded under "
                f"{self.rapid_trading_share:%}",
                "window": f"{self.rapid_days} days",
                "settings": "aml_rapid_days, aml_rapid_min_amount, aml_rapid_out_share, "
                "aml_rapid_trading_share",
            },
            {
                "rule": Rule.PROFILE_DEVIATION.value,
                "what": "money moved (in plus out) against the expected monthly funding",
                "threshold": f"more than {self.profile_multiple}x the profile's (default "
                f"{self.default_monthly_funding})",
                "window": f"{self.profile_window_days} days",
                "settings": "aml_profile_multiple, aml_profile_window_days, "
                "aml_default_monthly_funding",
            },
            {
                "rule": Rule.DORMANT_WAKING.value,
                "what": "an account with no activity, then a large movement",
                "threshold": f"idle {self.dormant_days} days, then at least "
                f"{self.dormant_min_amount}",
                "window": f"{self.dormant_days} days",
                "settings": "aml_dormant_days, aml_dormant_min_amount",
            },
            {
                "rule": Rule.RAPID_TRADING.value,
                "what": "turnover against the person's net funding, or round trips",
                "threshold": f"notional at least {self.trading_min_notional} and more than "
                f"{self.trading_turnover}x net funding, or {self.trading_round_trips}+ "
                "round trips",
                "window": f"{self.trading_window_days} days",
                "settings": "aml_trading_window_days, aml_trading_turnover, "
                "aml_trading_min_notional, aml_trading_round_trips",
            },
            {
                "rule": Rule.HIGH_RISK_GEOGRAPHY.value,
                "what": "movements of a customer resident in or a national of a listed country",
                "threshold": f"at least {self.high_risk_min_amount}; countries "
                f"{','.join(sorted(self.high_risk_countries))}",
                "window": f"{self.profile_window_days} days",
                "settings": "aml_high_risk_countries, aml_high_risk_min_amount",
            },
        ]


@dataclass(frozen=True, slots=True)
class ProfileView:
    """What the rules read of the customer's risk profile (kyc/contracts.py), or the firm's
    defaults when there is none."""

    expected_monthly_funding: Decimal
    from_profile: bool
    country: str | None = None
    nationality: str | None = None
    rating: str | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    rule: Rule
    user_id: str
    # One alert per rule, person and window: the window's key (see `period_key`).
    window_key: str
    window_start_ns: int
    window_end_ns: int
    score: int
    summary: str
    facts: dict[str, object]
    movement_ids: tuple[str, ...]
    trigger_seq: int
    trigger_ns: int


@dataclass(frozen=True, slots=True)
class Context:
    """What a trigger is judged with besides the person's recent movements."""

    profile: ProfileView
    # The trigger's account's latest movement or trade before it (None: its first).
    previous_activity_ns: int | None = None
    # Deposits minus withdrawals of the person before the window (rapid trading's base).
    net_funding: Decimal = Decimal(0)
    extra_facts: dict[str, object] = field(default_factory=dict)


# Helpers --------------------------------------------------------------------------------------


def business_day(ts_ns: int, tz: ZoneInfo) -> date:
    """The firm's calendar day in its time zone (23:59 and 00:01 local are two days)."""
    return datetime.fromtimestamp(ts_ns / NS_PER_SECOND, tz=UTC).astimezone(tz).date()


def day_start_ns(day: date, tz: ZoneInfo) -> int:
    start = datetime(day.year, day.month, day.day, tzinfo=tz)
    return int(start.timestamp()) * NS_PER_SECOND


def mask_account(account_id: str) -> str:
    """An account named by its last four characters only."""
    return HIDDEN + account_id[-4:]


def money(value: Decimal) -> str:
    return str(value.quantize(CENT))


def period_key(day: date, days: int) -> str:
    """The fixed period of `days` days (counted from 1970-01-01) that `day` falls in: one
    alert per rule, person and period, so a pattern that keeps going folds into one alert."""
    ordinal = (day - date(1970, 1, 1)).days
    start = date(1970, 1, 1) + timedelta(days=ordinal - ordinal % days)
    return start.isoformat()


def _movement_fact(m: Movement) -> dict[str, object]:
    fact: dict[str, object] = {
        "movement": m.id,
        "kind": m.kind.value,
        "amount": money(m.amount),
        "account": mask_account(m.account_id),
        "day": m.day.isoformat(),
    }
    if m.rail is not None:
        fact["rail"] = m.rail
    if m.symbol is not None:
        fact["symbol"] = m.symbol
    return fact


def _window(history: Sequence[Movement], trigger: Movement, days: int) -> list[Movement]:
    """The trigger and the person's movements within `days` business days ending its day."""
    first = trigger.day - timedelta(days=days - 1)
    return [m for m in history if first <= m.day <= trigger.day and m.seq <= trigger.seq]


def _finding(
    rule: Rule,
    trigger: Movement,
    *,
    key: str,
    involved: Sequence[Movement],
    score: int,
    summary: str,
    facts: dict[str, object],
) -> Finding:
    return Finding(
        rule=rule,
        user_id=trigger.user_id,
        window_key=key,
        window_start_ns=min(m.ts_ns for m in involved),
        window_end_ns=max(m.ts_ns for m in involved),
        score=min(100, max(0, score)),
        summary=summary,
        facts=facts | {"movements": [_movement_fact(m) for m in involved]},
        movement_ids=tuple(m.id for m in involved),
        trigger_seq=trigger.seq,
        trigger_ns=trigger.ts_ns,
    )


# CTR -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CtrAggregate:
    user_id: str
    day: date
    direction: Direction
    total: Decimal
    movement_ids: tuple[str, ...]
    accounts: tuple[str, ...]
    first_ns: int
    last_ns: int


def ctr_aggregate(
    movements: Iterable[Movement], *, user_id: str, day: date, direction: Direction, rules: AmlRules
) -> CtrAggregate | None:
    """The person's currency transactions of one direction on one business day, when they
    add up to MORE than the threshold (31 CFR 1010.311, aggregated as 1010.313(b) says)."""
    counted = [
        m
        for m in movements
        if m.user_id == user_id
        and m.day == day
        and m.direction is direction
        and (m.rail or "") in rules.ctr_rails
    ]
    total = sum((m.amount for m in counted), Decimal(0))
    if total <= rules.ctr_threshold:
        return None
    return CtrAggregate(
        user_id=user_id,
        day=day,
        direction=direction,
        total=total,
        movement_ids=tuple(m.id for m in counted),
        accounts=tuple(sorted({m.account_id for m in counted})),
        first_ns=min(m.ts_ns for m in counted),
        last_ns=max(m.ts_ns for m in counted),
    )


def ctr_due(day: date, rules: AmlRules) -> date:
    """A CTR is filed within 15 days after the transaction day (31 CFR 1010.306(a)(1))."""
    return day + timedelta(days=rules.ctr_filing_days)


def sar_due_ns(detection_ns: int, *, suspect_identified: bool, rules: AmlRules) -> int:
    """31 CFR 1023.320(b)(3): 30 calendar days from initial detection; when no suspect was
    identified, up to 30 more (60 in all)."""
    days = rules.sar_days if suspect_identified else rules.sar_no_suspect_days
    return detection_ns + days * DAY_NS


def reminders_due(due_ns: int, now_ns: int, *, sent: Iterable[int], rules: AmlRules) -> list[int]:
    """The reminders (days before the deadline) that fall due now and were not sent yet. A
    reminder whose moment passed before a later one is folded into that later one."""
    done = set(sent)
    owed = [d for d in rules.sar_reminder_days if now_ns >= due_ns - d * DAY_NS and d not in done]
    if not owed:
        return []
    # Only the closest reminder is sent; the ones it supersedes are marked sent with it.
    return sorted(owed)


# Rules ---------------------------------------------------------------------------------------


def _cash(m: Movement, direction: Direction | None = None) -> bool:
    return m.direction is not None and (direction is None or m.direction is direction)


def structuring(trigger: Movement, history: Sequence[Movement], rules: AmlRules) -> Finding | None:
    """Several movements just under the CTR threshold within a few business days."""
    direction = trigger.direction
    if direction is None:
        return None
    floor = rules.ctr_threshold * rules.structuring_floor

    def under(m: Movement) -> bool:
        return floor <= m.amount <= rules.ctr_threshold

    if not under(trigger):
        return None
    involved = [
        m
        for m in _window(history, trigger, rules.structuring_window_days)
        if m.direction is direction and under(m)
    ]
    if len(involved) < rules.structuring_count:
        return None
    total = sum((m.amount for m in involved), Decimal(0))
    return _finding(
        Rule.STRUCTURING,
        trigger,
        key=f"{direction.value}:{period_key(trigger.day, rules.structuring_window_days)}",
        involved=involved,
        score=60 + 10 * (len(involved) - rules.structuring_count),
        summary=f"{len(involved)} {'deposits' if direction is Direction.IN else 'withdrawals'}"
        f" between {money(floor)} and {money(rules.ctr_threshold)} within "
        f"{rules.structuring_window_days} business days (total {money(total)})",
        facts={
            "direction": direction.value,
            "count": len(involved),
            "total": money(total),
            "band": [money(floor), money(rules.ctr_threshold)],
            "window_days": rules.structuring_window_days,
            "minimum_count": rules.structuring_count,
            "threshold": money(rules.ctr_threshold),
        },
    )


def structuring_accounts(
    trigger: Movement, history: Sequence[Movement], rules: AmlRules
) -> Finding | None:
    """One business day split across several accounts, each movement under the threshold."""
    direction = trigger.direction
    if direction is None:
        return None
    same_day = [
        m
        for m in history
        if m.day == trigger.day and m.direction is direction and m.seq <= trigger.seq
    ]
    if any(m.amount > rules.ctr_threshold for m in same_day):
        return None
    accounts = {m.account_id for m in same_day}
    total = sum((m.amount for m in same_day), Decimal(0))
    floor = rules.ctr_threshold * rules.structuring_floor
    if len(accounts) < rules.structuring_accounts or total < floor:
        return None
    return _finding(
        Rule.STRUCTURING_ACCOUNTS,
        trigger,
        key=f"{direction.value}:{trigger.day.isoformat()}",
        involved=same_day,
        score=70 if total > rules.ctr_threshold else 60,
        summary=f"{money(total)} {'deposited' if direction is Direction.IN else 'withdrawn'} "
        f"on {trigger.day.isoformat()} across {len(accounts)} accounts, each movement under "
        f"{money(rules.ctr_threshold)}",
        facts={
            "direction": direction.value,
            "day": trigger.day.isoformat(),
            "accounts": sorted(mask_account(a) for a in accounts),
            "total": money(total),
            "floor": money(floor),
            "threshold": money(rules.ctr_threshold),
            "minimum_accounts": rules.structuring_accounts,
        },
    )


def rapid_in_out(trigger: Movement, history: Sequence[Movement], rules: AmlRules) -> Finding | None:
    """Deposits, then a withdrawal of most of them within a few days, little traded."""
    if trigger.kind is not MovementKind.WITHDRAWAL:
        return None
    since = trigger.ts_ns - rules.rapid_days * DAY_NS
    recent = [m for m in history if since <= m.ts_ns <= trigger.ts_ns and m.seq <= trigger.seq]
    deposits = [m for m in recent if m.kind is MovementKind.DEPOSIT]
    deposited = sum((m.amount for m in deposits), Decimal(0))
    if deposited < rules.rapid_min_amount:
        return None
    withdrawals = [m for m in recent if m.kind is MovementKind.WITHDRAWAL]
    withdrawn = sum((m.amount for m in withdrawals), Decimal(0))
    if withdrawn < deposited * rules.rapid_out_share:
        return None
    first_in = min(m.ts_ns for m in deposits)
    traded = sum((m.amount for m in recent if m.is_trade and m.ts_ns >= first_in), Decimal(0))
    if traded >= deposited * rules.rapid_trading_share:
        return None
    involved = [m for m in recent if m.direction is not None and m.ts_ns >= first_in]
    days = (trigger.ts_ns - first_in) / DAY_NS
    return _finding(
        Rule.RAPID_IN_OUT,
        trigger,
        key=period_key(trigger.day, rules.rapid_days),
        involved=involved,
        score=60 + (20 if traded == 0 else 0),
        summary=f"{money(deposited)} deposited and {money(withdrawn)} withdrawn within "
        f"{days:.1f} days; {money(traded)} traded in between",
        facts={
            "deposited": money(deposited),
            "withdrawn": money(withdrawn),
            "traded": money(traded),
            "window_days": rules.rapid_days,
            "minimum_deposited": money(rules.rapid_min_amount),
            "out_share": str(rules.rapid_out_share),
            "trading_share": str(rules.rapid_trading_share),
        },
    )


def profile_deviation(
    trigger: Movement, history: Sequence[Movement], rules: AmlRules, profile: ProfileView
) -> Finding | None:
    """Money moved within the window far above what the customer said to expect."""
    if trigger.direction is None:
        return None
    since = trigger.ts_ns - rules.profile_window_days * DAY_NS
    involved = [
        m
        for m in history
        if m.direction is not None and since <= m.ts_ns <= trigger.ts_ns and m.seq <= trigger.seq
    ]
    moved = sum((m.amount for m in involved), Decimal(0))
    limit = profile.expected_monthly_funding * rules.profile_multiple
    if moved <= limit:
        return None
    ratio = moved / profile.expected_monthly_funding
    return _finding(
        Rule.PROFILE_DEVIATION,
        trigger,
        key=period_key(trigger.day, rules.profile_window_days),
        involved=involved,
        score=40 + min(40, int(ratio * 5)),
        summary=f"{money(moved)} moved within {rules.profile_window_days} days, "
        f"{ratio:.1f}x the expected monthly {money(profile.expected_monthly_funding)}"
        + ("" if profile.from_profile else " (firm default: no profile figure)"),
        facts={
            "moved": money(moved),
            "expected_monthly": money(profile.expected_monthly_funding),
            "expected_from": "profile" if profile.from_profile else "firm default",
            "multiple": str(rules.profile_multiple),
            "limit": money(limit),
            "window_days": rules.profile_window_days,
        },
    )


def dormant_waking(trigger: Movement, rules: AmlRules, previous_ns: int | None) -> Finding | None:
    """An account idle for a long time, then a large movement."""
    if trigger.direction is None or previous_ns is None:
        return None
    idle_ns = trigger.ts_ns - previous_ns
    if idle_ns < rules.dormant_days * DAY_NS or trigger.amount < rules.dormant_min_amount:
        return None
    return _finding(
        Rule.DORMANT_WAKING,
        trigger,
        key=f"{trigger.account_id}:{trigger.day.isoformat()}",
        involved=[trigger],
        score=50,
        summary=f"{money(trigger.amount)} {trigger.kind.value} on an account idle for "
        f"{idle_ns // DAY_NS} days",
        facts={
            "account": mask_account(trigger.account_id),
            "idle_days": idle_ns // DAY_NS,
            "dormant_days": rules.dormant_days,
            "amount": money(trigger.amount),
            "minimum_amount": money(rules.dormant_min_amount),
        },
    )


def _round_trips(trades: Sequence[Movement]) -> int:
    buys: dict[str, int] = defaultdict(int)
    trips = 0
    for m in sorted(trades, key=lambda t: t.seq):
        symbol = m.symbol or ""
        if m.kind is MovementKind.BUY:
            buys[symbol] += 1
        elif buys[symbol] > 0:
            buys[symbol] -= 1
            trips += 1
    return trips


def rapid_trading(
    trigger: Movement, history: Sequence[Movement], rules: AmlRules, net_funding: Decimal
) -> Finding | None:
    """Turnover far above the money the person put in, or many round trips."""
    if not trigger.is_trade:
        return None
    since = trigger.ts_ns - rules.trading_window_days * DAY_NS
    trades = [
        m
        for m in history
        if m.is_trade and since <= m.ts_ns <= trigger.ts_ns and m.seq <= trigger.seq
    ]
    notional = sum((m.amount for m in trades), Decimal(0))
    trips = _round_trips(trades)
    base = max(net_funding, Decimal(0))
    turnover = notional >= rules.trading_min_notional and notional > base * rules.trading_turnover
    if not turnover and trips < rules.trading_round_trips:
        return None
    multiple = f"{notional / base:.1f}" if base > 0 else "n/a"
    return _finding(
        Rule.RAPID_TRADING,
        trigger,
        key=period_key(trigger.day, rules.trading_window_days),
        involved=trades[-50:],
        score=50 + (10 if turnover and trips >= rules.trading_round_trips else 0),
        summary=f"{money(notional)} traded within {rules.trading_window_days} days "
        f"({multiple}x net funding {money(base)}); {trips} round trips",
        facts={
            "notional": money(notional),
            "net_funding": money(base),
            "turnover_multiple": str(rules.trading_turnover),
            "minimum_notional": money(rules.trading_min_notional),
            "round_trips": trips,
            "round_trip_limit": rules.trading_round_trips,
            "window_days": rules.trading_window_days,
            "trades": len(trades),
        },
    )


def high_risk_geography(trigger: Movement, rules: AmlRules, profile: ProfileView) -> Finding | None:
    """A movement of a customer resident in, or a national of, a listed country."""
    if trigger.direction is None or trigger.amount < rules.high_risk_min_amount:
        return None
    listed = sorted(
        {c for c in (profile.country, profile.nationality) if c in rules.high_risk_countries}
    )
    if not listed:
        return None
    return _finding(
        Rule.HIGH_RISK_GEOGRAPHY,
        trigger,
        key=period_key(trigger.day, rules.profile_window_days),
        involved=[trigger],
        score=70,
        summary=f"{money(trigger.amount)} {trigger.kind.value} by a customer linked to "
        f"high-risk {', '.join(listed)}",
        facts={
            "countries": listed,
            "residence": profile.country,
            "nationality": profile.nationality,
            "amount": money(trigger.amount),
            "minimum_amount": money(rules.high_risk_min_amount),
            "list": sorted(rules.high_risk_countries),
        },
    )


def evaluate(
    trigger: Movement, history: Sequence[Movement], context: Context, rules: AmlRules
) -> list[Finding]:
    """Every rule's finding for one new movement; `history` holds the person's movements
    within `rules.lookback_days` before it, the trigger included."""
    found = [
        structuring(trigger, history, rules),
        structuring_accounts(trigger, history, rules),
        rapid_in_out(trigger, history, rules),
        profile_deviation(trigger, history, rules, context.profile),
        dormant_waking(trigger, rules, context.previous_activity_ns),
        rapid_trading(trigger, history, rules, context.net_funding),
        high_risk_geography(trigger, rules, context.profile),
    ]
    return [f for f in found if f is not None]
