"""Arranging surveillance tests: market events in ledger order, as the trading core writes
them, for the pure detectors."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.surveillance.domain import (
    Finding,
    FindingFolder,
    FoldedAlert,
    SurveillanceParameters,
)
from tradeguard.surveillance.engine import SurveillanceEngine
from tradeguard.surveillance.events import (
    Fill,
    MarketEvent,
    OrderClosed,
    OrderPlaced,
    RestrictedListed,
)

START_NS = 1_767_625_200 * NS_PER_SECOND  # Monday 5 January 2026, 10:00 New York


@dataclass
class Tape:
    """Market events with increasing sequence numbers and a clock moved by hand."""

    owners: dict[str, str] = field(default_factory=dict)
    now_ns: int = START_NS
    events: list[MarketEvent] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def wait(self, seconds: float) -> None:
        self.now_ns += int(seconds * NS_PER_SECOND)

    def owner(self, account: str) -> str:
        return self.owners.get(account, account)

    def place(
        self,
        account: str,
        symbol: str,
        side: str,
        quantity: int,
        price: str | None,
        *,
        replaces: str | None = None,
    ) -> OrderPlaced:
        event = OrderPlaced(
            seq=next(self._seq),
            ts_ns=self.now_ns,
            order_id=f"o{next(self._ids)}",
            account_id=account,
            owner=self.owner(account),
            symbol=symbol,
            buy=side == "buy",
            quantity=quantity,
            limit_price=Decimal(price) if price is not None else None,
            replaces=replaces,
        )
        self.events.append(event)
        return event

    def cancel(self, order: OrderPlaced, quantity: int | None = None, reason: str = "user") -> None:
        self.events.append(
            OrderClosed(
                seq=next(self._seq),
                ts_ns=self.now_ns,
                order_id=order.order_id,
                account_id=order.account_id,
                owner=order.owner,
                symbol=order.symbol,
                buy=order.buy,
                quantity=order.quantity if quantity is None else quantity,
                reason=reason,
                final=True,
            )
        )

    def fill(
        self,
        order: OrderPlaced,
        quantity: int,
        price: str,
        *,
        maker: bool = False,
        internal: bool = False,
        match_id: str | None = None,
    ) -> Fill:
        execution = f"x{next(self._ids)}"
        event = Fill(
            seq=next(self._seq),
            ts_ns=self.now_ns,
            execution_id=execution,
            order_id=order.order_id,
            account_id=order.account_id,
            owner=order.owner,
            symbol=order.symbol,
            buy=order.buy,
            quantity=quantity,
            price=Decimal(price),
            maker=maker,
            internal=internal,
            match_id=match_id or execution,
        )
        self.events.append(event)
        return event

    def cross(self, taker: OrderPlaced, maker: OrderPlaced, quantity: int, price: str) -> None:
        """An internal match: the taker's fill, then the resting maker's, one match id."""
        match = f"m{next(self._ids)}"
        self.fill(taker, quantity, price, internal=True, match_id=match)
        self.fill(maker, quantity, price, maker=True, internal=True, match_id=match)

    def later(self, seconds: float = 2) -> None:
        """Time passes and the market goes on (another customer trades another symbol):
        what releases findings the spoofing model holds for its re-quote test."""
        self.wait(seconds)
        self.street_trade("someone-else", "ZZZZ", "buy", 100, "10.00")

    def restrict(self, symbol: str) -> RestrictedListed:
        """The firm puts the symbol on its restricted list."""
        event = RestrictedListed(seq=next(self._seq), ts_ns=self.now_ns, symbol=symbol)
        self.events.append(event)
        return event

    def street_trade(self, account: str, symbol: str, side: str, quantity: int, price: str) -> None:
        """A marketable order filled in full against the street."""
        order = self.place(account, symbol, side, quantity, price)
        self.fill(order, quantity, price)


def run(
    events: list[MarketEvent],
    params: SurveillanceParameters | None = None,
    *,
    owners: Callable[[str], str] | None = None,
) -> list[Finding]:
    """Every finding of one engine over the events; `owners`: the beneficial owners the
    events' `owner` fields came from (what the stream tells the engine)."""
    engine = SurveillanceEngine(params or SurveillanceParameters())
    if owners is not None:
        engine.set_owners(owners)
    found: list[Finding] = []
    for event in events:
        found.extend(engine.feed(event))
    return found


def folded(
    findings: list[Finding], params: SurveillanceParameters | None = None
) -> list[FoldedAlert]:
    folder = FindingFolder((params or SurveillanceParameters()).fold_window_ns)
    for finding in findings:
        folder.add(finding)
    return folder.alerts
