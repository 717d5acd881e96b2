"""Surveillance vocabulary: alert types, model parameters and findings (pure: no I/O).

Alert types are stable strings: alerts, their ledger events, the API, the CLI and the
evaluation all name them the same way. Each belongs to one detector model, named by the
spec requirement it serves (MAN-1 wash trading, MAN-2 spoofing and layering, MAN-3 pump and
dump, MAN-4 front-running and trading ahead of the restricted list, PRE-3 unusual order
patterns: marking the close, quote stuffing, momentum ignition).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from tradeguard.core.clock import NS_PER_SECOND


class AlertType(StrEnum):
    WASH_TRADE = "WASH_TRADE"
    SPOOFING = "SPOOFING"
    LAYERING = "LAYERING"
    PUMP_AND_DUMP = "PUMP_AND_DUMP"
    FRONT_RUNNING = "FRONT_RUNNING"
    RESTRICTED_LIST_AHEAD = "RESTRICTED_LIST_AHEAD"
    MARKING_THE_CLOSE = "MARKING_THE_CLOSE"
    QUOTE_STUFFING = "QUOTE_STUFFING"
    MOMENTUM_IGNITION = "MOMENTUM_IGNITION"


class Detector(StrEnum):
    """The detector models, by the requirement each implements."""

    WASH = "MAN-1"
    SPOOFING = "MAN-2"
    PUMP = "MAN-3"
    FRONT_RUNNING = "MAN-4"
    # Unusual order patterns and rapid order placement (PRE-3): marking the close, quote
    # stuffing, momentum ignition.
    PATTERNS = "PRE-3"


DETECTOR_OF: dict[AlertType, Detector] = {
    AlertType.WASH_TRADE: Detector.WASH,
    AlertType.SPOOFING: Detector.SPOOFING,
    AlertType.LAYERING: Detector.SPOOFING,
    AlertType.PUMP_AND_DUMP: Detector.PUMP,
    AlertType.FRONT_RUNNING: Detector.FRONT_RUNNING,
    AlertType.RESTRICTED_LIST_AHEAD: Detector.FRONT_RUNNING,
    AlertType.MARKING_THE_CLOSE: Detector.PATTERNS,
    AlertType.QUOTE_STUFFING: Detector.PATTERNS,
    AlertType.MOMENTUM_IGNITION: Detector.PATTERNS,
}

ALERT_DESCRIPTIONS: dict[AlertType, str] = {
    AlertType.WASH_TRADE: (
        "one beneficial owner bought and sold the same symbol within the window at near "
        "prices with little net change: volume without a change of ownership"
    ),
    AlertType.SPOOFING: (
        "large orders on one side, an execution on the other, then the large orders cancelled fast"
    ),
    AlertType.LAYERING: (
        "orders at several price levels on one side, an execution on the other, then the "
        "levels cancelled fast"
    ),
    AlertType.PUMP_AND_DUMP: (
        "a group of accounts bought a symbol, its price rose far within hours, and the group "
        "sold near the peak"
    ),
    AlertType.FRONT_RUNNING: (
        "a staff or proprietary account traded a symbol shortly before a large client order "
        "on the same side, then unwound"
    ),
    AlertType.RESTRICTED_LIST_AHEAD: (
        "a staff or proprietary account built a position in a symbol shortly before the firm "
        "put it on its restricted list"
    ),
    AlertType.MARKING_THE_CLOSE: (
        "one owner's one-sided, liquidity-taking trades in the last minutes of the session "
        "moved the price the day closes at"
    ),
    AlertType.QUOTE_STUFFING: (
        "a burst of orders and cancels within a second with almost nothing traded"
    ),
    AlertType.MOMENTUM_IGNITION: (
        "one owner's burst of aggressive orders on one side moved the price through several "
        "levels, and the owner then traded the other way at a profit within minutes"
    ),
}


# Evidence key: the executions a pattern consists of, where a model's evidence shows more
# of the owner's trading than that as context (MAN-1: the crosses, not the owner's other
# trades in the window). Absent: every execution of the alert is the pattern's. What the
# report draft counts (surveillance/sar.py).
PATTERN_EXECUTIONS_KEY = "pattern_execution_ids"


class AlertStatus(StrEnum):
    """An alert's own state: `new` (nobody looked yet), `in_case` (a case decides it),
    `dismissed` (by compliance, with a reason), `escalated` (for a senior review before a
    case). Dismiss and escalate are for alerts outside a case; reopen undoes a dismissal."""

    NEW = "new"
    IN_CASE = "in_case"
    DISMISSED = "dismissed"
    ESCALATED = "escalated"


class AlertCommand(StrEnum):
    DISMISS = "dismissed"
    ESCALATE = "escalated"
    REOPEN = "reopened"


_ALERT_ALLOWED: dict[AlertCommand, frozenset[AlertStatus]] = {
    AlertCommand.DISMISS: frozenset({AlertStatus.NEW, AlertStatus.ESCALATED}),
    AlertCommand.ESCALATE: frozenset({AlertStatus.NEW}),
    AlertCommand.REOPEN: frozenset({AlertStatus.DISMISSED}),
}
_ALERT_RESULT = {
    AlertCommand.DISMISS: AlertStatus.DISMISSED,
    AlertCommand.ESCALATE: AlertStatus.ESCALATED,
    AlertCommand.REOPEN: AlertStatus.NEW,
}


def alert_transition(status: AlertStatus, command: AlertCommand) -> AlertStatus | str:
    """The alert's status after `command`, or why it is refused (a sentence)."""
    if status in _ALERT_ALLOWED[command]:
        return _ALERT_RESULT[command]
    if status is AlertStatus.IN_CASE:
        return "the alert is in a case: its case decides it"
    if command is AlertCommand.REOPEN:
        return "only a dismissed alert can be reopened"
    return f"the alert is {status.value.replace('_', ' ')}: it cannot be {command.value}"


# Cases (MAN-5) ---------------------------------------------------------------------------


class CaseStatus(StrEnum):
    """open (nobody on it) -> assigned -> escalated (a senior reviewer) -> closed."""

    OPEN = "open"
    ASSIGNED = "assigned"
    ESCALATED = "escalated"
    CLOSED = "closed"


class Disposition(StrEnum):
    FALSE_POSITIVE = "false_positive"
    NO_ACTION = "no_action"
    WARNING = "warning"
    RESTRICTED = "restricted"
    REPORTED = "reported"


class CaseCommand(StrEnum):
    """What a compliance user does to a case; each is a timeline entry and a ledger event."""

    OPEN = "opened"
    ADD_ALERT = "alert_added"
    REMOVE_ALERT = "alert_removed"
    ASSIGN = "assigned"
    NOTE = "note_added"
    ESCALATE = "escalated"
    CLOSE = "closed"
    REPORT_FILED = "report_filed"


# Dispositions that restrict a customer or go to a regulator need a second look first: the
# case must have been escalated (a decision of that weight is not one reviewer's alone).
ESCALATION_REQUIRED = frozenset({Disposition.RESTRICTED, Disposition.REPORTED})

_LIVE = frozenset({CaseStatus.OPEN, CaseStatus.ASSIGNED, CaseStatus.ESCALATED})
_ALLOWED_FROM: dict[CaseCommand, frozenset[CaseStatus]] = {
    CaseCommand.ADD_ALERT: _LIVE,
    CaseCommand.REMOVE_ALERT: _LIVE,
    CaseCommand.ASSIGN: _LIVE,
    CaseCommand.NOTE: _LIVE,
    CaseCommand.ESCALATE: frozenset({CaseStatus.ASSIGNED}),
    CaseCommand.CLOSE: frozenset({CaseStatus.ASSIGNED, CaseStatus.ESCALATED}),
    CaseCommand.REPORT_FILED: frozenset({CaseStatus.CLOSED}),
}


def case_transition(
    status: CaseStatus, command: CaseCommand, disposition: Disposition | None = None
) -> CaseStatus | str:
    """The status after `command`, or why the command is refused in `status` (a plain
    sentence; tell them apart with `isinstance(result, CaseStatus)`: a status is a str too)."""
    if command is CaseCommand.OPEN:
        return "a case is opened only once"
    if status not in _ALLOWED_FROM[command]:
        if status is CaseStatus.CLOSED:
            return f"the case is closed: it cannot be {command.value.replace('_', ' ')}"
        if command is CaseCommand.ESCALATE:
            return (
                "only an assigned case can be escalated"
                if status is CaseStatus.OPEN
                else "the case is already escalated"
            )
        if command is CaseCommand.CLOSE:
            return "assign the case before closing it: somebody must have reviewed it"
        return f"the case is {status.value}: a report is filed only for a closed case"
    if command is CaseCommand.ASSIGN:
        return CaseStatus.ASSIGNED if status is CaseStatus.OPEN else status
    if command is CaseCommand.ESCALATE:
        return CaseStatus.ESCALATED
    if command is CaseCommand.CLOSE:
        if disposition is None:
            return "closing a case needs a disposition"
        if disposition in ESCALATION_REQUIRED and status is not CaseStatus.ESCALATED:
            return f"escalate the case before closing it as {disposition.value}"
        return CaseStatus.CLOSED
    return status


# Automatic actions (MAN-5) -----------------------------------------------------------------


class ActionKind(StrEnum):
    """Automatic responses to an alert, mildest first."""

    NOTIFY = "notify"
    CANCEL_ORDERS = "cancel_orders"
    CLOSING_ONLY = "closing_only"
    SUSPEND = "suspend"


class ActionStatus(StrEnum):
    APPLIED = "applied"
    # Nothing to do (the account was already suspended, or closed): kept so the policy's
    # decision is on record, not reversible.
    SKIPPED = "skipped"
    REVERSED = "reversed"


@dataclass(frozen=True, slots=True)
class ActionRule:
    """One row of the action policy: alerts of this type scoring at least `min_score` get
    `action` on every account they name."""

    alert_type: AlertType
    min_score: int
    action: ActionKind


def actions_due(rules: Sequence[ActionRule], alert_type: str, alert_score: int) -> list[ActionKind]:
    """The actions the policy asks for an alert of this type and score, each once, mildest
    first."""
    wanted = {r.action for r in rules if r.alert_type == alert_type and alert_score >= r.min_score}
    return [kind for kind in ActionKind if kind in wanted]


@dataclass(frozen=True, slots=True)
class WashParameters:
    """MAN-1. Defaults: see docs/surveillance.md (and the settings that set them)."""

    window_ns: int = 600 * NS_PER_SECOND
    # Shares both bought and sold in the window before anything is judged.
    min_quantity: int = 100
    # |bought - sold| at most this fraction of the larger side: little net position change.
    max_net_fraction: Decimal = Decimal("0.2")
    # |average buy price - average sell price| at most this fraction of the sell price.
    price_tolerance: Decimal = Decimal("0.01")
    # Without a trade between the owner's own accounts: at least this many buy orders and
    # as many sell orders that took liquidity in the window (one buy and one sell is
    # ordinary trading; a market maker's resting quotes do not take liquidity).
    min_round_trips: int = 2
    # Without such a trade, the aggressive (liquidity-taking) fills are at least this share
    # of the owner's volume in the window: a wash trader pays the spread, a market maker
    # that now and then takes liquidity mostly earns it.
    min_aggressive_share: Decimal = Decimal("0.5")
    # The owner's netted volume as a share of the symbol's recorded volume in the window:
    # the artificial volume, which in a busy symbol a small wash barely moves.
    min_volume_share: Decimal = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class SpoofParameters:
    """MAN-2. Defaults: see docs/surveillance.md (and the settings that set them)."""

    # The orders on the far side were placed at most this long before the execution ...
    max_order_age_ns: int = 60 * NS_PER_SECOND
    # ... and cancelled at most this long after it.
    cancel_window_ns: int = 30 * NS_PER_SECOND
    # Shares cancelled on the far side before anything is judged.
    min_quantity: int = 1000
    # Cancelled shares at least this multiple of the shares executed on the other side.
    size_ratio: Decimal = Decimal(3)
    # The far side's resting shares at the execution at least this multiple of the near
    # side's (the executed order included): a market maker quotes both sides alike.
    imbalance_ratio: Decimal = Decimal(3)
    # Cancelled orders at this many distinct prices or more make it layering.
    layering_min_levels: int = 3
    # Far-side orders further than this from the execution price (basis points) are not
    # counted: they cannot have been meant to move the price. (A few ticks of a $2 stock
    # are a few hundred basis points.)
    max_distance_bps: int = 500
    # A new far-side order at least half the size of the largest cancelled one within this
    # long of the cancel is a re-quote, and clears the finding once it proved bona fide
    # (executed, or still shown `cancel_window` later); 0 raises findings at the cancel
    # without the test.
    requote_window_ns: int = NS_PER_SECOND
    # Near the touch (basis points; 10 bps is five ticks of a $50 stock). A re-quote proves
    # good faith only at or better than the best price cancelled or at most this far behind
    # the market (one parked further off, within `max_distance_bps`, never has to fill); a
    # near-side resting order counts toward the near side only within this of the execution
    # price (one parked away would dilute the imbalance test).
    near_touch_bps: int = 10

    @property
    def reach_ns(self) -> int:
        # An episode's orders were placed at most `max_order_age` before its execution and
        # cancelled at most `cancel_window` after it; a re-quote begins at most
        # `requote_window` later and is judged within `cancel_window` (and a last gap).
        return self.max_order_age_ns + 2 * (self.cancel_window_ns + self.requote_window_ns)


@dataclass(frozen=True, slots=True)
class PumpParameters:
    """MAN-3. Defaults: see docs/surveillance.md (and the settings that set them)."""

    # The base, the peak and the group's buying and selling all fall within this long.
    window_ns: int = 4 * 3600 * NS_PER_SECOND
    # The peak at least this fraction above the lowest price before it in the window.
    min_rise: Decimal = Decimal("0.2")
    # A sale "near the peak": at most this fraction below it.
    near_peak: Decimal = Decimal("0.1")
    # A member of the group built a position: the most it held before the peak is at least
    # this fraction of what it bought there (a market maker turns its buying over) ...
    min_accumulation: Decimal = Decimal("0.5")
    # ... and sold at least this fraction of that position near the peak.
    min_sold_fraction: Decimal = Decimal("0.5")
    # The group traded through at least this many accounts (linked or not).
    min_accounts: int = 2
    # The group bought at least this many shares before the peak ...
    min_quantity: int = 1000
    # ... and at least this share of customers' net buying there before the peak (each
    # owner's shares bought less sold: a market maker turning its inventory over adds
    # little to the demand that lifts a price) ...
    min_buy_share: Decimal = Decimal("0.3")
    # ... each member at least this share of it (a bystander who bought a little and sold
    # near the top is not one of the group).
    min_member_share: Decimal = Decimal("0.05")


@dataclass(frozen=True, slots=True)
class FrontRunParameters:
    """MAN-4. Defaults: see docs/surveillance.md (and the settings that set them)."""

    # The staff and proprietary accounts (the firm's register of employee accounts, FINRA
    # Rule 3210, and its own trading accounts): the only ones this model judges.
    insiders: frozenset[str] = frozenset()
    # The insider's trade at most this long before the client order was placed ...
    ahead_window_ns: int = 300 * NS_PER_SECOND
    # ... and its opposite trade (the unwind) at most this long after it.
    unwind_window_ns: int = 1800 * NS_PER_SECOND
    # Shares the insider traded ahead (and as many unwound, or net built before a listing).
    min_quantity: int = 100
    # A client order (one that took liquidity when it arrived) is large when what it
    # executed within the windows is worth this much (USD): it moves the price.
    large_order_notional: Decimal = Decimal(100_000)
    # Insider trading at most this long before a restricted-list addition is judged (a
    # longer reach makes a restart replay more of the ledger: it is part of the lookback).
    restricted_window_ns: int = 4 * 3600 * NS_PER_SECOND

    @property
    def reach_ns(self) -> int:
        # Client orders are kept an unwind window longer than followed (what came before).
        return max(self.ahead_window_ns + 2 * self.unwind_window_ns, self.restricted_window_ns)


@dataclass(frozen=True, slots=True)
class ClosingParameters:
    """Marking the close (PRE-3). Defaults: see docs/surveillance.md."""

    # The last minutes of the session (the close from the exchange calendar).
    window_ns: int = 300 * NS_PER_SECOND
    # The owner's liquidity-taking shares on one side in the window ...
    min_quantity: int = 500
    # ... with at most this fraction of that on the other side (one-sided) ...
    max_opposite_fraction: Decimal = Decimal("0.2")
    # ... its shares at least this share of the symbol's volume in the window ...
    min_volume_share: Decimal = Decimal("0.3")
    # ... and the price moved at least this fraction its way from the last price before.
    min_move: Decimal = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class StuffingParameters:
    """Quote stuffing and rapid order placement (PRE-3). Defaults: see docs/surveillance.md."""

    # Ten seconds, 100 messages: what the platform lets through can fire it. The pre-trade
    # throttle (`risk_max_orders_per_second`, 10 a second an account) refuses anything
    # faster, so the former 50 in one second (25 orders and their cancels) never could; at
    # 5 orders a second and their cancels for ten seconds it does.
    window_ns: int = 10 * NS_PER_SECOND
    # Orders placed and cancelled by one account in one symbol within the window ...
    min_messages: int = 100
    # ... cancels at least this fraction of the orders placed ...
    min_cancel_ratio: Decimal = Decimal("0.9")
    # ... and fills at most this fraction of them.
    max_fill_ratio: Decimal = Decimal("0.02")


@dataclass(frozen=True, slots=True)
class MomentumParameters:
    """Momentum ignition (PRE-3). Defaults: see docs/surveillance.md."""

    # The burst: the owner's liquidity-taking fills on one side within this long ...
    window_ns: int = 60 * NS_PER_SECOND
    # ... from at least this many orders, or of at least this many shares ...
    min_orders: int = 3
    min_quantity: int = 5000
    # ... printing at this many distinct prices or more (levels taken out) ...
    min_levels: int = 3
    # ... moving the price at least this far the owner's way (basis points) ...
    min_move_bps: int = 100
    # ... the owner's shares at least this share of the symbol's liquidity-taking volume on
    # that side in the window.
    min_owner_share: Decimal = Decimal("0.5")
    # The unwind: within this long of the ignition's last fill, the owner traded at least
    # `min_unwind_fraction` of its shares the other way, at an average price at least
    # `min_profit_bps` better than the ignition's.
    unwind_window_ns: int = 900 * NS_PER_SECOND
    min_unwind_fraction: Decimal = Decimal("0.5")
    min_profit_bps: int = 10

    @property
    def reach_ns(self) -> int:
        # An ignition starts at most an unwind window and a window before the fill that
        # judges it, and its fills' reference prices reach two windows before its start.
        return self.unwind_window_ns + 3 * self.window_ns


@dataclass(frozen=True, slots=True)
class SurveillanceParameters:
    wash: WashParameters = field(default_factory=WashParameters)
    spoof: SpoofParameters = field(default_factory=SpoofParameters)
    pump: PumpParameters = field(default_factory=PumpParameters)
    frontrun: FrontRunParameters = field(default_factory=FrontRunParameters)
    closing: ClosingParameters = field(default_factory=ClosingParameters)
    stuffing: StuffingParameters = field(default_factory=StuffingParameters)
    momentum: MomentumParameters = field(default_factory=MomentumParameters)
    # The book reconstruction in an alert's evidence shows customer orders placed within
    # this long before it and still resting.
    book_horizon_ns: int = 3600 * NS_PER_SECOND
    # A finding of the same type, owner and symbol at most this long after an alert's latest
    # trigger is folded into that alert instead of raising another.
    fold_window_ns: int = 600 * NS_PER_SECOND

    @property
    def lookback_ns(self) -> int:
        """How far back any detector's state reaches (what a restart replays)."""
        return max(
            self.wash.window_ns,
            self.spoof.reach_ns,
            self.pump.window_ns,
            self.frontrun.reach_ns,
            self.closing.window_ns,
            self.stuffing.window_ns,
            self.momentum.reach_ns,
            self.book_horizon_ns,
        )


@dataclass(frozen=True, slots=True)
class Finding:
    """What a detector concluded at one event: the alert it would raise, with evidence."""

    alert_type: AlertType
    symbol: str
    owner: str
    accounts: tuple[str, ...]
    # 0-100: how far past its thresholds the pattern went (see each model).
    score: int
    # The event that completed the pattern: its chain position and time.
    trigger_seq: int
    trigger_ns: int
    window_start_ns: int
    window_end_ns: int
    summary: str
    order_ids: tuple[str, ...]
    execution_ids: tuple[str, ...]
    # Figures of the model (decimal strings and integers) and a book reconstruction.
    evidence: Mapping[str, Any]

    @property
    def detector(self) -> Detector:
        return DETECTOR_OF[self.alert_type]

    @property
    def fold_key(self) -> tuple[str, str, str]:
        return (self.alert_type.value, self.owner, self.symbol)


def folds_into(latest_trigger_ns: int, finding: Finding, fold_window_ns: int) -> bool:
    """Whether a finding belongs to the live alert whose latest trigger was at
    `latest_trigger_ns` (same type, owner and symbol): one alert per continuing pattern."""
    return 0 <= finding.trigger_ns - latest_trigger_ns <= fold_window_ns


def score(*excesses: Decimal) -> int:
    """0-100 from how many times each threshold was exceeded (1 = just met): 50 at the
    thresholds, rising toward 100 as the pattern goes further past them."""
    if not excesses:
        return 50
    least = min(excesses)
    if least <= 1:
        return 50
    # 50 + 50 * (1 - 1/x) for the weakest excess x: 2x the threshold scores 75.
    return min(100, int(50 + 50 * (1 - 1 / least)))


def ratio(numerator: int | Decimal, denominator: int | Decimal) -> Decimal:
    """numerator / denominator as a Decimal (0 when the denominator is 0)."""
    if not denominator:
        return Decimal(0)
    return Decimal(numerator) / Decimal(denominator)


@dataclass(slots=True)
class FoldedAlert:
    """An alert as findings fold into it: the first raised it, the latest is its state."""

    first: Finding
    latest: Finding
    occurrences: int = 1

    @property
    def alert_type(self) -> AlertType:
        return self.first.alert_type


class FindingFolder:
    """The folding rule (`folds_into`) over findings in memory: what the alert store does
    with its table, for the evaluation and the benchmarks."""

    def __init__(self, fold_window_ns: int) -> None:
        self._window = fold_window_ns
        self._live: dict[tuple[str, str, str], FoldedAlert] = {}
        self.alerts: list[FoldedAlert] = []

    def add(self, finding: Finding) -> FoldedAlert | None:
        """Fold a finding in; the new alert it raised, or None when it was folded."""
        live = self._live.get(finding.fold_key)
        if live is not None and folds_into(live.latest.trigger_ns, finding, self._window):
            live.latest = finding
            live.occurrences += 1
            return None
        alert = FoldedAlert(first=finding, latest=finding)
        self._live[finding.fold_key] = alert
        self.alerts.append(alert)
        return alert
