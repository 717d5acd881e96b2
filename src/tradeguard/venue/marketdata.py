"""Market data for the simulated venue: a GBM quote model, NBBO across sources, LULD reference.

**Street quotes: geometric Brownian motion.** The mid price S follows

    dS = mu S dt + sigma S dW

(Black and Scholes 1973). By Ito's lemma d(ln S) = (mu - sigma^2 / 2) dt + sigma dW, so the
solution over a step of length dt is (Glasserman, *Monte Carlo Methods in Financial
Engineering*, 2003, section 3.2)

    S(t + dt) = S(t) * exp((mu - sigma^2 / 2) dt + sigma sqrt(dt) Z),   Z ~ N(0, 1)

exactly, for any dt: no discretisation error, and S stays positive. `mu` (drift) and `sigma`
(volatility) are annualised, with a year of 252 sessions of 6.5 hours (`TRADING_SECONDS_PER_YEAR`),
so dt = dt_seconds / TRADING_SECONDS_PER_YEAR. Z comes from an injected `random.Random`
(seeded, the path is reproducible); the arithmetic is Decimal in a fixed 28-digit context, so
the same seed gives the same prices whatever the caller's decimal context. The quote is the
mid snapped to the tick grid with a fixed spread around it, never below one tick.

**NBBO.** The best bid is the highest bid across the sources, the best offer the lowest
offer; the size at each is the total shown at that price by the sources quoting it. The
street quote and the internal book are independent, so the result may be locked or crossed.

**LULD reference price.** The Limit Up-Limit Down Plan (National Market System Plan to Address
Extraordinary Market Volatility, Section V(A)(1)) bases the price bands on a reference price:
the arithmetic mean price of Eligible Reported Transactions over the immediately preceding
five-minute period, the previous reference price remaining in effect when there were none.
`ReferencePriceTracker` keeps that mean over a sliding window in O(1) amortised time per
trade; the caller decides which trades are eligible and passes only those.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, ROUND_HALF_EVEN, Context, Decimal
from typing import NamedTuple

from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.core.errors import InvalidInput
from tradeguard.venue.matching import OrderBook
from tradeguard.venue.ticks import from_ticks

TRADING_SECONDS_PER_YEAR = 252 * 23_400  # 252 sessions of 6.5 hours (09:30 to 16:00)
LULD_WINDOW_NS = 5 * 60 * NS_PER_SECOND

# Fixed contexts: results must not depend on whatever decimal context the caller set.
_MODEL = Context(prec=28, rounding=ROUND_HALF_EVEN)
# Additions and subtractions of prices are exact at this precision (it is the maximum), so a
# running sum never drifts however many trades enter and leave the window.
_EXACT_SUM = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)


def _finite(value: Decimal, name: str) -> Decimal:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise InvalidInput(f"{name} must be a finite Decimal")
    return value


def _count(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"{name} must be a whole number of at least 1")
    return value


class Quote(NamedTuple):
    """A two-sided quote: bid below ask, both on the tick grid and positive."""

    bid: Decimal
    ask: Decimal
    bid_size: int
    ask_size: int


class GbmQuoteModel:
    """Street quotes for one symbol whose mid price follows geometric Brownian motion."""

    def __init__(
        self,
        *,
        initial_price: Decimal,
        volatility: Decimal,
        tick: Decimal,
        rng: random.Random,
        drift: Decimal = Decimal(0),
        spread_ticks: int = 1,
        quote_size: int = 100,
    ) -> None:
        if _finite(initial_price, "initial price") <= 0:
            raise InvalidInput("initial price must be positive")
        if _finite(volatility, "volatility") < 0:
            raise InvalidInput("volatility must not be negative")
        if _finite(tick, "tick size") <= 0:
            raise InvalidInput("tick size must be positive")
        self._drift = _finite(drift, "drift")
        self._volatility = volatility
        self._tick = tick
        self._spread_ticks = _count(spread_ticks, "spread in ticks")
        self._quote_size = _count(quote_size, "quote size")
        self._rng = rng
        self._mid = initial_price
        # The drift of ln S per year: mu - sigma^2 / 2 (Ito correction).
        self._log_drift = _MODEL.subtract(
            self._drift, _MODEL.divide(_MODEL.multiply(volatility, volatility), 2)
        )

    @property
    def mid(self) -> Decimal:
        """The current (unrounded) mid price."""
        return self._mid

    def quote(self) -> Quote:
        """The current quote: the mid on the tick grid, the spread centred on it."""
        ctx = _MODEL
        # The bid is the tick nearest to mid - spread/2, so (bid + ask) / 2 is as close to
        # the mid as the grid allows; a bid never goes below one tick.
        half_spread = ctx.divide(self._spread_ticks, 2)
        bid_ticks = int(
            ctx.subtract(ctx.divide(self._mid, self._tick), half_spread).to_integral_value(
                rounding=ROUND_HALF_EVEN
            )
        )
        bid_ticks = max(bid_ticks, 1)
        return Quote(
            from_ticks(bid_ticks, self._tick),
            from_ticks(bid_ticks + self._spread_ticks, self._tick),
            self._quote_size,
            self._quote_size,
        )

    def step(self, dt_seconds: Decimal | int) -> Quote:
        """Advance the mid by `dt_seconds` of trading time (exact GBM step); the new quote."""
        if isinstance(dt_seconds, bool) or not isinstance(dt_seconds, Decimal | int):
            raise InvalidInput("the time step must be a Decimal or int number of seconds")
        dt = _finite(Decimal(dt_seconds), "time step")
        if dt < 0:
            raise InvalidInput("the time step must not be negative")
        ctx = _MODEL
        years = ctx.divide(dt, TRADING_SECONDS_PER_YEAR)
        # The float draw converts to Decimal exactly; everything after it is Decimal.
        shock = Decimal(self._rng.gauss(0.0, 1.0))
        exponent = ctx.add(
            ctx.multiply(self._log_drift, years),
            ctx.multiply(ctx.multiply(self._volatility, ctx.sqrt(years)), shock),
        )
        self._mid = ctx.multiply(self._mid, ctx.exp(exponent))
        return self.quote()


class Nbbo(NamedTuple):
    """The best bid and offer across quote sources; a side nobody quotes is None, size 0."""

    bid: Decimal | None
    bid_size: int
    ask: Decimal | None
    ask_size: int

    @classmethod
    def across(cls, sources: Iterable[Quote | Nbbo]) -> Nbbo:
        """Best bid and offer over `sources`, with the total size shown at each best price."""
        bid: Decimal | None = None
        ask: Decimal | None = None
        bid_size = ask_size = 0
        for source in sources:
            source_bid, source_ask = source.bid, source.ask
            if source_bid is not None:
                if bid is None or source_bid > bid:
                    bid, bid_size = source_bid, source.bid_size
                elif source_bid == bid:
                    bid_size += source.bid_size
            if source_ask is not None:
                if ask is None or source_ask < ask:
                    ask, ask_size = source_ask, source.ask_size
                elif source_ask == ask:
                    ask_size += source.ask_size
        return cls(bid, bid_size, ask, ask_size)

    @classmethod
    def of_book(cls, book: OrderBook, tick: Decimal) -> Nbbo:
        """The top of an internal order book in Decimal prices, as a quote source."""
        best_bid, best_ask = book.best_bid(), book.best_ask()
        return cls(
            None if best_bid is None else from_ticks(best_bid[0], tick),
            0 if best_bid is None else best_bid[1],
            None if best_ask is None else from_ticks(best_ask[0], tick),
            0 if best_ask is None else best_ask[1],
        )

    @property
    def locked_or_crossed(self) -> bool:
        """True when the best bid is at or above the best offer."""
        return self.bid is not None and self.ask is not None and self.bid >= self.ask


class ReferencePriceTracker:
    """LULD reference price: mean price of eligible trades in the preceding five minutes."""

    def __init__(self, *, window_ns: int = LULD_WINDOW_NS) -> None:
        self._window_ns = _count(window_ns, "window")
        self._trades: deque[tuple[int, Decimal]] = deque()
        self._sum = Decimal(0)
        # Trades at the latest timestamp (sum, count): the fallback when the window empties.
        self._latest_ns: int | None = None
        self._latest_sum = Decimal(0)
        self._latest_count = 0
        self._now_ns: int | None = None  # the latest time seen, by a trade or a query

    def observe(self, price: Decimal, at_ns: int) -> None:
        """Record an eligible trade; trades must arrive in time order."""
        if _finite(price, "price") <= 0:
            raise InvalidInput("price must be positive")
        self._advance(at_ns)
        self._trades.append((at_ns, price))
        self._sum = _EXACT_SUM.add(self._sum, price)
        if at_ns == self._latest_ns:
            self._latest_sum = _EXACT_SUM.add(self._latest_sum, price)
            self._latest_count += 1
        else:
            self._latest_ns, self._latest_sum, self._latest_count = at_ns, price, 1

    def reference_price(self, now_ns: int) -> Decimal | None:
        """The mean price over (now - window, now]; the previous one if none; None before any."""
        self._advance(now_ns)
        trades = self._trades
        horizon = now_ns - self._window_ns
        while trades and trades[0][0] <= horizon:
            self._sum = _EXACT_SUM.subtract(self._sum, trades.popleft()[1])
        if not trades:
            if self._latest_ns is None:
                return None
            # The Plan keeps the previous reference price in effect. Recalculated
            # continuously, the mean just before the window emptied was that of the trades
            # at the latest timestamp: usually the single last trade's price.
            return _MODEL.divide(self._latest_sum, self._latest_count)
        return _MODEL.divide(self._sum, len(trades))

    def _advance(self, at_ns: int) -> None:
        if isinstance(at_ns, bool) or not isinstance(at_ns, int):
            raise InvalidInput("timestamps are integer nanoseconds")
        if self._now_ns is not None and at_ns < self._now_ns:
            # The window only slides forward: trades already expired cannot come back.
            raise InvalidInput("timestamps must not go backward")
        self._now_ns = at_ns
