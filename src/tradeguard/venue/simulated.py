"""The simulated exchange: one price-time book per symbol, a simulated street that keeps the
books alive with geometric-Brownian-motion quotes, and the market view the pre-trade checks
read (reference prices, marks, NBBO).

Each symbol is single-writer: every book change and the database transaction that records
its consequences run under the symbol's lock, so an order can never be both cancelled and
filled. The database is the truth: when it disagrees with a book (an order cancelled from the
CLI, a crash between commit and submission) the book is rebuilt from the open orders.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TypeVar

from tradeguard.core.clock import Clock
from tradeguard.core.ids import IdGenerator
from tradeguard.core.orders import BookSide, StpMode, TimeInForce, book_side
from tradeguard.core.workers import FailureTracker, run_until_stopped
from tradeguard.venue.adapter import (
    STREET,
    ExecutionSink,
    StaleBook,
    VenueCancel,
    VenueFill,
    VenueOrder,
    VenueReport,
)
from tradeguard.venue.marketdata import GbmQuoteModel, Quote, ReferencePriceTracker
from tradeguard.venue.matching import IncomingOrder, MatchResult, OrderBook
from tradeguard.venue.ticks import from_ticks, to_ticks

T = TypeVar("T")

logger = logging.getLogger("tradeguard.venue")

REBUILD_ATTEMPTS = 3
SUBMITTED_MEMORY = 50_000


@dataclass(slots=True)
class StreetConfig:
    volatility: Decimal = Decimal("0.25")
    spread_ticks: int = 2
    quote_size: int = 500


@dataclass(slots=True)
class SymbolState:
    symbol: str
    tick: Decimal
    book: OrderBook
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    model: GbmQuoteModel | None = None
    quote: Quote | None = None
    street_ids: list[str] = field(default_factory=list)
    reference: ReferencePriceTracker = field(default_factory=ReferencePriceTracker)
    last_price: Decimal | None = None
    halted: bool = False
    # Orders committed but cancelled before they reached the book, and orders already
    # submitted (so a rebuild and a late submission never put one order in twice).
    tombstones: set[str] = field(default_factory=set)
    submitted: OrderedDict[str, None] = field(default_factory=OrderedDict)


class SimulatedVenue:
    """An in-process exchange for demos, tests and benchmarks (a Venue and a MarketView)."""

    def __init__(
        self,
        *,
        clock: Clock,
        ids: IdGenerator,
        sink: ExecutionSink,
        street: StreetConfig | None = None,
        seed: int | None = None,
        on_rebuild: Callable[[], None] | None = None,
        session_open: Callable[[], bool] | None = None,
    ) -> None:
        self._clock = clock
        self._ids = ids
        self._sink = sink
        self._street = street
        self._rng = random.Random(seed)  # noqa: S311 - market simulation, not security
        self._symbols: dict[str, SymbolState] = {}
        self._on_rebuild = on_rebuild
        # The street quotes only while the session is open (always, without a predicate).
        self._session_open = session_open or (lambda: True)

    # Listing -------------------------------------------------------------------------------

    def list_symbol(self, symbol: str, *, tick: Decimal, price: Decimal | None) -> None:
        """Open a book (idempotent); the street quotes around `price` when it runs."""
        state = self._symbols.get(symbol)
        if state is None:
            state = SymbolState(symbol=symbol, tick=tick, book=OrderBook(symbol))
            self._symbols[symbol] = state
        state.tick = tick
        if price is not None and state.last_price is None:
            state.last_price = price
            state.reference.observe(price, self._clock.now_ns())
        if self._street is not None and state.model is None and price is not None:
            state.model = GbmQuoteModel(
                initial_price=price,
                volatility=self._street.volatility,
                tick=tick,
                spread_ticks=self._street.spread_ticks,
                quote_size=self._street.quote_size,
                rng=random.Random(self._rng.random()),  # noqa: S311 - simulation
            )

    def symbols(self) -> list[str]:
        return sorted(self._symbols)

    def set_halted(self, symbol: str | None, halted: bool) -> None:
        """Stop (or restart) the street quoting a symbol (None: every symbol)."""
        for state in self._symbols.values():
            if symbol is None or state.symbol == symbol:
                state.halted = halted

    # Market view ----------------------------------------------------------------------------

    def reference_price(self, symbol: str) -> Decimal | None:
        """The LULD reference price (five-minute mean), on the symbol's tick grid."""
        state = self._symbols.get(symbol)
        if state is None:
            return None
        mean = state.reference.reference_price(self._clock.now_ns())
        if mean is None:
            return None
        return (mean / state.tick).to_integral_value(rounding=ROUND_HALF_EVEN) * state.tick

    def mark_price(self, symbol: str) -> Decimal | None:
        state = self._symbols.get(symbol)
        if state is None:
            return None
        bid, ask = self.nbbo(symbol)
        if bid is not None and ask is not None:
            return (bid + ask) / 2
        return state.last_price

    def nbbo(self, symbol: str) -> tuple[Decimal | None, Decimal | None]:
        state = self._symbols.get(symbol)
        if state is None:
            return None, None
        bid = state.book.best_bid()
        ask = state.book.best_ask()
        return (
            from_ticks(bid[0], state.tick) if bid else None,
            from_ticks(ask[0], state.tick) if ask else None,
        )

    def depth(self, symbol: str, levels: int) -> dict[str, list[tuple[Decimal, int]]]:
        state = self._symbols.get(symbol)
        if state is None:
            return {"bids": [], "asks": []}
        raw = state.book.depth(levels)
        return {
            "bids": [(from_ticks(price, state.tick), qty) for price, qty in raw.bids],
            "asks": [(from_ticks(price, state.tick), qty) for price, qty in raw.asks],
        }

    # Orders ----------------------------------------------------------------------------------

    async def submit(self, order: VenueOrder) -> bool:
        """Match an accepted order; True when anything happened to it beyond resting."""
        state = self._symbols.get(order.symbol)
        if state is None:
            raise StaleBook(f"no book for {order.symbol}")
        async with state.lock:
            if order.order_id in state.tombstones:
                state.tombstones.discard(order.order_id)
                return True
            if order.order_id in state.submitted:
                return True
            return await self._match_and_record(state, self._incoming(state, order))

    async def under_lock(
        self, symbol: str, work: Callable[[], Awaitable[T]], *, remove: Sequence[str] = ()
    ) -> T:
        state = self._symbols.get(symbol)
        if state is None:
            return await work()
        async with state.lock:
            result = await work()
            self._remove(state, remove)
            return result

    async def purge(self, symbol: str, order_ids: Sequence[str]) -> None:
        state = self._symbols.get(symbol)
        if state is None:
            return
        async with state.lock:
            self._remove(state, order_ids)

    def _remove(self, state: SymbolState, order_ids: Sequence[str]) -> None:
        for order_id in order_ids:
            if state.book.cancel(order_id) is None and order_id not in state.submitted:
                # Cancelled between its commit and its submission: never let it in.
                state.tombstones.add(order_id)

    async def rebuild(self, symbol: str) -> None:
        """Reload a book from the database's open orders (street liquidity is re-quoted)."""
        state = self._symbols.get(symbol)
        if state is None:
            return
        async with state.lock:
            await self._rebuild_locked(state)

    async def rebuild_all(self) -> None:
        for symbol in self.symbols():
            await self.rebuild(symbol)

    async def _rebuild_locked(self, state: SymbolState) -> None:
        if self._on_rebuild is not None:
            self._on_rebuild()
        for _ in range(REBUILD_ATTEMPTS):
            state.book = OrderBook(state.symbol)
            state.street_ids = []
            state.tombstones.clear()
            state.submitted.clear()
            try:
                for order in await self._sink.resting_orders(state.symbol):
                    await self._match_and_record(
                        state, self._incoming(state, order), rebuilding=True
                    )
                return
            except StaleBook:
                continue
        logger.error("book for %s could not be rebuilt; it stays empty", state.symbol)
        state.book = OrderBook(state.symbol)

    def _incoming(self, state: SymbolState, order: VenueOrder) -> IncomingOrder:
        return IncomingOrder(
            order_id=order.order_id,
            owner=order.account_id,
            side=book_side(order.side),
            quantity=order.quantity,
            limit_ticks=to_ticks(order.limit_price, state.tick) if order.limit_price else None,
            tif=order.time_in_force,
            protection_ticks=(
                _protection_ticks(order.protection_price, state.tick, book_side(order.side))
                if order.protection_price is not None
                else None
            ),
            stp=order.stp,
        )

    async def _match_and_record(
        self, state: SymbolState, incoming: IncomingOrder, *, rebuilding: bool = False
    ) -> bool:
        state.submitted[incoming.order_id] = None
        if len(state.submitted) > SUBMITTED_MEMORY:
            state.submitted.popitem(last=False)
        result = state.book.submit(incoming)
        report = self._report(state, incoming, result)
        if report.empty:
            return False
        try:
            await self._sink.apply(report)
        except StaleBook:
            if rebuilding:
                raise
            logger.warning("book for %s disagreed with the database; rebuilding", state.symbol)
            await self._rebuild_locked(state)
            return True
        except BaseException:
            # Nothing was recorded: the book has moved past the database, so reload it.
            await self._rebuild_locked(state)
            raise
        if report.fills:
            state.last_price = report.fills[-1].price
            now = self._clock.now_ns()
            for fill in report.fills:
                state.reference.observe(fill.price, now)
        return True

    def _report(
        self, state: SymbolState, incoming: IncomingOrder, result: MatchResult
    ) -> VenueReport:
        fills = tuple(
            VenueFill(
                match_id=self._ids.new_str(),
                taker_order_id=f.taker_order_id,
                taker_account=f.taker_owner,
                maker_order_id=f.maker_order_id,
                maker_account=f.maker_owner,
                taker_buys=incoming.side is BookSide.BID,
                price=from_ticks(f.price_ticks, state.tick),
                quantity=f.quantity,
            )
            for f in result.fills
        )
        cancels: list[VenueCancel] = []
        if result.cancelled and incoming.owner != STREET:
            cancels.append(
                VenueCancel(
                    incoming.order_id,
                    incoming.owner,
                    result.cancelled,
                    result.cancel_reason.value if result.cancel_reason else "ioc",
                )
            )
        for order_id, quantity in result.stp_cancelled:
            owner = incoming.owner  # self-trade prevention only ever touches the same owner
            if owner != STREET:
                cancels.append(VenueCancel(order_id, owner, quantity, "self_trade"))
        return VenueReport(state.symbol, fills, tuple(cancels))

    # The street ---------------------------------------------------------------------------------

    async def tick(self, dt_seconds: float) -> None:
        """Move every quoted symbol one step and refresh the street's orders."""
        if not self._session_open():
            return
        for state in list(self._symbols.values()):
            if state.model is None or state.halted:
                continue
            async with state.lock:
                quote = state.model.step(Decimal(str(dt_seconds)))
                state.quote = quote
                for order_id in state.street_ids:
                    state.book.cancel(order_id)
                state.street_ids = []
                mid = (quote.bid + quote.ask) / 2
                state.reference.observe(mid, self._clock.now_ns())
                for side, price, size in (
                    (BookSide.BID, quote.bid, quote.bid_size),
                    (BookSide.ASK, quote.ask, quote.ask_size),
                ):
                    order_id = f"street-{self._ids.new_str()}"
                    incoming = IncomingOrder(
                        order_id=order_id,
                        owner=STREET,
                        side=side,
                        quantity=size,
                        limit_ticks=to_ticks(price, state.tick),
                        tif=TimeInForce.GTC,
                        protection_ticks=None,
                        stp=StpMode.CANCEL_NEWEST,
                    )
                    await self._match_and_record(state, incoming)
                    if order_id in state.book:
                        state.street_ids.append(order_id)

    async def run_street(
        self, interval_ms: int, stop: asyncio.Event, tracker: FailureTracker
    ) -> None:
        """Background task: quote every `interval_ms` until stopped (backing off while the
        database, which records the street's fills, is failing)."""
        dt = interval_ms / 1000

        async def one_pass() -> float:
            await self.tick(dt)
            return dt

        await run_until_stopped(one_pass, tracker=tracker, stop=stop)


def _protection_ticks(price: Decimal, tick: Decimal, side: BookSide) -> int:
    # Round inward so the protective limit is never beyond the band: down for a buy's ceiling,
    # up for a sell's floor.
    ticks = price / tick
    whole = int(ticks)
    if side is BookSide.ASK and Decimal(whole) != ticks:
        whole += 1
    return whole
