"""Market events as the detectors see them, read from the trading core's ledger events.

The trading core records every order placed, closed (cancelled, replaced, expired) and
every execution as a ledger event in the transaction that made it (docs/trading.md). The
detectors read those documents in chain order; this module turns one into a small typed
value, or None when it is not a market event. Pure: no I/O.

Which party owns an account (its beneficial owner: the user, or a group of users and
accounts that compliance linked) is not in the event; the caller supplies `owner_of`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

ORDER_PLACED = "trading:order:placed"
ORDER_CANCELLED = "trading:order:cancelled"
ORDER_REPLACED = "trading:order:replaced"
ORDER_EXPIRED = "trading:order:expired"
EXECUTION_CREATED = "trading:execution:created"
# The firm put a symbol on its restricted list (it holds non-public information about it):
# what the front-running model (MAN-4) judges earlier trading against.
RESTRICTED_ADDED = "trading:restricted_list:added"

# Every ledger event type the detectors read (orders, cancels, executions, and the
# restricted-list additions).
MARKET_EVENT_TYPES = (
    ORDER_PLACED,
    ORDER_CANCELLED,
    ORDER_REPLACED,
    ORDER_EXPIRED,
    EXECUTION_CREATED,
    RESTRICTED_ADDED,
)
# A cancel the customer chose (a cancel request, or a cancel-replace), as opposed to one the
# venue or the firm made (an IOC remainder, self-trade prevention, a halt, expiry).
VOLUNTARY_REASONS = frozenset({"user", "replaced"})


class SurveillanceEvent(StrEnum):
    """Ledger event types of the surveillance domain (`source:subject:action`)."""

    ALERT_RAISED = "surveillance:alert:raised"
    # A later finding of the same type, owner and symbol folded into a live alert.
    ALERT_EXTENDED = "surveillance:alert:extended"
    # Compliance set an alert's own status (outside a case), with a reason.
    ALERT_DISMISSED = "surveillance:alert:dismissed"
    ALERT_ESCALATED = "surveillance:alert:escalated"
    ALERT_REOPENED = "surveillance:alert:reopened"
    LINK_ADDED = "surveillance:link:added"
    LINK_REMOVED = "surveillance:link:removed"
    # A derived link compliance found to be a false positive: it joins nothing from then on.
    LINK_DISMISSED = "surveillance:link:dismissed"
    # Cases (MAN-5): each is also a line of the case's timeline.
    CASE_OPENED = "surveillance:case:opened"
    CASE_ALERT_ADDED = "surveillance:case:alert_added"
    CASE_ALERT_REMOVED = "surveillance:case:alert_removed"
    CASE_ASSIGNED = "surveillance:case:assigned"
    CASE_NOTE_ADDED = "surveillance:case:note_added"
    CASE_ESCALATED = "surveillance:case:escalated"
    CASE_CLOSED = "surveillance:case:closed"
    CASE_REPORT_FILED = "surveillance:case:report_filed"
    REPORT_DRAFTED = "surveillance:report:drafted"
    # Automatic actions (MAN-5) and the policy that asks for them.
    ACTION_APPLIED = "surveillance:action:applied"
    ACTION_SKIPPED = "surveillance:action:skipped"
    ACTION_REVERSED = "surveillance:action:reversed"
    POLICY_CHANGED = "surveillance:policy:changed"
    # The tables disagree with these events (surveillance/verify.py).
    VERIFY_MISMATCH = "surveillance:verify:mismatch"


def own_account(account_id: str) -> str:
    """The default beneficial owner: the account itself."""
    return account_id


@dataclass(frozen=True, slots=True)
class OrderPlaced:
    seq: int
    ts_ns: int
    order_id: str
    account_id: str
    owner: str
    symbol: str
    buy: bool
    quantity: int
    # None for a market order (it never rests on the book).
    limit_price: Decimal | None
    # The order this one replaced (a cancel-replace), if any.
    replaces: str | None = None


@dataclass(frozen=True, slots=True)
class OrderClosed:
    """An order (or, for self-trade prevention, part of it) taken off the book unfilled."""

    seq: int
    ts_ns: int
    order_id: str
    account_id: str
    owner: str
    symbol: str
    buy: bool
    # The quantity that stopped resting.
    quantity: int
    reason: str
    # True when the order is gone; False when only part of it was cancelled.
    final: bool

    @property
    def voluntary(self) -> bool:
        return self.reason in VOLUNTARY_REASONS


@dataclass(frozen=True, slots=True)
class Fill:
    """One side of one execution: an internal match between two customers is two fills
    with the same `match_id`; a trade with the street is one."""

    seq: int
    ts_ns: int
    execution_id: str
    order_id: str
    account_id: str
    owner: str
    symbol: str
    buy: bool
    quantity: int
    price: Decimal
    maker: bool
    internal: bool
    match_id: str


@dataclass(frozen=True, slots=True)
class RestrictedListed:
    """A symbol added to the firm's restricted list."""

    seq: int
    ts_ns: int
    symbol: str


MarketEvent = OrderPlaced | OrderClosed | Fill | RestrictedListed


def event_account(document: Mapping[str, Any]) -> str | None:
    """The account a trading event is about (its subject), without parsing the rest."""
    subject = document.get("subject")
    if isinstance(subject, dict) and subject.get("kind") == "account":
        account = subject.get("id")
        return account if isinstance(account, str) else None
    return None


def _price(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        price = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise ValueError("price is not a decimal string") from None
    if not price.is_finite() or price <= 0:
        raise ValueError("price must be a positive decimal")
    return price


def _order_ref(value: Any) -> str | None:
    return str(value) if value is not None and value != "" else None


def _quantity(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("quantity must be a whole number")
    return value


def parse_market_event(
    seq: int, document: Mapping[str, Any], owner_of: Callable[[str], str] = own_account
) -> MarketEvent | None:
    """The market event a ledger document records, or None when it records something else.

    A trading document that lacks what its type promises raises ValueError: the caller
    decides whether to skip it (and count it) or stop.
    """
    kind = document.get("type")
    if kind not in MARKET_EVENT_TYPES:
        return None
    if kind == RESTRICTED_ADDED:
        return _restricted(seq, document)
    account = event_account(document)
    data = document.get("data")
    if account is None or not isinstance(data, dict):
        raise ValueError("a trading event names its account and carries data")
    try:
        ts = int(document["ts"])
        symbol = data["symbol"]
        side = data["side"]
        if not isinstance(symbol, str) or side not in ("buy", "sell", "sell_short"):
            raise ValueError("symbol and side are required")
        buy = side == "buy"
        owner = owner_of(account)
        if kind == EXECUTION_CREATED:
            price = _price(data["price"])
            if price is None:
                raise ValueError("an execution has a price")
            return Fill(
                seq=seq,
                ts_ns=ts,
                execution_id=str(data["execution_id"]),
                order_id=str(data["order_id"]),
                account_id=account,
                owner=owner,
                symbol=symbol,
                buy=buy,
                quantity=_quantity(data["quantity"]),
                price=price,
                maker=data.get("liquidity") == "maker",
                internal=data.get("contra") == "internal",
                match_id=str(data.get("match_id") or data["execution_id"]),
            )
        order_id = str(data["order_id"])
        if kind == ORDER_PLACED:
            return OrderPlaced(
                seq=seq,
                ts_ns=ts,
                order_id=order_id,
                account_id=account,
                owner=owner,
                symbol=symbol,
                buy=buy,
                quantity=_quantity(data["quantity"]),
                limit_price=_price(data.get("limit_price")),
                replaces=_order_ref(data.get("replaces_order_id")),
            )
        if "cancelled_quantity" in data:
            # Self-trade prevention by decrement: part of a resting order was cancelled.
            quantity, final = _quantity(data["cancelled_quantity"]), False
        else:
            quantity, final = _quantity(data.get("unfilled", 0)), True
        return OrderClosed(
            seq=seq,
            ts_ns=ts,
            order_id=order_id,
            account_id=account,
            owner=owner,
            symbol=symbol,
            buy=buy,
            quantity=quantity,
            reason=str(data.get("reason") or ("expired" if kind == ORDER_EXPIRED else "")),
            final=final,
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{kind} event lacks {exc}") from None


def _restricted(seq: int, document: Mapping[str, Any]) -> RestrictedListed:
    data = document.get("data")
    symbol = data.get("symbol") if isinstance(data, dict) else None
    if not isinstance(symbol, str) or not symbol:
        raise ValueError("a restricted-list event names its symbol")
    try:
        ts = int(document["ts"])
    except (KeyError, TypeError, ValueError):
        raise ValueError("a restricted-list event has a time") from None
    return RestrictedListed(seq=seq, ts_ns=ts, symbol=symbol)
