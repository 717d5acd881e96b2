"""Anomaly rules over staff access events (IAC-4: monitor anomalies, alert on suspicious
activity).

Pure: ledger event documents in, observations out; observations in, findings out. The
detector (`access/alerts_detector.py`) reads the ledger in sequence order, looks up who is
staff, and hands each staff member's recent observations to the rules here. No clock, no
I/O: every rule is a function of the observations and the thresholds it is given.

What counts as a customer (rule MANY_CUSTOMERS): a record reference `user:<id>` or
`account:<id>` that a staff member touched, taken from
- an *allowed* permission check whose route named it in a path or query parameter
  `user_id`, `customer_id` (a user) or `account_id` (an account): the guard records those
  parameters for staff requests;
- the subject of any other event a staff member is the actor of (an account opened,
  adjusted or closed; a customer profile unmasked), when that subject is a user or an account;
- the user ids a staff listing names in its `customers` (a page of trading accounts).
A user id that belongs to a staff member (or to the actor) is not a customer. An account and
its owner count as two records: the ledger does not say who owns an account.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.identity.events import IdentityEvent
from tradeguard.identity.networks import network_prefix

# The guard's event type (identity/guard.py PERMISSION_CHECKED; a unit test keeps them equal).
PERMISSION_CHECKED = "access:permission:checked"
# A just-in-time grant used for a check (the grants module emits it; see GrantUse).
GRANT_USED = "access:grant:used"
# Party kinds under which a staff member acts: "user" for requests and sign-ins, "staff" for
# staff actions recorded by the domains (trading's admin routes).
STAFF_ACTOR_KINDS = frozenset({"user", "staff"})
# Failed attempts on a staff account are not access by that staff member: a stranger guessing
# a staff password at 3 a.m. must not make the owner's alerts (and must not teach the
# new-network rule the stranger's network). They are audited and throttled by identity.
NOT_ACCESS = frozenset(
    {
        IdentityEvent.LOGIN_FAILED,
        IdentityEvent.LOGIN_THROTTLED,
        IdentityEvent.LOGIN_MFA_REQUIRED,
        IdentityEvent.MFA_FAILED,
        IdentityEvent.ACCOUNT_LOCKED,
        IdentityEvent.QUOTA_EXCEEDED,
        IdentityEvent.IP_REFUSED,
    }
)
# Request parameters that name a customer record, and the kind of record each names.
CUSTOMER_PARAMETERS: Mapping[str, str] = {
    "user_id": "user",
    "customer_id": "user",
    "account_id": "account",
}
CUSTOMER_SUBJECT_KINDS = frozenset({"user", "account"})
# Request methods that change nothing (a scoped grant's read naming no customer is unjudged).
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# An alert keeps at most this many evidence sequence numbers (the newest); the rest of the
# window is one ledger query away (by staff member and time).
MAX_EVIDENCE = 50
IPV4_NETWORK_BITS = 24
IPV6_NETWORK_BITS = 64
MINUTES_PER_DAY = 24 * 60
NS_PER_MINUTE = 60 * NS_PER_SECOND
# A working week has at least one working day, so a week and a day back always finds one.
_SEARCH_DAYS = 8


class AnomalyRule(StrEnum):
    MANY_CUSTOMERS = "many_customers"
    OFF_HOURS = "off_hours"
    NEW_NETWORK = "new_network"
    REPEATED_DENIALS = "repeated_denials"
    GRANT_OUT_OF_SCOPE = "grant_out_of_scope"


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class AlertStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    CLOSED = "closed"


class AccessAlertEvent(StrEnum):
    RAISED = "access:alert:raised"
    ACKNOWLEDGED = "access:alert:acknowledged"
    CLOSED = "access:alert:closed"
    SELF_REVIEW_REFUSED = "access:alert:self_review_refused"


RULE_SEVERITY: Mapping[AnomalyRule, Severity] = {
    # Bulk reading of customers is the shape of data theft by an insider.
    AnomalyRule.MANY_CUSTOMERS: Severity.HIGH,
    AnomalyRule.OFF_HOURS: Severity.MEDIUM,
    AnomalyRule.NEW_NETWORK: Severity.MEDIUM,
    # Probing for permissions one does not hold (or a stolen session feeling its way).
    AnomalyRule.REPEATED_DENIALS: Severity.HIGH,
    AnomalyRule.GRANT_OUT_OF_SCOPE: Severity.HIGH,
}

RULE_DESCRIPTIONS: Mapping[AnomalyRule, str] = {
    AnomalyRule.MANY_CUSTOMERS: "one staff account touched more distinct customers than "
    "allowed within the window",
    AnomalyRule.OFF_HOURS: "staff access outside the configured working hours",
    AnomalyRule.NEW_NETWORK: "staff access from a network (IPv4 /24, IPv6 /64) not seen for "
    "that staff member within the look-back period",
    AnomalyRule.REPEATED_DENIALS: "more denied permission checks than allowed within the window",
    AnomalyRule.GRANT_OUT_OF_SCOPE: "a just-in-time grant used outside the scope it was "
    "granted for",
}


class ObservationKind(StrEnum):
    CHECK = "check"
    SIGN_IN = "sign_in"
    ACTION = "action"
    GRANT_USE = "grant_use"


@dataclass(frozen=True, slots=True)
class GrantUse:
    """A use of a just-in-time grant: the grant, its stated scope, and what the use named.

    Two sources:
    - a permission check allowed only through a grant whose customer scope is set: the guard
      records `grant_id` and `grant_scope` (user ids) with the check's `params`;
    - an `access:grant:used` event with data `{"grant_id", "permission",
      "granted_permissions": [...], "customer"?: "user:<id>" | "account:<id>",
      "scope_customers"?: [...]}` (an event without them is not judged).
    """

    grant_id: str
    permission: str
    granted_permissions: frozenset[str]
    customer: str | None = None
    scope_customers: frozenset[str] = frozenset()
    # Every customer record the use named (`user:<id>`, `account:<id>`), besides `customer`.
    customers: frozenset[str] = frozenset()
    # A state-changing request whose parameters name no customer (its customer is in the body
    # or behind another record's id): nothing in the event shows it is inside the scope.
    unnamed_change: bool = False

    @property
    def named(self) -> frozenset[str]:
        return self.customers | {self.customer} if self.customer else self.customers


@dataclass(frozen=True, slots=True)
class Observation:
    """One staff access event, reduced to what the rules look at."""

    seq: int
    at_ns: int
    staff_id: str
    kind: ObservationKind
    allowed: bool = True
    customers: frozenset[str] = frozenset()
    # An opaque key of the client network (see `network_of`), never the address itself.
    network: str | None = None
    grant: GrantUse | None = None


@dataclass(frozen=True, slots=True)
class WorkingHours:
    """Local working hours: [start, end) on the given weekdays (0 = Monday), in one zone."""

    zone: ZoneInfo
    start_minute: int
    end_minute: int
    weekdays: frozenset[int]

    def __post_init__(self) -> None:
        if not 0 <= self.start_minute < self.end_minute <= MINUTES_PER_DAY:
            raise ValueError("working hours need 00:00 <= start < end <= 24:00")
        if not self.weekdays or not self.weekdays <= frozenset(range(7)):
            raise ValueError("working days must be a non-empty set of weekdays 0..6")

    def contains(self, at_ns: int) -> bool:
        """Whether an instant falls inside working hours, to the nanosecond."""
        seconds, fraction = divmod(at_ns, NS_PER_SECOND)
        local = datetime.fromtimestamp(seconds, tz=self.zone)
        if local.weekday() not in self.weekdays:
            return False
        of_day = (local.hour * 3600 + local.minute * 60 + local.second) * NS_PER_SECOND + fraction
        return self.start_minute * NS_PER_MINUTE <= of_day < self.end_minute * NS_PER_MINUTE

    def _local_instant(self, day: date, minute: int) -> int:
        moment = datetime.combine(day, time(0), tzinfo=self.zone) + timedelta(minutes=minute)
        return int(moment.timestamp()) * NS_PER_SECOND

    def off_hours_began(self, at_ns: int) -> int:
        """When the off-hours stretch holding `at_ns` began: the end of the last working
        period at or before it (its identity, so one stretch raises one alert)."""
        day = datetime.fromtimestamp(at_ns // NS_PER_SECOND, tz=self.zone).date()
        for back in range(_SEARCH_DAYS):
            candidate = day - timedelta(days=back)
            if candidate.weekday() not in self.weekdays:
                continue
            end = self._local_instant(candidate, self.end_minute)
            if end <= at_ns:
                return end
        return 0

    def describe(self) -> str:
        names = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
        days = ",".join(names[d] for d in sorted(self.weekdays))
        start = f"{self.start_minute // 60:02d}:{self.start_minute % 60:02d}"
        end = f"{self.end_minute // 60:02d}:{self.end_minute % 60:02d}"
        return f"{days} {start}-{end} {self.zone.key}"


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The limits each rule enforces; an alert is raised one step *past* each limit."""

    max_customers: int
    customers_window_ns: int
    max_denials: int
    denials_window_ns: int
    new_network_lookback_ns: int
    hours: WorkingHours

    def __post_init__(self) -> None:
        if self.max_customers < 1 or self.max_denials < 1:
            raise ValueError("limits must be at least 1")
        if min(self.customers_window_ns, self.denials_window_ns, self.new_network_lookback_ns) < 1:
            raise ValueError("windows must be positive")


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule's verdict on one observation; the detector turns it into an alert (or adds it
    to the open alert it duplicates)."""

    rule: AnomalyRule
    staff_id: str
    # Which alert this finding belongs to, with the rule and staff member: "" for windowed
    # counts, the off-hours stretch, the network key, the grant id.
    dedup_key: str
    window_start_ns: int
    window_end_ns: int
    evidence: tuple[int, ...]
    # Counts and limits only: no customer, address or name (the evidence points to those).
    summary: str
    # How long after a live alert's window a finding still belongs to it: a rule window for
    # the counting rules; None (as long as the alert is open) when the key itself is the
    # window (an off-hours stretch, a network, a grant).
    fold_within_ns: int | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def severity(self) -> Severity:
        return RULE_SEVERITY[self.rule]


# Observations -------------------------------------------------------------------------------


def network_of(ip: object) -> str | None:
    """The client network of an address: IPv4 /24 or IPv6 /64 (an IPv4-mapped IPv6 address
    counts as IPv4); None when it is not an address."""
    if not isinstance(ip, str):
        return None
    return network_prefix(ip, ipv4_prefix=IPV4_NETWORK_BITS, ipv6_prefix=IPV6_NETWORK_BITS)


def _party(document: Mapping[str, Any], key: str) -> tuple[str, str] | None:
    party = document.get(key)
    if not isinstance(party, Mapping):
        return None
    kind, ident = party.get("kind"), party.get("id")
    if not isinstance(kind, str) or not isinstance(ident, str):
        return None
    return kind, ident


def _parameters(data: Mapping[str, Any]) -> Mapping[str, Any]:
    params = data.get("params")
    return params if isinstance(params, Mapping) else {}


def referenced_user_ids(document: Mapping[str, Any]) -> set[str]:
    """User ids an event names (actor, subject, customer parameters): whose roles the
    detector must know to read it."""
    found: set[str] = set()
    for key in ("actor", "subject"):
        party = _party(document, key)
        if party is not None and party[0] in STAFF_ACTOR_KINDS:
            found.add(party[1])
    data = document.get("data")
    if isinstance(data, Mapping):
        for name, value in _parameters(data).items():
            if CUSTOMER_PARAMETERS.get(name) == "user" and isinstance(value, str):
                found.add(value)
    return found


def _customer(kind: str, ident: str, *, actor: str, staff: frozenset[str]) -> str | None:
    if kind == "user" and (ident == actor or ident in staff):
        return None
    return f"{kind}:{ident}"


def _customers_of(
    document: Mapping[str, Any],
    data: Mapping[str, Any],
    *,
    event_type: str,
    allowed: bool,
    actor: str,
    staff: frozenset[str],
) -> frozenset[str]:
    found: set[str | None] = set()
    if event_type == PERMISSION_CHECKED:
        # A denied check read nothing; an allowed one is for the record its route names.
        if allowed:
            for name, value in _parameters(data).items():
                kind = CUSTOMER_PARAMETERS.get(name)
                if kind is not None and isinstance(value, str) and value:
                    found.add(_customer(kind, value, actor=actor, staff=staff))
    elif not event_type.startswith("identity:"):
        # Identity events are about the staff member's own account, never a customer's.
        subject = _party(document, "subject")
        if subject is not None and subject[0] in CUSTOMER_SUBJECT_KINDS:
            found.add(_customer(subject[0], subject[1], actor=actor, staff=staff))
        # A staff listing names the customers it showed (e.g. trading:account:listed).
        for user_id in _strings(data.get("customers")):
            found.add(_customer("user", user_id, actor=actor, staff=staff))
    found.discard(None)
    return frozenset(c for c in found if c is not None)


def _strings(value: object) -> frozenset[str]:
    if not isinstance(value, list):
        return frozenset()
    return frozenset(v for v in value if isinstance(v, str))


def grant_use_of(data: Mapping[str, Any]) -> GrantUse | None:
    grant_id, permission = data.get("grant_id"), data.get("permission")
    if not isinstance(grant_id, str) or not isinstance(permission, str):
        return None
    if not isinstance(data.get("granted_permissions"), list):
        return None
    customer = data.get("customer")
    return GrantUse(
        grant_id=grant_id,
        permission=permission,
        granted_permissions=_strings(data.get("granted_permissions")),
        customer=customer if isinstance(customer, str) else None,
        scope_customers=_strings(data.get("scope_customers")),
    )


def grant_check_of(data: Mapping[str, Any]) -> GrantUse | None:
    """The grant use an allowed permission check records: only a check that passed through a
    grant with a customer scope (`grant_id` and `grant_scope`) is judged for its scope.

    The records its route named are the use's customers, each as the request gave it: a
    `user_id` or `customer_id` is a user; an `account_id` is an account, which the scope (user
    ids) never lists: the ledger does not say who owns an account, so a scoped grant used on
    a route that names an account is out of scope.

    A state-changing request (any method but GET, HEAD, OPTIONS; a check without a method
    counts as one) that names no customer in its parameters names its customer only
    indirectly (a factor reset by its id, a halt's `target` or an account's `user_id` in the
    body): out of scope too, as it cannot be shown inside. A read naming nobody (a list, a
    search) stays unjudged.
    """
    grant_id, permission = data.get("grant_id"), data.get("permission")
    scope = _strings(data.get("grant_scope"))
    if not isinstance(grant_id, str) or not isinstance(permission, str) or not scope:
        return None
    named = {
        f"{kind}:{value}"
        for name, value in _parameters(data).items()
        if (kind := CUSTOMER_PARAMETERS.get(name)) is not None and isinstance(value, str) and value
    }
    method = data.get("method")
    changes = not (isinstance(method, str) and method.upper() in READ_METHODS)
    return GrantUse(
        grant_id=grant_id,
        permission=permission,
        # The guard allowed the check through this grant: it carries the permission.
        granted_permissions=frozenset({permission}),
        scope_customers=frozenset(f"user:{c}" for c in scope),
        customers=frozenset(named),
        unnamed_change=changes and not named,
    )


def observe(
    seq: int,
    document: Mapping[str, Any],
    *,
    staff: frozenset[str],
    network_key: Callable[[str], str] = str,
) -> Observation | None:
    """The observation a ledger event makes of a staff member, or None when it is not staff
    access (another actor, a failed attempt on a staff account, a malformed document)."""
    actor = _party(document, "actor")
    event_type = document.get("type")
    if actor is None or actor[0] not in STAFF_ACTOR_KINDS or actor[1] not in staff:
        return None
    if not isinstance(event_type, str) or event_type in NOT_ACCESS:
        return None
    try:
        at_ns = int(document["ts"])
    except (KeyError, TypeError, ValueError):
        return None
    data = document.get("data")
    if not isinstance(data, Mapping):
        data = {}
    kind = ObservationKind.ACTION
    allowed = True
    grant = None
    if event_type == PERMISSION_CHECKED:
        kind = ObservationKind.CHECK
        allowed = data.get("allowed") is True
        grant = grant_check_of(data) if allowed else None
    elif event_type == IdentityEvent.LOGIN_SUCCEEDED:
        kind = ObservationKind.SIGN_IN
    elif event_type == GRANT_USED:
        kind = ObservationKind.GRANT_USE
        grant = grant_use_of(data)
    # The client address is personal data: the ledger's reader opens it into `personal`
    # (an erased or unreadable one is no address, so no network).
    personal = document.get("personal")
    network = network_of(personal.get("ip") if isinstance(personal, Mapping) else None)
    return Observation(
        seq=seq,
        at_ns=at_ns,
        staff_id=actor[1],
        kind=kind,
        allowed=allowed,
        customers=_customers_of(
            document, data, event_type=event_type, allowed=allowed, actor=actor[1], staff=staff
        ),
        network=network_key(network) if network is not None else None,
        grant=grant,
    )


# Rules: each looks at `history[-1]` (the observation being judged) against the staff member's
# earlier observations in `history` (oldest first; the rule keeps its own window). -----------


def _latest_evidence(seqs: Iterable[int]) -> tuple[int, ...]:
    return tuple(sorted(set(seqs))[-MAX_EVIDENCE:])


def _since(history: Sequence[Observation], start_ns: int) -> list[Observation]:
    """Observations at or after `start_ns`: a window includes an event exactly its length old."""
    return [o for o in history if o.at_ns >= start_ns]


def many_customers(history: Sequence[Observation], limits: Thresholds) -> Finding | None:
    """More distinct customers than `max_customers` touched within the window."""
    latest = history[-1]
    if not latest.customers:
        return None
    first_touch: dict[str, Observation] = {}
    for seen in _since(history, latest.at_ns - limits.customers_window_ns):
        for customer in seen.customers:
            first_touch.setdefault(customer, seen)
    if len(first_touch) <= limits.max_customers:
        return None
    window = limits.customers_window_ns // NS_PER_SECOND
    return Finding(
        rule=AnomalyRule.MANY_CUSTOMERS,
        staff_id=latest.staff_id,
        dedup_key="",
        window_start_ns=min(o.at_ns for o in first_touch.values()),
        window_end_ns=latest.at_ns,
        evidence=_latest_evidence([*(o.seq for o in first_touch.values()), latest.seq]),
        summary=(
            f"{len(first_touch)} distinct customer records within {window} s "
            f"(limit {limits.max_customers})"
        ),
        fold_within_ns=limits.customers_window_ns,
        details={"customers": len(first_touch), "limit": limits.max_customers},
    )


def repeated_denials(history: Sequence[Observation], limits: Thresholds) -> Finding | None:
    """More denied permission checks than `max_denials` within the window."""
    latest = history[-1]
    if latest.kind is not ObservationKind.CHECK or latest.allowed:
        return None
    denied = [
        o
        for o in _since(history, latest.at_ns - limits.denials_window_ns)
        if o.kind is ObservationKind.CHECK and not o.allowed
    ]
    if len(denied) <= limits.max_denials:
        return None
    window = limits.denials_window_ns // NS_PER_SECOND
    return Finding(
        rule=AnomalyRule.REPEATED_DENIALS,
        staff_id=latest.staff_id,
        dedup_key="",
        window_start_ns=min(o.at_ns for o in denied),
        window_end_ns=latest.at_ns,
        evidence=_latest_evidence(o.seq for o in denied),
        summary=(
            f"{len(denied)} denied permission checks within {window} s (limit {limits.max_denials})"
        ),
        fold_within_ns=limits.denials_window_ns,
        details={"denials": len(denied), "limit": limits.max_denials},
    )


def off_hours(latest: Observation, hours: WorkingHours) -> Finding | None:
    """Any staff access outside working hours; one alert per off-hours stretch."""
    if hours.contains(latest.at_ns):
        return None
    return Finding(
        rule=AnomalyRule.OFF_HOURS,
        staff_id=latest.staff_id,
        dedup_key=str(hours.off_hours_began(latest.at_ns)),
        window_start_ns=latest.at_ns,
        window_end_ns=latest.at_ns,
        evidence=(latest.seq,),
        summary=f"{latest.kind.value.replace('_', '-')} outside working hours ({hours.describe()})",
        details={"kind": latest.kind.value},
    )


def new_network(latest: Observation, seen: Mapping[str, int], limits: Thresholds) -> Finding | None:
    """Access from a network not seen for this staff member within the look-back period.

    `seen` maps the staff member's network keys to when each was last seen. With no history
    at all the first network is the baseline, not an anomaly: every new colleague's first
    sign-in would otherwise alert.
    """
    if latest.network is None or not seen:
        return None
    last = seen.get(latest.network)
    if last is not None and latest.at_ns - last <= limits.new_network_lookback_ns:
        return None
    days = limits.new_network_lookback_ns // (86_400 * NS_PER_SECOND)
    return Finding(
        rule=AnomalyRule.NEW_NETWORK,
        staff_id=latest.staff_id,
        dedup_key=latest.network,
        window_start_ns=latest.at_ns,
        window_end_ns=latest.at_ns,
        evidence=(latest.seq,),
        summary=(
            f"{latest.kind.value.replace('_', '-')} from a network not seen for this staff "
            f"member in {days} days" + ("" if last is None else " (seen before that)")
        ),
        details={"previously_seen": last is not None},
    )


def grant_out_of_scope(latest: Observation) -> Finding | None:
    """A grant used for a permission it does not carry, or for a customer outside the
    customers it was granted for (when it names any). A read that names no customer record (a
    search, a list) is not judged for its customers: there is nothing in the event to judge.
    A change that names none is (see `grant_check_of`): it may act on anyone."""
    grant = latest.grant
    if grant is None:
        return None
    wrong_permission = grant.permission not in grant.granted_permissions
    wrong_customer = bool(grant.scope_customers) and (
        bool(grant.named - grant.scope_customers) or grant.unnamed_change
    )
    if not (wrong_permission or wrong_customer):
        return None
    if wrong_permission:
        what = "a permission"
    elif grant.named - grant.scope_customers:
        what = "a customer"
    else:
        what = "a change that names no customer"
    return Finding(
        rule=AnomalyRule.GRANT_OUT_OF_SCOPE,
        staff_id=latest.staff_id,
        dedup_key=grant.grant_id,
        window_start_ns=latest.at_ns,
        window_end_ns=latest.at_ns,
        evidence=(latest.seq,),
        summary=f"a just-in-time grant was used for {what} outside its stated scope",
        details={"grant_id": grant.grant_id},
    )


def evaluate(
    history: Sequence[Observation], seen_networks: Mapping[str, int], limits: Thresholds
) -> list[Finding]:
    """Every rule's finding on `history[-1]`."""
    latest = history[-1]
    findings = [
        many_customers(history, limits),
        repeated_denials(history, limits),
        off_hours(latest, limits.hours),
        new_network(latest, seen_networks, limits),
        grant_out_of_scope(latest),
    ]
    return [f for f in findings if f is not None]
