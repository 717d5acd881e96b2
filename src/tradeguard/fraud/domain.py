"""Account-takeover signals and the response policy (ATO-1, ATO-2, ACCT-5).

Pure: no database, no framework. A sign-in is compared with the user's earlier sign-ins
(device, country, network, where and when); a withdrawal with the latest security change and
the sign-ins before it; trading after a risky sign-in with the positions held. Each signal
carries a score (the policy's weight for it) and its evidence; the scores add up, and the
policy table maps the total to the strongest response whose threshold it reaches.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from tradeguard.core.clock import NS_PER_SECOND

EARTH_RADIUS_KM = 6371.0088
HOUR_NS = 3600 * NS_PER_SECOND


class TakeoverSignal(StrEnum):
    """What may mean that someone else is using the account (ATO-1, ACCT-5)."""

    NEW_DEVICE = "new_device"
    NEW_COUNTRY = "new_country"
    NEW_NETWORK = "new_network"
    IMPOSSIBLE_TRAVEL = "impossible_travel"
    UNUSUAL_TRADING = "unusual_trading"
    SECURITY_CHANGE_WITHDRAWAL = "security_change_withdrawal"


class TakeoverResponse(StrEnum):
    """What the platform does about it (ATO-2), weakest first; each includes the ones before.

    - allow: the signals are recorded, nothing else.
    - step_up: the sign-in's second factor no longer counts as fresh: sensitive actions
      (factor changes, withdrawals) need a new one.
    - verify: step-up, and the "was this you?" email (its "no" link signs out everywhere,
      freezes withdrawals and opens a review).
    - review: verify, and withdrawals are frozen with a review open until staff close it.
    - lock: review, and the account is locked for the lockout period with every session
      signed out.
    """

    ALLOW = "allow"
    STEP_UP = "step_up"
    VERIFY = "verify"
    REVIEW = "review"
    LOCK = "lock"

    @property
    def rank(self) -> int:
        return RESPONSE_ORDER.index(self)

    def includes(self, other: TakeoverResponse) -> bool:
        return self.rank >= other.rank


RESPONSE_ORDER: tuple[TakeoverResponse, ...] = tuple(TakeoverResponse)


class FraudEvent(StrEnum):
    """Ledger event types of the takeover defence (`fraud:subject:action`), defined once."""

    SIGNAL_RAISED = "fraud:signal:raised"
    SIGN_IN_ASSESSED = "fraud:sign_in:assessed"
    WITHDRAWAL_ASSESSED = "fraud:withdrawal:assessed"
    PROMPT_SENT = "fraud:prompt:sent"
    PROMPT_CONFIRMED = "fraud:prompt:confirmed"
    PROMPT_DENIED = "fraud:prompt:denied"
    PROMPT_REFUSED = "fraud:prompt:refused"
    WITHDRAWALS_FROZEN = "fraud:withdrawals:frozen"
    FREEZE_LIFT_REQUESTED = "fraud:freeze:lift_requested"
    FREEZE_LIFTED = "fraud:freeze:lifted"
    REVIEW_OPENED = "fraud:review:opened"
    REVIEW_ASSIGNED = "fraud:review:assigned"
    REVIEW_CLOSED = "fraud:review:closed"


class ReviewOutcome(StrEnum):
    TAKEOVER_CONFIRMED = "takeover_confirmed"
    FALSE_ALARM = "false_alarm"


class PromptAnswer(StrEnum):
    YES = "yes"
    NO = "no"


DEFAULT_WEIGHTS: Mapping[TakeoverSignal, int] = {
    TakeoverSignal.NEW_DEVICE: 20,
    TakeoverSignal.NEW_NETWORK: 15,
    TakeoverSignal.NEW_COUNTRY: 40,
    TakeoverSignal.IMPOSSIBLE_TRAVEL: 70,
    TakeoverSignal.UNUSUAL_TRADING: 60,
    TakeoverSignal.SECURITY_CHANGE_WITHDRAWAL: 80,
}
# (minimum total score, response), checked from the strongest down.
DEFAULT_THRESHOLDS: Mapping[TakeoverResponse, int] = {
    TakeoverResponse.STEP_UP: 30,
    TakeoverResponse.VERIFY: 50,
    TakeoverResponse.REVIEW: 90,
    TakeoverResponse.LOCK: 120,
}


@dataclass(frozen=True, slots=True)
class TakeoverPolicy:
    """The policy table: a weight per signal and a minimum score per response (ATO-2)."""

    weights: Mapping[TakeoverSignal, int] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    thresholds: Mapping[TakeoverResponse, int] = field(
        default_factory=lambda: dict(DEFAULT_THRESHOLDS)
    )
    # Impossible travel: faster than this between two sign-ins, over at least the floor (an
    # IP's location is a country's reference point, so shorter hops are noise).
    max_speed_kmh: float = 900.0
    min_travel_km: float = 500.0
    # Unusual trading: selling at least this share of the shares held, within this long of
    # a sign-in that scored at least `risky_score`.
    trading_window_ns: int = 30 * 60 * NS_PER_SECOND
    sold_fraction: float = 0.5
    risky_score: int = 30
    # A withdrawal within this long of a password, email, phone or second-factor change.
    security_change_window_ns: int = 72 * HOUR_NS
    # Earlier sign-ins of a withdrawal's look-back still weigh on it.
    withdrawal_lookback_ns: int = 24 * HOUR_NS
    # The "was this you?" link's lifetime.
    prompt_ttl_ns: int = 24 * HOUR_NS

    def __post_init__(self) -> None:
        missing = set(TakeoverSignal) - set(self.weights)
        if missing:
            raise ValueError(f"the policy has no weight for {sorted(missing)}")
        if any(weight < 0 for weight in self.weights.values()):
            raise ValueError("signal weights must not be negative")
        ranked = [self.thresholds.get(r) for r in RESPONSE_ORDER[1:]]
        present = [t for t in ranked if t is not None]
        if not present or present != sorted(present) or len(set(present)) != len(present):
            raise ValueError("response thresholds must rise strictly from step_up to lock")
        if present[0] <= 0:
            raise ValueError("the weakest response's threshold must be above zero")

    def response_for(self, score: int) -> TakeoverResponse:
        """The strongest response whose threshold the score reaches (allow below all)."""
        chosen = TakeoverResponse.ALLOW
        for response in RESPONSE_ORDER[1:]:
            threshold = self.thresholds.get(response)
            if threshold is not None and score >= threshold:
                chosen = response
        return chosen


@dataclass(frozen=True, slots=True)
class Location:
    """Where an address is, as far as the offline database tells: a country and the network
    (autonomous system) that announces it, and the country's reference point."""

    country: str
    network: str | None
    latitude: float | None
    longitude: float | None


@dataclass(frozen=True, slots=True)
class SignInFacts:
    at_ns: int
    device_id: str | None
    location: Location | None


@dataclass(frozen=True, slots=True)
class PastSignIn:
    at_ns: int
    device_id: str | None
    country: str | None
    network: str | None
    latitude: float | None
    longitude: float | None


@dataclass(frozen=True, slots=True)
class RaisedSignal:
    signal: TakeoverSignal
    score: int
    evidence: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Assessment:
    signals: tuple[RaisedSignal, ...]
    score: int
    response: TakeoverResponse


def assess(signals: Sequence[RaisedSignal], policy: TakeoverPolicy, *, base: int = 0) -> Assessment:
    score = base + sum(s.score for s in signals)
    return Assessment(tuple(signals), score, policy.response_for(score))


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine) between two points in degrees."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def sign_in_signals(
    facts: SignInFacts, history: Sequence[PastSignIn], policy: TakeoverPolicy
) -> list[RaisedSignal]:
    """The signals of a sign-in against the user's earlier ones (newest first).

    The first sign-in has nothing to differ from: it sets the baseline and raises nothing.
    An address the database cannot place (private, reserved, unknown) raises no location
    signal: absence of evidence is not evidence, and a sign-in from such an address is
    still compared by its device.
    """
    if not history:
        return []
    weights = policy.weights
    raised: list[RaisedSignal] = []
    if facts.device_id is not None and all(p.device_id != facts.device_id for p in history):
        raised.append(
            RaisedSignal(
                TakeoverSignal.NEW_DEVICE,
                weights[TakeoverSignal.NEW_DEVICE],
                {"device_id": facts.device_id, "known_devices": _count_known_devices(history)},
            )
        )
    where = facts.location
    if where is None:
        return raised
    countries = {p.country for p in history if p.country}
    if countries and where.country not in countries:
        raised.append(
            RaisedSignal(
                TakeoverSignal.NEW_COUNTRY,
                weights[TakeoverSignal.NEW_COUNTRY],
                {"country": where.country, "known_countries": sorted(countries)},
            )
        )
    networks = {p.network for p in history if p.network}
    if where.network and networks and where.network not in networks:
        raised.append(
            RaisedSignal(
                TakeoverSignal.NEW_NETWORK,
                weights[TakeoverSignal.NEW_NETWORK],
                {"network": where.network, "known_networks": len(networks)},
            )
        )
    travel = _impossible_travel(facts, history, policy)
    if travel is not None:
        raised.append(travel)
    return raised


def _count_known_devices(history: Sequence[PastSignIn]) -> int:
    return len({p.device_id for p in history if p.device_id})


def _impossible_travel(
    facts: SignInFacts, history: Sequence[PastSignIn], policy: TakeoverPolicy
) -> RaisedSignal | None:
    """The previous located sign-in, if reaching here from it needed more than the top speed."""
    here = facts.location
    if here is None or here.latitude is None or here.longitude is None:
        return None
    before = next((p for p in history if p.latitude is not None and p.longitude is not None), None)
    if before is None or before.latitude is None or before.longitude is None:
        return None
    km = distance_km(before.latitude, before.longitude, here.latitude, here.longitude)
    if km < policy.min_travel_km:
        return None
    elapsed_ns = max(facts.at_ns - before.at_ns, 0)
    # A sign-in at the same instant counts as one second later: no division by zero, and
    # still impossible at any real distance.
    hours = max(elapsed_ns, NS_PER_SECOND) / HOUR_NS
    speed = km / hours
    if speed <= policy.max_speed_kmh:
        return None
    return RaisedSignal(
        TakeoverSignal.IMPOSSIBLE_TRAVEL,
        policy.weights[TakeoverSignal.IMPOSSIBLE_TRAVEL],
        {
            "from_country": before.country,
            "to_country": here.country,
            "distance_km": round(km),
            "seconds": elapsed_ns // NS_PER_SECOND,
            "speed_kmh": round(speed),
            "max_speed_kmh": round(policy.max_speed_kmh),
        },
    )


@dataclass(frozen=True, slots=True)
class Holding:
    """One position of the user, with what was sold of it since the risky sign-in."""

    account_id: str
    symbol: str
    quantity_now: int
    sold_since: int
    offered_since: int  # still on the book for sale, placed since the sign-in


def unusual_trading(
    holdings: Sequence[Holding], policy: TakeoverPolicy, *, sign_in_ns: int, now_ns: int
) -> RaisedSignal | None:
    """Selling most of the positions soon after a risky sign-in (a takeover's liquidation
    before the withdrawal): shares sold or offered since the sign-in over shares held then."""
    if now_ns - sign_in_ns > policy.trading_window_ns:
        return None
    held_then = sum(h.quantity_now + h.sold_since for h in holdings)
    disposed = sum(h.sold_since + h.offered_since for h in holdings)
    if held_then <= 0 or disposed <= 0:
        return None
    fraction = disposed / held_then
    if fraction < policy.sold_fraction:
        return None
    return RaisedSignal(
        TakeoverSignal.UNUSUAL_TRADING,
        policy.weights[TakeoverSignal.UNUSUAL_TRADING],
        {
            # Ledger events hold no binary floats: decimals, rounded for the reader.
            "sold_fraction": Decimal(str(round(fraction, 4))),
            "shares_held": held_then,
            "shares_sold_or_offered": disposed,
            "symbols": sorted({h.symbol for h in holdings if h.sold_since or h.offered_since}),
            "seconds_after_sign_in": (now_ns - sign_in_ns) // NS_PER_SECOND,
        },
    )


def security_change_signal(
    changed_ns: int | None, policy: TakeoverPolicy, *, now_ns: int
) -> RaisedSignal | None:
    """A withdrawal asked for soon after a password, email, phone or second-factor change."""
    if changed_ns is None or now_ns - changed_ns > policy.security_change_window_ns:
        return None
    return RaisedSignal(
        TakeoverSignal.SECURITY_CHANGE_WITHDRAWAL,
        policy.weights[TakeoverSignal.SECURITY_CHANGE_WITHDRAWAL],
        {"seconds_since_change": (now_ns - changed_ns) // NS_PER_SECOND},
    )
