"""The venue adapter: what the order service needs from an exchange, whoever runs it.

The simulated exchange (venue/simulated.py) implements it in process; a FIX gateway to a
real venue can implement the same interface. Executions come back through an
`ExecutionSink`, which records them in one database transaction per venue event.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol, TypeVar

from tradeguard.core.orders import Side, StpMode, TimeInForce

T = TypeVar("T")

STREET = "street"
"""Owner of the simulated street's liquidity (not a customer account)."""


@dataclass(frozen=True, slots=True)
class VenueOrder:
    """An accepted order as the venue sees it: the quantity still to trade."""

    order_id: str
    account_id: str
    symbol: str
    side: Side
    quantity: int
    limit_price: Decimal | None
    time_in_force: TimeInForce
    protection_price: Decimal | None
    stp: StpMode


@dataclass(frozen=True, slots=True)
class VenueFill:
    """One match: the taker traded against the resting maker at the maker's price."""

    match_id: str
    taker_order_id: str
    taker_account: str
    maker_order_id: str
    maker_account: str
    taker_buys: bool
    price: Decimal
    quantity: int


@dataclass(frozen=True, slots=True)
class VenueCancel:
    """Quantity of an order the venue cancelled by itself (IOC rest, self-trade, ...)."""

    order_id: str
    account_id: str
    quantity: int
    reason: str


@dataclass(frozen=True, slots=True)
class VenueReport:
    symbol: str
    fills: tuple[VenueFill, ...]
    cancels: tuple[VenueCancel, ...]

    @property
    def empty(self) -> bool:
        return not self.fills and not self.cancels


class StaleBook(Exception):
    """The database no longer agrees with the in-memory book (an order was cancelled or
    filled behind the venue's back): the book must be rebuilt from the database."""


class ExecutionSink(Protocol):
    async def apply(self, report: VenueReport) -> None:
        """Record a venue report atomically; raise StaleBook if an order is not as the
        venue believes (then nothing of the report is recorded)."""
        ...

    async def resting_orders(self, symbol: str) -> Sequence[VenueOrder]:
        """Open orders of a symbol in time priority (to rebuild a book)."""
        ...


class Venue(Protocol):
    async def submit(self, order: VenueOrder) -> bool:
        """Hand an accepted order to the venue; True when it traded or was cancelled there
        (the caller re-reads it), False when it simply rests."""
        ...

    async def under_lock(
        self, symbol: str, work: Callable[[], Awaitable[T]], *, remove: Sequence[str] = ()
    ) -> T:
        """Run `work` (a database change) while the symbol's book is held still, then remove
        the given orders from the book: a cancel and a fill can never cross."""
        ...

    async def purge(self, symbol: str, order_ids: Sequence[str]) -> None: ...
