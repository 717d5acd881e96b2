"""The trades behind a finding: every order and execution of the stream within the lookback,
as a compliance officer reads them in an alert's evidence (side, price, quantity, time,
status; for an execution its counterparty). Pure: no I/O.

The tape keeps what the market events said, so the evidence is the state at the finding
(an order cancelled later still shows "working" in an alert raised before the cancel).
Like the book, it forgets what is older than the horizon, so a restart that replays the
lookback rebuilds it exactly (surveillance/engine.py).

A counterparty is "street" for a trade with the street, or the other customer's account id
for an internal match: the stream (surveillance/consumer.py) replaces that id with the
account's masked number before the alert is stored (`mask_counterparties`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from tradeguard.core.clock import ns_to_iso
from tradeguard.surveillance.domain import Finding
from tradeguard.surveillance.events import Fill, OrderClosed, OrderPlaced

# An alert shows at most this many orders and as many executions (the latest), as it keeps
# at most that many ids (service.MAX_ALERT_IDS).
MAX_DETAILS = 200
STREET = "street"
UNKNOWN = "unknown"
# An internal match whose other side the stream has not read yet (the trading core records
# the taker's fill first, and a finding can be complete at it): the stream resolves it from
# the fills that follow (`resolve_counterparties`).
INTERNAL = "internal"
_NOT_AN_ACCOUNT = frozenset({STREET, UNKNOWN, INTERNAL})
# Evidence keys of the details.
ORDERS_KEY = "orders"
EXECUTIONS_KEY = "executions"


class _Order:
    __slots__ = ("event", "filled", "placed_ns", "status")

    def __init__(self, event: OrderPlaced, placed_ns: int) -> None:
        self.event = event
        self.placed_ns = placed_ns
        self.filled = 0
        self.status = "working"

    def view(self) -> dict[str, Any]:
        event = self.event
        return {
            "order_id": event.order_id,
            "account_id": event.account_id,
            "side": "buy" if event.buy else "sell",
            "price": str(event.limit_price) if event.limit_price is not None else "market",
            "quantity": event.quantity,
            "filled_quantity": self.filled,
            "time": ns_to_iso(self.placed_ns),
            "status": self.status,
        }


def _fill_view(fill: Fill, t: int) -> dict[str, Any]:
    return {
        "execution_id": fill.execution_id,
        "order_id": fill.order_id,
        "account_id": fill.account_id,
        "side": "buy" if fill.buy else "sell",
        "price": str(fill.price),
        "quantity": fill.quantity,
        "time": ns_to_iso(fill.ts_ns or t),
        "liquidity": "maker" if fill.maker else "taker",
        "match_id": fill.match_id,
    }


class TradeTape:
    """Orders and executions of the last `horizon_ns`, by id. Kept as the events themselves
    (the stream's hot path); shown as dicts only when a finding asks."""

    def __init__(self, horizon_ns: int) -> None:
        self.horizon_ns = horizon_ns
        self._orders: dict[str, _Order] = {}
        self._fills: dict[str, tuple[Fill, int]] = {}
        # The fills on each side of an internal match (match id -> fills).
        self._matches: dict[str, list[Fill]] = {}
        # (time, order or fill) in arrival order, to forget by.
        self._arrivals: deque[tuple[int, OrderPlaced | Fill]] = deque()

    def placed(self, event: OrderPlaced, t: int) -> None:
        self._orders[event.order_id] = _Order(event, event.ts_ns or t)
        self._arrivals.append((t, event))

    def closed(self, event: OrderClosed) -> None:
        if not event.final:
            return
        order = self._orders.get(event.order_id)
        if order is None:
            return
        reason = event.reason
        if reason in {"replaced", "expired"}:
            order.status = reason
        elif reason in ("", "user"):
            order.status = "cancelled"
        else:
            # Cancelled by the venue or the firm: say why (ioc, self_trade, halt, ...).
            order.status = f"cancelled ({reason})"

    def filled(self, fill: Fill, t: int) -> None:
        order = self._orders.get(fill.order_id)
        if order is not None:
            order.filled += fill.quantity
            order.status = "filled" if order.filled >= order.event.quantity else "partially_filled"
        self._fills[fill.execution_id] = (fill, t)
        if fill.internal:
            self._matches.setdefault(fill.match_id, []).append(fill)
        self._arrivals.append((t, fill))

    def forget_before(self, horizon_ns: int) -> None:
        arrivals = self._arrivals
        while arrivals and arrivals[0][0] < horizon_ns:
            _, item = arrivals.popleft()
            if type(item) is OrderPlaced:
                self._orders.pop(item.order_id, None)
                continue
            fill: Fill = item  # type: ignore[assignment]
            self._fills.pop(fill.execution_id, None)
            if fill.internal:
                sides = self._matches.get(fill.match_id)
                if sides is not None:
                    sides[:] = [f for f in sides if f is not fill]
                    if not sides:
                        del self._matches[fill.match_id]

    def _counterparty(self, fill: Fill) -> str:
        if not fill.internal:
            return STREET
        for other in self._matches.get(fill.match_id, ()):
            if other.execution_id != fill.execution_id:
                return other.account_id
        return INTERNAL

    def details(
        self, order_ids: Sequence[str], execution_ids: Sequence[str]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The orders and executions named, as they stand now (an id the tape no longer
        holds is shown by its id alone)."""
        orders = []
        for order_id in list(dict.fromkeys(order_ids))[-MAX_DETAILS:]:
            order = self._orders.get(order_id)
            orders.append(order.view() if order is not None else {"order_id": order_id})
        executions = []
        for execution_id in list(dict.fromkeys(execution_ids))[-MAX_DETAILS:]:
            found = self._fills.get(execution_id)
            if found is None:
                executions.append({"execution_id": execution_id})
                continue
            row = _fill_view(*found)
            row["counterparty"] = self._counterparty(found[0])
            executions.append(row)
        return orders, executions

    def with_details(self, finding: Finding) -> Finding:
        """The finding, its evidence carrying its orders' and executions' details."""
        orders, executions = self.details(finding.order_ids, finding.execution_ids)
        evidence = {**finding.evidence, ORDERS_KEY: orders, EXECUTIONS_KEY: executions}
        return replace(finding, evidence=evidence)


def counterparty_accounts(evidence: Mapping[str, Any]) -> set[str]:
    """The account ids of the internal counterparties the evidence names (to be masked)."""
    found = set()
    for row in evidence.get(EXECUTIONS_KEY) or ():
        party = row.get("counterparty") if isinstance(row, dict) else None
        if isinstance(party, str) and party not in _NOT_AN_ACCOUNT:
            found.add(party)
    return found


def unresolved_matches(evidence: Mapping[str, Any]) -> set[str]:
    """The match ids of internal executions whose other side is not known yet."""
    return {
        row["match_id"]
        for row in evidence.get(EXECUTIONS_KEY) or ()
        if isinstance(row, dict) and row.get("counterparty") == INTERNAL and row.get("match_id")
    }


def resolve_counterparties(
    finding: Finding, sides: Mapping[str, Sequence[tuple[str, str]]]
) -> Finding:
    """The finding, each internal execution's counterparty taken from `sides` (match id ->
    (execution id, account id) of its fills); one still unknown is shown as "unknown"."""
    rows = finding.evidence.get(EXECUTIONS_KEY)
    if not rows or not any(r.get("counterparty") == INTERNAL for r in rows):
        return finding
    changed = []
    for row in rows:
        if row.get("counterparty") != INTERNAL:
            changed.append(row)
            continue
        match = sides.get(row.get("match_id", ""), ())
        others = [a for x, a in match if x != row["execution_id"]]
        changed.append({**row, "counterparty": others[0] if others else UNKNOWN})
    return replace(finding, evidence={**finding.evidence, EXECUTIONS_KEY: changed})


def mask_counterparties(finding: Finding, masked: Callable[[str], str]) -> Finding:
    """The finding, each internal counterparty's account id replaced by `masked(id)`."""
    rows = finding.evidence.get(EXECUTIONS_KEY)
    if not rows:
        return finding
    changed = []
    for row in rows:
        party = row.get("counterparty")
        if isinstance(party, str) and party not in _NOT_AN_ACCOUNT:
            changed.append({**row, "counterparty": masked(party)})
        else:
            changed.append(row)
    return replace(finding, evidence={**finding.evidence, EXECUTIONS_KEY: changed})


def merge_details(
    old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]], key: str
) -> list[dict[str, Any]]:
    """Old details then new ones by `key`, in the order the ids were first seen (as the
    alert's id lists are merged), a newer row replacing an older one; the latest kept."""
    merged: dict[str, dict[str, Any]] = {}
    for row in (*old, *new):
        if isinstance(row, Mapping) and isinstance(row.get(key), str):
            merged[row[key]] = dict(row)
    return list(merged.values())[-MAX_DETAILS:]
