"""The scenario library: a seeded market of customers trading with the street and each
other, with labelled manipulation injected and honest near-misses, as ledger events.

What it builds is what the trading core records (docs/trading.md): the same event types
and data (`trading:order:placed`, `...:cancelled`, `...:filled`, `trading:execution:
created`), produced by the venue's own matching engine (`venue/matching.py`, price-time
priority, self-trade prevention by account) against street liquidity that follows the
venue's geometric-Brownian-motion quote model (`venue/marketdata.py`). Same seed, same
market, same events.

The population (all counts scale with `accounts`):

- retail traders: an order now and then (exponential gaps) in a symbol picked by its
  popularity, mostly marketable, some resting limits, some cancelled later;
- market makers: quote both sides of their symbols at the touch, re-quote often (cancelling
  most of what they place), now and then take liquidity to shed inventory: the spoofing
  model's classic near-miss; every third one leans on one side (a big bid and a small
  offer, or the reverse), re-quoted after each fill: the hardest one;
- day traders: a round trip in one symbol within the session (near-miss for MAN-1);
- swing traders: buy one session, sell the same stock days later (near-miss for MAN-1);
- honest large orders: a big resting order cancelled with nothing traded on the other side
  (near-miss for MAN-2), and a big order cancelled long after a small trade on the other
  side ("slow cancel", near-miss for MAN-2);
- accumulation: several aggressive buys and a small sale of one stock within minutes
  (near-miss for MAN-1: both sides, near prices, but the position changed).

Injected episodes (positives), each by a trader of its own:

- WASH_CROSS: a user with two accounts sells from one and buys from the other at one price,
  two to four times within minutes (an internal match: no change of beneficial owner);
- WASH_ROUND_TRIP: one account buys and sells the same shares against the street, three to
  five times within minutes, paying the spread each time;
- SPOOF: a large bid at the touch, a small marketable sale a second later, the bid
  cancelled a second or so after the sale (and the mirror image on the other side);
- LAYER: orders at three to five price levels beyond the touch on one side, a small
  marketable trade on the other, the levels cancelled within seconds.
- FRONT_RUNNING: a staff account trades a symbol, a large client order on the same side
  follows within minutes, the staff account unwinds minutes later. Near-misses: a customer
  doing the same, staff trading after the client order, staff trading ahead and holding.
- RESTRICTED_LIST_AHEAD: a staff account buys a symbol an hour or two before the firm puts
  it on its restricted list. Near-misses: staff who bought it that morning, hours before;
  staff who bought and sold it shortly before (no position).
- PUMP_AND_DUMP: a user with two accounts and another user's new account buy a symbol, more
  as the street's price climbs 25-45% in ninety minutes (their promotion), and sell all of
  it near the top; the price falls back. Near-misses: a RALLY of the same size on news, with
  a large buyer that holds, and three unrelated traders PROFIT_TAKING near its top.

Pure: no I/O (the generator uses the venue's pure modules only).
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.core.orders import BookSide, StpMode, TimeInForce
from tradeguard.surveillance.domain import Detector
from tradeguard.surveillance.events import (
    EXECUTION_CREATED,
    ORDER_CANCELLED,
    ORDER_PLACED,
    RESTRICTED_ADDED,
)
from tradeguard.venue.marketdata import GbmQuoteModel
from tradeguard.venue.matching import CancelReason, IncomingOrder, OrderBook
from tradeguard.venue.ticks import from_ticks

ORDER_FILLED = "trading:order:filled"
STREET = "street"
TICK = Decimal("0.01")
SESSION_SECONDS = 6.5 * 3600
# Monday 5 January 2026, 09:30 in New York (14:30 UTC): the first session's open.
FIRST_OPEN_NS = 1_767_623_400 * NS_PER_SECOND
DAY_NS = 86_400 * NS_PER_SECOND
STREET_STEP_SECONDS = 5
STREET_SIZE = 500
# Annualised; with a quote every 5 s this moves the large caps a few ticks a step.
VOLATILITY = Decimal("0.1")
SECOND = NS_PER_SECOND


class EpisodeKind(StrEnum):
    WASH_CROSS = "WASH_CROSS"
    WASH_ROUND_TRIP = "WASH_ROUND_TRIP"
    SPOOF = "SPOOF"
    LAYER = "LAYER"
    PUMP_AND_DUMP = "PUMP_AND_DUMP"
    FRONT_RUN = "FRONT_RUNNING"
    RESTRICTED_AHEAD = "RESTRICTED_LIST_AHEAD"
    MARK_CLOSE = "MARKING_THE_CLOSE"
    STUFFING = "QUOTE_STUFFING"
    # Honest near-misses: labelled so the evaluation can say which ones were flagged.
    DAY_TRADE = "NEAR_MISS_DAY_TRADE"
    SWING_TRADE = "NEAR_MISS_SWING_TRADE"
    MARKET_MAKER = "NEAR_MISS_MARKET_MAKER"
    # A market maker leaning on one side (inventory): a big bid, a small offer, or the
    # other way round, re-quoted after every fill.
    SKEWED_MARKET_MAKER = "NEAR_MISS_SKEWED_MARKET_MAKER"
    ACCUMULATION = "NEAR_MISS_ACCUMULATION"
    LARGE_CANCEL = "NEAR_MISS_LARGE_CANCEL"
    SLOW_CANCEL = "NEAR_MISS_SLOW_CANCEL"
    # A real rally (news): a large buyer that holds, and unrelated traders taking a profit
    # near the top.
    RALLY = "NEAR_MISS_RALLY"
    PROFIT_TAKING = "NEAR_MISS_PROFIT_TAKING"
    # A customer (not staff) trading ahead of another customer's large order and unwinding;
    # staff trading after a large client order (public by then); staff trading ahead of one
    # and holding; staff who bought a symbol hours before it was restricted, or made a round
    # trip in it shortly before.
    CUSTOMER_AHEAD = "NEAR_MISS_CUSTOMER_AHEAD"
    STAFF_AFTER = "NEAR_MISS_STAFF_AFTER_CLIENT"
    STAFF_HOLDS = "NEAR_MISS_STAFF_HOLDS"
    STAFF_LONG_BEFORE = "NEAR_MISS_STAFF_LONG_BEFORE_LISTING"
    STAFF_ROUND_TRIP = "NEAR_MISS_STAFF_ROUND_TRIP_BEFORE_LISTING"
    # A fund buying a large amount in the last minutes without moving the price; an
    # algorithm slicing an order into many small IOC orders within seconds.
    CLOSING_BUYER = "NEAR_MISS_CLOSING_BUYER"
    RAPID_SLICING = "NEAR_MISS_RAPID_SLICING"
    MOMENTUM_IGNITION = "MOMENTUM_IGNITION"
    # An institution working a large order aggressively (bursts for minutes, no reversal); a
    # trader buying hard on news and holding; one who sells the position days later; one
    # who sells at a loss minutes later when the price turns.
    WORKING_ORDER = "NEAR_MISS_WORKING_ORDER"
    NEWS_BUYER = "NEAR_MISS_NEWS_BUYER_HOLDS"
    SELLS_DAYS_LATER = "NEAR_MISS_SELLS_DAYS_LATER"
    STOP_LOSS = "NEAR_MISS_STOP_LOSS"


DETECTOR_OF_EPISODE: dict[EpisodeKind, Detector] = {
    EpisodeKind.WASH_CROSS: Detector.WASH,
    EpisodeKind.WASH_ROUND_TRIP: Detector.WASH,
    EpisodeKind.SPOOF: Detector.SPOOFING,
    EpisodeKind.LAYER: Detector.SPOOFING,
    EpisodeKind.PUMP_AND_DUMP: Detector.PUMP,
    EpisodeKind.FRONT_RUN: Detector.FRONT_RUNNING,
    EpisodeKind.RESTRICTED_AHEAD: Detector.FRONT_RUNNING,
    EpisodeKind.MARK_CLOSE: Detector.PATTERNS,
    EpisodeKind.STUFFING: Detector.PATTERNS,
    EpisodeKind.MOMENTUM_IGNITION: Detector.PATTERNS,
}


@dataclass(frozen=True, slots=True)
class ScenarioConfig:
    seed: int = 1
    accounts: int = 200
    days: int = 2
    episodes_per_kind: int = 20
    symbols: int = 8


@dataclass(slots=True)
class Episode:
    """A labelled stretch of one trader's activity: manipulation, or an honest near-miss."""

    kind: EpisodeKind
    owner: str
    accounts: tuple[str, ...]
    symbol: str
    start_ns: int
    end_ns: int = 0
    # False when the manipulation never came about (a spoofer's genuine order found nothing
    # to trade with): there was no pattern to detect. Reported, not scored.
    completed: bool = True
    # Other beneficial owners taking part (a group of several users).
    others: tuple[str, ...] = ()

    @property
    def positive(self) -> bool:
        return self.kind in DETECTOR_OF_EPISODE

    @property
    def detector(self) -> Detector | None:
        return DETECTOR_OF_EPISODE.get(self.kind)


@dataclass(slots=True)
class Scenario:
    config: ScenarioConfig
    # Ledger documents in chain order (seq = position + 1).
    documents: list[dict[str, Any]]
    # Each account's user (its beneficial owner, without links).
    account_users: dict[str, str]
    episodes: list[Episode]
    # The staff and proprietary accounts (MAN-4 judges only them).
    insiders: frozenset[str] = frozenset()


@dataclass(slots=True)
class _Order:
    order_id: str
    account: str
    user: str
    symbol: str
    side: str
    order_type: str
    tif: str
    quantity: int
    limit: Decimal | None
    filled: int = 0


@dataclass(slots=True)
class _Symbol:
    name: str
    book: OrderBook
    model: GbmQuoteModel
    weight: float
    spread: int = 1
    street_ids: list[str] = field(default_factory=list)
    bid: int = 0
    ask: int = 0


# (symbol, opening price, popularity, the street's spread in ticks). The last few trade
# little: manipulation shows there most.
_SYMBOLS = [
    ("AAPL", "232.00", 5.0, 2),
    ("MSFT", "415.00", 4.0, 3),
    ("NVDA", "135.00", 5.0, 2),
    ("F", "11.20", 3.0, 1),
    ("KO", "62.50", 2.0, 2),
    ("XOM", "110.00", 2.0, 3),
    ("PLUG", "2.40", 0.6, 1),
    ("SNDL", "1.85", 0.4, 1),
    ("AMC", "4.90", 1.0, 2),
    ("T", "22.10", 1.5, 1),
]


class MarketSimulation:
    """Runs the seeded market and records the trading core's ledger documents."""

    def __init__(self, config: ScenarioConfig) -> None:
        if not 1 <= config.symbols <= len(_SYMBOLS):
            raise ValueError(f"symbols must be 1-{len(_SYMBOLS)}")
        self.config = config
        # Not for security: a seeded generator, so a seed reproduces its market.
        self.rng = random.Random(config.seed)  # noqa: S311 - reproducible, not secret
        self.documents: list[dict[str, Any]] = []
        self.account_users: dict[str, str] = {}
        self.insiders: set[str] = set()
        self.episodes: list[Episode] = []
        self._ids = itertools.count(1)
        self._queue: list[tuple[int, int, Callable[[int], None]]] = []
        self._orders: dict[str, _Order] = {}
        # Shares filled per order, kept after the order is done (episodes ask), and each
        # account's position per symbol (market makers lean on it).
        self.filled: dict[str, int] = {}
        self.positions: dict[tuple[str, str], int] = {}
        self.symbols = {
            name: _Symbol(
                name=name,
                book=OrderBook(name),
                model=GbmQuoteModel(
                    initial_price=Decimal(price),
                    volatility=VOLATILITY,
                    tick=TICK,
                    rng=random.Random(self.rng.getrandbits(64)),  # noqa: S311 - seeded
                    spread_ticks=spread,
                    quote_size=STREET_SIZE,
                ),
                weight=weight,
                spread=spread,
            )
            for name, price, weight, spread in _SYMBOLS[: config.symbols]
        }
        self._names = list(self.symbols)
        self._weights = [self.symbols[s].weight for s in self._names]

    # -- ids, time, documents ----------------------------------------------------------

    def _id(self, prefix: str) -> str:
        return f"{prefix}-{self.config.seed}-{next(self._ids):07d}"

    def session_open(self, day: int) -> int:
        return FIRST_OPEN_NS + day * DAY_NS

    def session_close(self, day: int) -> int:
        return self.session_open(day) + int(SESSION_SECONDS * SECOND)

    def in_session(self, t: int) -> bool:
        day = (t - FIRST_OPEN_NS) // DAY_NS
        return 0 <= day < self.config.days and t < self.session_close(day)

    def at(self, t: int, action: Callable[[int], None]) -> None:
        heapq.heappush(self._queue, (t, next(self._ids), action))

    def _record(self, kind: str, t: int, account: str, actor: dict[str, str], data: Any) -> None:
        self.documents.append(
            {
                "v": 1,
                "id": self._id("evt"),
                "type": kind,
                "ts": str(t),
                "actor": actor,
                "subject": {"kind": "account", "id": account},
                "data": data,
            }
        )

    def restrict(self, t: int, symbol: str) -> None:
        """Compliance puts a symbol on the firm's restricted list (the trading core's event)."""
        self.documents.append(
            {
                "v": 1,
                "id": self._id("evt"),
                "type": RESTRICTED_ADDED,
                "ts": str(t),
                "actor": {"kind": "user", "id": "compliance"},
                "subject": {"kind": "instrument", "id": symbol},
                "data": {"symbol": symbol, "reason": "investment banking mandate"},
            }
        )

    def new_user(self, accounts: int = 1) -> tuple[str, list[str]]:
        user = self._id("user")
        opened = [self._id("acct") for _ in range(accounts)]
        for account in opened:
            self.account_users[account] = user
        return user, opened

    # -- the street ----------------------------------------------------------------------

    def _street_step(self, symbol: _Symbol, t: int) -> None:
        quote = symbol.model.step(STREET_STEP_SECONDS)
        # The quote is on the tick grid: its prices in cents are whole numbers.
        bid, ask = int(quote.bid.scaleb(2)), int(quote.ask.scaleb(2))
        book = symbol.book
        if (
            bid == symbol.bid
            and ask == symbol.ask
            and all(book.remaining(order_id) == STREET_SIZE for order_id in symbol.street_ids)
        ):
            return  # the street's quote stands as it was
        for order_id in symbol.street_ids:
            book.cancel(order_id)
        symbol.street_ids = []
        symbol.bid, symbol.ask = bid, ask
        # Customer orders the new quote went through are taken by the street (arbitrage):
        # bids at or above its offer, offers at or below its bid. The book is never crossed.
        for side, price in ((BookSide.ASK, ask), (BookSide.BID, bid)):
            sweep = book.submit(
                IncomingOrder(self._id("street"), STREET, side, 1 << 40, price, TimeInForce.IOC)
            )
            self._apply_fills(symbol, sweep.fills, t, taker=None)
        for side, price in ((BookSide.BID, bid), (BookSide.ASK, ask)):
            order_id = self._id("street")
            symbol.street_ids.append(order_id)
            result = book.submit(
                IncomingOrder(order_id, STREET, side, STREET_SIZE, price, TimeInForce.GTC)
            )
            self._apply_fills(symbol, result.fills, t, taker=None)

    def _street_loop(self, symbol: _Symbol) -> Callable[[int], None]:
        def step(t: int) -> None:
            if not self.in_session(t):
                return
            self._street_step(symbol, t)
            self.at(t + STREET_STEP_SECONDS * SECOND, step)

        return step

    # -- orders ----------------------------------------------------------------------------

    def place(
        self,
        t: int,
        account: str,
        symbol_name: str,
        side: str,
        quantity: int,
        *,
        limit_ticks: int | None,
        tif: str = "day",
    ) -> str:
        """Place an order (its ledger event), match it, record the fills and cancels."""
        symbol = self.symbols[symbol_name]
        user = self.account_users[account]
        order = _Order(
            order_id=self._id("ord"),
            account=account,
            user=user,
            symbol=symbol_name,
            side=side,
            order_type="market" if limit_ticks is None else "limit",
            tif=tif,
            quantity=quantity,
            limit=None if limit_ticks is None else from_ticks(limit_ticks, TICK),
        )
        self._orders[order.order_id] = order
        self._record(
            ORDER_PLACED,
            t,
            account,
            {"kind": "user", "id": user},
            {
                **self._order_data(order, "new"),
                "reducing": False,
                "hold_cash": "0",
                "hold_shares": 0,
                "replaces_order_id": None,
            },
        )
        protection = None
        if limit_ticks is None:
            # Market orders never trade beyond a 5% collar (the venue's price protection).
            mid = (symbol.bid + symbol.ask) // 2
            protection = mid + mid // 20 if side == "buy" else max(1, mid - mid // 20)
        result = symbol.book.submit(
            IncomingOrder(
                order.order_id,
                account,
                BookSide.BID if side == "buy" else BookSide.ASK,
                quantity,
                limit_ticks,
                TimeInForce.IOC if tif == "ioc" or limit_ticks is None else TimeInForce.DAY,
                protection_ticks=protection,
                stp=StpMode.CANCEL_NEWEST,
            )
        )
        self._apply_fills(symbol, result.fills, t, taker=order)
        for resting_id, quantity_cancelled in result.stp_cancelled:
            self._cancelled(t, self._orders[resting_id], quantity_cancelled, "self_trade")
        if result.cancelled:
            reason = (
                "self_trade"
                if result.cancel_reason is CancelReason.SELF_TRADE
                else "ioc"
                if limit_ticks is not None
                else "no_liquidity"
            )
            self._cancelled(t, order, result.cancelled, reason)
        return order.order_id

    def cancel(self, t: int, order_id: str) -> bool:
        """A customer's cancel request; False when nothing was resting any more."""
        order = self._orders.get(order_id)
        if order is None:
            return False
        removed = self.symbols[order.symbol].book.cancel(order_id)
        if removed is None:
            return False
        self._cancelled(t, order, removed, "user")
        return True

    def price_of(self, order_id: str) -> int:
        """A resting limit order's price in ticks."""
        limit = self._orders[order_id].limit
        return int(limit.scaleb(2)) if limit is not None else 0

    def resting(self, order_id: str) -> bool:
        order = self._orders.get(order_id)
        return order is not None and order_id in self.symbols[order.symbol].book

    def _cancelled(self, t: int, order: _Order, quantity: int, reason: str) -> None:
        status = "cancelled"
        self._record(
            ORDER_CANCELLED,
            t,
            order.account,
            {"kind": "user", "id": order.user} if reason == "user" else _SYSTEM,
            {**self._order_data(order, status), "reason": reason, "unfilled": quantity},
        )
        self._orders.pop(order.order_id, None)

    def _apply_fills(self, symbol: _Symbol, fills: Any, t: int, *, taker: _Order | None) -> None:
        for fill in fills:
            price = from_ticks(fill.price_ticks, TICK)
            match_id = self._id("match")
            sides: list[tuple[_Order | None, str, str]] = [
                (taker, "taker", fill.maker_owner),
                (self._orders.get(fill.maker_order_id), "maker", fill.taker_owner),
            ]
            for order, liquidity, contra in sides:
                if order is None:
                    continue  # the street's side is not recorded
                self._execution(
                    order,
                    quantity=fill.quantity,
                    price=price,
                    liquidity=liquidity,
                    contra=contra,
                    match_id=match_id,
                    t=t,
                )

    def _execution(
        self,
        order: _Order,
        *,
        quantity: int,
        price: Decimal,
        liquidity: str,
        contra: str,
        match_id: str,
        t: int,
    ) -> None:
        order.filled += quantity
        self.filled[order.order_id] = order.filled
        key = (order.account, order.symbol)
        self.positions[key] = self.positions.get(key, 0) + (
            quantity if order.side == "buy" else -quantity
        )
        notional = price * quantity
        self._record(
            EXECUTION_CREATED,
            t,
            order.account,
            _SYSTEM,
            {
                "execution_id": self._id("exe"),
                "order_id": order.order_id,
                "symbol": order.symbol,
                "side": order.side,
                "quantity": quantity,
                "price": str(price),
                "notional": str(notional),
                "fee": str((Decimal("0.005") * quantity).quantize(Decimal("0.01"))),
                "liquidity": liquidity,
                "contra": "street" if contra == STREET else "internal",
                "match_id": match_id,
                "trading_date": "2026-01-05",
                "settlement_date": "2026-01-06",
                "day_trade": False,
            },
        )
        if order.filled >= order.quantity:
            self._record(ORDER_FILLED, t, order.account, _SYSTEM, self._order_data(order, "filled"))
            self._orders.pop(order.order_id, None)

    @staticmethod
    def _order_data(order: _Order, status: str) -> dict[str, Any]:
        return {
            "order_id": order.order_id,
            "account_id": order.account,
            "client_order_id": f"c-{order.order_id}",
            "symbol": order.symbol,
            "side": order.side,
            "type": order.order_type,
            "time_in_force": order.tif,
            "quantity": order.quantity,
            "limit_price": str(order.limit) if order.limit is not None else None,
            "status": status,
            "filled_quantity": order.filled,
        }

    # -- helpers for the actors ---------------------------------------------------------

    def pick_symbol(self, rng: random.Random | None = None) -> str:
        return (rng or self.rng).choices(self._names, weights=self._weights)[0]

    def move_price(
        self, symbol_name: str, factor: Decimal, rng: random.Random | None = None
    ) -> None:
        """The street's price jumps by `factor` (news, promotion, buying pressure) and goes
        on from there with the same volatility; the next street step quotes it. (`rng`
        seeds the new path: episodes with a generator of their own leave the others' draws
        as they were.)"""
        symbol = self.symbols[symbol_name]
        symbol.model = GbmQuoteModel(
            initial_price=max(TICK, symbol.model.mid * factor),
            volatility=VOLATILITY,
            tick=TICK,
            rng=random.Random((rng or self.rng).getrandbits(64)),  # noqa: S311 - seeded
            spread_ticks=symbol.spread,
            quote_size=STREET_SIZE,
        )

    def touch(self, symbol_name: str) -> tuple[int, int]:
        symbol = self.symbols[symbol_name]
        return symbol.bid, symbol.ask

    def lot(self, low: int, high: int, step: int = 100) -> int:
        return step * self.rng.randint(max(1, low // step), max(1, high // step))

    def random_time(self, *, margin_seconds: float = 600) -> int:
        """A moment in some session, at least `margin_seconds` from its open and close."""
        day = self.rng.randrange(self.config.days)
        span = SESSION_SECONDS - 2 * margin_seconds
        return self.session_open(day) + int((margin_seconds + self.rng.random() * span) * SECOND)

    def run(self) -> Scenario:
        for day in range(self.config.days):
            for symbol in self.symbols.values():
                # The street opens a moment before the customers arrive.
                self.at(self.session_open(day), self._street_loop(symbol))
        queue = self._queue
        while queue:
            t, _, action = heapq.heappop(queue)
            action(t)
        return Scenario(
            self.config,
            self.documents,
            self.account_users,
            self.episodes,
            frozenset(self.insiders),
        )


_SYSTEM = {"kind": "system", "id": "tradeguard"}


# -- actors --------------------------------------------------------------------------------


def _placing(
    sim: MarketSimulation,
    account: str,
    symbol: str,
    side: str,
    quantity: int,
    *,
    price: Callable[[], int | None] = lambda: None,
    into: list[str] | None = None,
    tif: str = "day",
) -> Callable[[int], None]:
    """An action that places an order at the time it runs (`price()` then: None = market)."""

    def act(t: int) -> None:
        order_id = sim.place(t, account, symbol, side, quantity, limit_ticks=price(), tif=tif)
        if into is not None:
            into.append(order_id)

    return act


def _cancelling(
    sim: MarketSimulation, orders: list[str], *, spread_ms: int = 0
) -> Callable[[int], None]:
    """An action that cancels the listed orders (those still resting), a few ms apart."""

    def act(t: int) -> None:
        for order_id in orders:
            sim.cancel(t, order_id)
            if spread_ms:
                t += sim.rng.randint(spread_ms // 5 or 1, spread_ms) * NS_PER_SECOND // 1000

    return act


def _retail(sim: MarketSimulation, account: str, mean_gap_seconds: float) -> None:
    rng = sim.rng
    last_close = sim.session_close(sim.config.days - 1)

    def act(t: int) -> None:
        if sim.in_session(t):
            symbol = sim.pick_symbol()
            bid, ask = sim.touch(symbol)
            side = "buy" if rng.random() < 0.5 else "sell"
            quantity = sim.lot(10, 300, 10)
            roll = rng.random()
            if roll < 0.45:
                sim.place(t, account, symbol, side, quantity, limit_ticks=None)
            elif roll < 0.7:
                marketable = ask if side == "buy" else bid
                sim.place(t, account, symbol, side, quantity, limit_ticks=marketable)
            else:
                away = rng.randint(1, 8)
                price = max(1, bid - away if side == "buy" else ask + away)
                order_id = sim.place(t, account, symbol, side, quantity, limit_ticks=price)
                if rng.random() < 0.6:
                    later = t + int(rng.expovariate(1 / 300) * SECOND) + SECOND
                    sim.at(later, _cancelling(sim, [order_id]))
        nxt = t + int(rng.expovariate(1 / mean_gap_seconds) * SECOND) + SECOND
        if nxt < last_close:
            sim.at(nxt if sim.in_session(nxt) else _next_open(sim, nxt), act)

    sim.at(sim.session_open(0) + int(rng.random() * mean_gap_seconds * SECOND), act)


def _next_open(sim: MarketSimulation, t: int) -> int:
    day = max(0, (t - FIRST_OPEN_NS) // DAY_NS + 1)
    return sim.session_open(day) + int(sim.rng.random() * 600 * SECOND)


def _market_maker(
    sim: MarketSimulation, account: str, symbols: list[str], *, skewed: bool = False
) -> None:
    """Quotes both sides at the touch and re-quotes often; now and then takes liquidity to
    shed inventory. A skewed maker shows much more on one side than the other."""
    rng = sim.rng
    quotes: dict[str, tuple[str, str, int, int]] = {}
    lean: dict[str, bool] = {}  # True: the bid is the big side

    def requote(symbol: str) -> Callable[[int], None]:
        def act(t: int) -> None:
            if not sim.in_session(t):
                day = (t - FIRST_OPEN_NS) // DAY_NS + 1
                if day < sim.config.days:
                    sim.at(sim.session_open(day) + 5 * SECOND, act)
                return
            bid, ask = sim.touch(symbol)
            old = quotes.get(symbol)
            stale = (
                old is None
                or not sim.resting(old[0])
                or not sim.resting(old[1])
                or abs(old[2] - bid) >= 2
                or abs(old[3] - ask) >= 2
                or rng.random() < 0.3
            )
            if stale:
                if old is not None:
                    sim.cancel(t, old[0])
                    sim.cancel(t, old[1])
                bid_size = ask_size = sim.lot(200, 600)
                if skewed:
                    # The lean follows the inventory: a short maker shows a big bid, a long
                    # one a big offer.
                    held = sim.positions.get((account, symbol), 0)
                    if held:
                        lean[symbol] = held < 0
                    big, small = sim.lot(1500, 3000), sim.lot(200, 400)
                    bid_size, ask_size = (big, small) if lean.get(symbol, True) else (small, big)
                new_bid = sim.place(t, account, symbol, "buy", bid_size, limit_ticks=bid)
                new_ask = sim.place(t, account, symbol, "sell", ask_size, limit_ticks=ask)
                quotes[symbol] = (new_bid, new_ask, bid, ask)
                if rng.random() < 0.05:
                    # Shedding inventory: take the street's quote on one side.
                    side = "buy" if rng.random() < 0.5 else "sell"
                    price = ask if side == "buy" else bid
                    sim.place(
                        t, account, symbol, side, sim.lot(100, 300), limit_ticks=price, tif="ioc"
                    )
            sim.at(t + int((5 + rng.random() * 10) * SECOND), act)

        return act

    for symbol in symbols:
        sim.at(sim.session_open(0) + 5 * SECOND, requote(symbol))
    sim.episodes.append(
        Episode(
            EpisodeKind.SKEWED_MARKET_MAKER if skewed else EpisodeKind.MARKET_MAKER,
            sim.account_users[account],
            (account,),
            ",".join(symbols),
            sim.session_open(0),
            sim.session_close(sim.config.days - 1),
        )
    )


def _accumulation(sim: MarketSimulation, account: str) -> None:
    """Building a position within minutes: several aggressive buys, one small sale."""
    rng = sim.rng
    symbol = sim.pick_symbol()
    t = sim.random_time()
    episode = _label(sim, EpisodeKind.ACCUMULATION, (account,), symbol, t)
    when = t
    for n in range(4):
        sim.at(when, _placing(sim, account, symbol, "buy", sim.lot(300, 600)))
        if n == 1:
            sim.at(when + 20 * SECOND, _placing(sim, account, symbol, "sell", sim.lot(100, 200)))
        when += int((30 + rng.random() * 60) * SECOND)
    episode.end_ns = when


def _label(
    sim: MarketSimulation, kind: EpisodeKind, accounts: tuple[str, ...], symbol: str, t: int
) -> Episode:
    episode = Episode(kind, sim.account_users[accounts[0]], accounts, symbol, t, t)
    sim.episodes.append(episode)
    return episode


def _day_trade(sim: MarketSimulation, account: str) -> None:
    """One round trip within a session: bought, and sold again tens of minutes later."""
    symbol = sim.pick_symbol()
    t = sim.random_time(margin_seconds=3600)
    quantity = sim.lot(100, 500)
    later = t + int((600 + sim.rng.random() * 2400) * SECOND)
    _label(sim, EpisodeKind.DAY_TRADE, (account,), symbol, t).end_ns = later
    sim.at(t, _placing(sim, account, symbol, "buy", quantity))
    sim.at(later, _placing(sim, account, symbol, "sell", quantity))


def _swing_trade(sim: MarketSimulation, account: str) -> None:
    """Bought in the first session, sold in the last: the same stock, days apart."""
    symbol = sim.pick_symbol()
    quantity = sim.lot(100, 500)
    buy_at = sim.session_open(0) + int((1800 + sim.rng.random() * 18_000) * SECOND)
    last = sim.config.days - 1
    sell_at = sim.session_open(last) + int((1800 + sim.rng.random() * 18_000) * SECOND)
    _label(sim, EpisodeKind.SWING_TRADE, (account,), symbol, buy_at).end_ns = sell_at
    sim.at(buy_at, _placing(sim, account, symbol, "buy", quantity))
    sim.at(sell_at, _placing(sim, account, symbol, "sell", quantity))


def _large_cancel(sim: MarketSimulation, account: str) -> None:
    """A big limit order near the touch, withdrawn after a while: nothing else traded."""
    rng = sim.rng
    symbol = sim.pick_symbol()
    t = sim.random_time()
    side = "buy" if rng.random() < 0.5 else "sell"
    orders: list[str] = []

    def price() -> int:
        bid, ask = sim.touch(symbol)
        return max(1, bid - rng.randint(0, 3) if side == "buy" else ask + rng.randint(0, 3))

    later = t + int((10 + rng.random() * 50) * SECOND)
    _label(sim, EpisodeKind.LARGE_CANCEL, (account,), symbol, t).end_ns = later
    sim.at(t, _placing(sim, account, symbol, side, sim.lot(2000, 6000), price=price, into=orders))
    sim.at(later, _cancelling(sim, orders))


def _slow_cancel(sim: MarketSimulation, account: str) -> None:
    """A big genuine bid, a small sale of shares held, and the bid withdrawn minutes later."""
    rng = sim.rng
    symbol = sim.pick_symbol()
    t = sim.random_time()
    orders: list[str] = []
    sale = t + int((5 + rng.random() * 15) * SECOND)
    withdraw = sale + int((90 + rng.random() * 180) * SECOND)
    _label(sim, EpisodeKind.SLOW_CANCEL, (account,), symbol, t).end_ns = withdraw
    below = lambda: max(1, sim.touch(symbol)[0] - 1)  # noqa: E731 - one expression
    sim.at(t, _placing(sim, account, symbol, "buy", sim.lot(2000, 6000), price=below, into=orders))
    sim.at(sale, _placing(sim, account, symbol, "sell", sim.lot(100, 300)))
    sim.at(withdraw, _cancelling(sim, orders))


# -- manipulation ----------------------------------------------------------------------


def _wash_cross(sim: MarketSimulation) -> None:
    """Two accounts of one user trade with each other at a price inside the spread."""
    rng = sim.rng
    _, (first, second) = sim.new_user(2)
    wide = [
        name
        for name in sim.symbols
        if sim.symbols[name].model.quote().ask - sim.symbols[name].model.quote().bid > TICK
    ]
    symbol = rng.choice(wide) if wide else sim.pick_symbol()
    t = sim.random_time()
    episode = _label(sim, EpisodeKind.WASH_CROSS, (first, second), symbol, t)
    when = t
    for n in range(rng.randint(2, 4)):
        seller, buyer = (first, second) if n % 2 == 0 else (second, first)
        quantity = sim.lot(200, 1000)
        prices: list[int] = []

        def inside(prices: list[int] = prices) -> int:
            bid, ask = sim.touch(symbol)
            prices.append((bid + ask + 1) // 2 if ask - bid > 1 else ask)
            return prices[0]

        sim.at(when, _placing(sim, seller, symbol, "sell", quantity, price=inside))

        def same(prices: list[int] = prices) -> int:
            return prices[0]

        sim.at(when + SECOND // 2, _placing(sim, buyer, symbol, "buy", quantity, price=same))
        episode.end_ns = when + SECOND // 2
        when += int((30 + rng.random() * 90) * SECOND)


def _wash_round_trip(sim: MarketSimulation) -> None:
    """One account buys and sells the same shares against the street, again and again."""
    rng = sim.rng
    _, (account,) = sim.new_user(1)
    symbol = sim.pick_symbol()
    t = sim.random_time()
    episode = _label(sim, EpisodeKind.WASH_ROUND_TRIP, (account,), symbol, t)
    quantity = sim.lot(200, 500)
    when = t
    for _ in range(rng.randint(3, 5)):
        sim.at(when, _placing(sim, account, symbol, "buy", quantity))
        when += int((10 + rng.random() * 30) * SECOND)
        sim.at(when, _placing(sim, account, symbol, "sell", quantity))
        episode.end_ns = when
        when += int((10 + rng.random() * 30) * SECOND)


def _spoof(sim: MarketSimulation, *, layered: bool) -> None:
    """Fake interest near the touch on one side, a real trade on the other, fakes pulled."""
    rng = sim.rng
    _, (account,) = sim.new_user(1)
    symbol = sim.pick_symbol()
    t = sim.random_time()
    kind = EpisodeKind.LAYER if layered else EpisodeKind.SPOOF
    episode = _label(sim, kind, (account,), symbol, t)
    fake_side = "buy" if rng.random() < 0.5 else "sell"
    genuine_side = "sell" if fake_side == "buy" else "buy"
    fakes: list[str] = []
    levels = rng.randint(3, 5) if layered else 1

    def show(at: int) -> None:
        bid, ask = sim.touch(symbol)
        for level in range(1, levels + 1):
            # Just behind the touch and further: shown, but not first in line.
            price = bid - level - 1 if fake_side == "buy" else ask + level + 1
            size = sim.lot(1000, 3000) if layered else sim.lot(3000, 10_000)
            fakes.append(sim.place(at, account, symbol, fake_side, size, limit_ticks=max(1, price)))

    trade_at = t + int((0.5 + rng.random() * 4) * SECOND)
    cancel_at = trade_at + int((0.3 + rng.random() * 4) * SECOND)
    episode.end_ns = cancel_at + SECOND
    sim.at(t, show)

    def touch() -> int:
        # The genuine trade takes the street's quote on the other side (an IOC at the
        # touch), never as far as the fake orders (it would trade with them).
        bid, ask = sim.touch(symbol)
        shown = [sim.price_of(order_id) for order_id in fakes if sim.resting(order_id)]
        if genuine_side == "buy":
            return min([ask, *(price - 1 for price in shown)])
        return max([bid, *(price + 1 for price in shown)])

    genuine: list[str] = []
    sim.at(
        trade_at,
        _placing(
            sim,
            account,
            symbol,
            genuine_side,
            sim.lot(100, 400),
            price=touch,
            tif="ioc",
            into=genuine,
        ),
    )

    def withdraw(at: int) -> None:
        episode.completed = any(sim.filled.get(order_id) for order_id in genuine)
        _cancelling(sim, fakes, spread_ms=200)(at)

    sim.at(cancel_at, withdraw)


MINUTE = 60 * SECOND
RAMP_STEPS = 10


def _ramp(sim: MarketSimulation, symbol: str, start: int, rise: float) -> list[int]:
    """The street's price rises by `rise` in `RAMP_STEPS` steps nine minutes apart from
    `start`; the steps' times."""
    factor = Decimal(str(round(rise ** (1 / RAMP_STEPS), 6)))
    steps = [start + k * 9 * MINUTE for k in range(RAMP_STEPS)]
    for when in steps:
        sim.at(when, lambda _t: sim.move_price(symbol, factor))
    return steps


def _marketable_buy(sim: MarketSimulation, symbol: str) -> Callable[[], int]:
    return lambda: sim.touch(symbol)[1] + 1


def _selling_position(
    sim: MarketSimulation, account: str, symbol: str, fraction: float, into: list[int]
) -> Callable[[int], None]:
    """An action that sells `fraction` of the account's position just below the bid."""

    def act(t: int) -> None:
        held = sim.positions.get((account, symbol), 0)
        quantity = held if fraction >= 1 else int(held * fraction)
        if quantity > 0:
            bid = sim.touch(symbol)[0]
            sim.place(t, account, symbol, "sell", quantity, limit_ticks=max(1, bid - 1))
            into.append(t)

    return act


def _pump_and_dump(sim: MarketSimulation, symbol: str, day: int) -> None:
    """A user with two accounts and another with a new one buy a symbol (more as its price
    climbs, on their promotion), the price rises 25-45% in ninety minutes, and all three
    accounts sell near the top; the price then falls back."""
    rng = sim.rng
    _, (first, second) = sim.new_user(2)
    other, (third,) = sim.new_user(1)
    accounts = (first, second, third)
    size = max(1.0, sim.symbols[symbol].weight)
    t0 = sim.session_open(day) + int((15 + rng.random() * 180) * MINUTE)
    episode = _label(sim, EpisodeKind.PUMP_AND_DUMP, accounts, symbol, t0)
    episode.others = (other,)
    for account in accounts:
        for _ in range(2):
            when = t0 + int(rng.random() * 30 * MINUTE)
            quantity = sim.lot(int(1000 * size), int(3000 * size))
            sim.at(
                when,
                _placing(sim, account, symbol, "buy", quantity, price=_marketable_buy(sim, symbol)),
            )
    rise = 1.25 + rng.random() * 0.2
    for when in _ramp(sim, symbol, t0 + 30 * MINUTE, rise):
        quantity = sim.lot(int(500 * size), int(1500 * size))
        buyer = rng.choice(accounts)
        sim.at(
            when + 20 * SECOND,
            _placing(sim, buyer, symbol, "buy", quantity, price=_marketable_buy(sim, symbol)),
        )
    peak = t0 + 30 * MINUTE + (RAMP_STEPS - 1) * 9 * MINUTE
    sales: list[int] = []
    for account in accounts:
        first_sale = peak + int((3 + rng.random() * 6) * MINUTE)
        sim.at(first_sale, _selling_position(sim, account, symbol, 0.5, sales))
        second_sale = first_sale + int((1 + rng.random() * 6) * MINUTE)
        sim.at(second_sale, _selling_position(sim, account, symbol, 1.0, sales))
    episode.end_ns = peak + 16 * MINUTE
    back = Decimal(str(round((1 / rise) ** (1 / 3), 6)))
    for k in range(3):
        sim.at(peak + (20 + 10 * k) * MINUTE, lambda _t: sim.move_price(symbol, back))


def _rally(sim: MarketSimulation, symbol: str, day: int) -> None:
    """A real rally (news): the price rises as much as in a pump; a large buyer keeps buying
    and holds; three unrelated traders who bought early sell near the top."""
    rng = sim.rng
    _, (holder,) = sim.new_user(1)
    size = max(1.0, sim.symbols[symbol].weight)
    t0 = sim.session_open(day) + int((15 + rng.random() * 180) * MINUTE)
    steps = _ramp(sim, symbol, t0 + 30 * MINUTE, 1.25 + rng.random() * 0.2)
    peak = steps[-1]
    _label(sim, EpisodeKind.RALLY, (holder,), symbol, t0).end_ns = peak + 30 * MINUTE
    for when in steps[::2]:
        quantity = sim.lot(int(1000 * size), int(3000 * size))
        sim.at(
            when + 30 * SECOND,
            _placing(sim, holder, symbol, "buy", quantity, price=_marketable_buy(sim, symbol)),
        )
    for _ in range(3):
        _, (taker,) = sim.new_user(1)
        bought = t0 + int(rng.random() * 40 * MINUTE)
        sold = peak + int((1 + rng.random() * 15) * MINUTE)
        _label(sim, EpisodeKind.PROFIT_TAKING, (taker,), symbol, bought).end_ns = sold
        sim.at(
            bought,
            _placing(
                sim, taker, symbol, "buy", sim.lot(200, 600), price=_marketable_buy(sim, symbol)
            ),
        )
        sim.at(sold, _selling_position(sim, taker, symbol, 1.0, []))
    sim.at(peak + 60 * MINUTE, lambda _t: sim.move_price(symbol, Decimal("0.97")))


def _marketable(sim: MarketSimulation, symbol: str, side: str) -> Callable[[], int]:
    """A limit one tick through the street's quote: takes it, and the rest is taken soon."""

    def price() -> int:
        bid, ask = sim.touch(symbol)
        return ask + 1 if side == "buy" else max(1, bid - 1)

    return price


def _trading_around_a_client_order(
    sim: MarketSimulation, kind: EpisodeKind, avoid: set[tuple[str, int]]
) -> None:
    """A large client order (USD 150,000-400,000, taking the street's quote) and a trader
    around it: staff ahead of it who unwind minutes later (FRONT_RUN), a customer doing the
    same (CUSTOMER_AHEAD), staff after it (STAFF_AFTER), staff ahead who hold (STAFF_HOLDS)."""
    rng = sim.rng
    _, (trader,) = sim.new_user(1)
    if kind is not EpisodeKind.CUSTOMER_AHEAD:
        sim.insiders.add(trader)
    _, (client,) = sim.new_user(1)
    while True:  # not in a symbol and session the firm restricts (that is another story)
        symbol = sim.pick_symbol()
        t = sim.random_time(margin_seconds=3600)
        if (symbol, (t - FIRST_OPEN_NS) // DAY_NS) not in avoid:
            break
    side = "buy" if rng.random() < 0.5 else "sell"
    other = "sell" if side == "buy" else "buy"
    gap = int((30 + rng.random() * 210) * SECOND)
    client_at, trader_at = (t, t + gap) if kind is EpisodeKind.STAFF_AFTER else (t + gap, t)
    unwind_at = max(client_at, trader_at) + int((300 + rng.random() * 900) * SECOND)
    episode = _label(sim, kind, (trader,), symbol, trader_at)
    episode.end_ns = unwind_at
    quantity = sim.lot(300, 1000)
    target = 150_000 + rng.random() * 250_000

    def client_order(at: int) -> None:
        bid, ask = sim.touch(symbol)
        price = from_ticks(ask if side == "buy" else bid, TICK)
        size = max(100, int(Decimal(str(round(target, 2))) / price) // 100 * 100)
        sim.place(at, client, symbol, side, size, limit_ticks=_marketable(sim, symbol, side)())

    sim.at(
        trader_at,
        _placing(sim, trader, symbol, side, quantity, price=_marketable(sim, symbol, side)),
    )
    sim.at(client_at, client_order)
    if kind is not EpisodeKind.STAFF_HOLDS:
        sim.at(
            unwind_at,
            _placing(sim, trader, symbol, other, quantity, price=_marketable(sim, symbol, other)),
        )


def _restricted_listing(sim: MarketSimulation, symbol: str, day: int) -> None:
    """The firm restricts a symbol in the afternoon: a staff member bought it an hour or two
    before (RESTRICTED_AHEAD); another bought it in the morning, hours before
    (STAFF_LONG_BEFORE); a third bought and sold it shortly before (STAFF_ROUND_TRIP)."""
    rng = sim.rng
    listing = sim.session_open(day) + int((300 + rng.random() * 60) * MINUTE)
    staff = []
    for _ in range(3):
        _, (account,) = sim.new_user(1)
        sim.insiders.add(account)
        staff.append(account)
    ahead, early, round_trip = staff
    bought = listing - int((30 + rng.random() * 150) * MINUTE)
    _label(sim, EpisodeKind.RESTRICTED_AHEAD, (ahead,), symbol, bought).end_ns = listing
    buy = _marketable(sim, symbol, "buy")
    sim.at(bought, _placing(sim, ahead, symbol, "buy", sim.lot(500, 2000), price=buy))
    morning = sim.session_open(day) + int((5 + rng.random() * 45) * MINUTE)
    _label(sim, EpisodeKind.STAFF_LONG_BEFORE, (early,), symbol, morning).end_ns = listing
    sim.at(morning, _placing(sim, early, symbol, "buy", sim.lot(500, 2000), price=buy))
    start = listing - int((60 + rng.random() * 60) * MINUTE)
    _label(sim, EpisodeKind.STAFF_ROUND_TRIP, (round_trip,), symbol, start).end_ns = listing
    quantity = sim.lot(500, 2000)
    sim.at(start, _placing(sim, round_trip, symbol, "buy", quantity, price=buy))
    sell = _marketable(sim, symbol, "sell")
    # Sold 36-50 minutes later: a round trip, and no front-running of whatever large order
    # the market brings meanwhile (that unwind would be within 35 minutes).
    later = start + int((36 + rng.random() * 14) * MINUTE)
    sim.at(later, _placing(sim, round_trip, symbol, "sell", quantity, price=sell))
    sim.at(listing, lambda t: sim.restrict(t, symbol))


def _moving(
    sim: MarketSimulation, symbol: str, factor: Decimal, rng: random.Random | None = None
) -> Callable[[int], None]:
    return lambda _t: sim.move_price(symbol, factor, rng)


def _marking_the_close(sim: MarketSimulation, symbol: str, day: int, *, honest: bool) -> None:
    """In the last four minutes: one trader takes the street's quote four to six times on
    one side while the price walks 0.4-0.8% its way before each trade (MARK_CLOSE), and is
    put back at the next open; or a fund buys a large amount without moving it
    (CLOSING_BUYER)."""
    rng = sim.rng
    _, (trader,) = sim.new_user(1)
    close = sim.session_close(day)
    start = close - int((200 + rng.random() * 60) * SECOND)
    trades = rng.randint(4, 6) if not honest else 3
    side = "buy" if honest or rng.random() < 0.5 else "sell"
    kind = EpisodeKind.CLOSING_BUYER if honest else EpisodeKind.MARK_CLOSE
    episode = _label(sim, kind, (trader,), symbol, start)
    step = (close - 15 * SECOND - start) // trades
    total = Decimal(1)
    for k in range(trades):
        at = start + k * step
        if not honest:
            factor = Decimal(str(round(1 + 0.004 + rng.random() * 0.004, 6)))
            factor = factor if side == "buy" else 1 / factor
            total *= factor
            sim.at(at - 6 * SECOND, _moving(sim, symbol, factor))
        quantity = sim.lot(300, 800) if not honest else sim.lot(1000, 2000)
        sim.at(
            at, _placing(sim, trader, symbol, side, quantity, price=_marketable(sim, symbol, side))
        )
        episode.end_ns = at
    if not honest and day + 1 < sim.config.days:
        back = 1 / total
        sim.at(sim.session_open(day + 1) + SECOND, lambda _t: sim.move_price(symbol, back))


def _quote_stuffing(sim: MarketSimulation, *, honest: bool) -> None:
    """A burst of 100-300 orders a few ticks from the touch, each cancelled milliseconds
    later (STUFFING); or an algorithm slicing an order into 60-100 IOC orders within
    seconds, which trade what they can and expire (RAPID_SLICING)."""
    rng = sim.rng
    _, (trader,) = sim.new_user(1)
    symbol = sim.pick_symbol()
    t = sim.random_time()
    kind = EpisodeKind.RAPID_SLICING if honest else EpisodeKind.STUFFING
    episode = _label(sim, kind, (trader,), symbol, t)
    side = "buy" if rng.random() < 0.5 else "sell"
    when = t
    for _ in range(rng.randint(60, 100) if honest else rng.randint(100, 300)):
        if honest:
            price = _marketable(sim, symbol, side)
            sim.at(when, _placing(sim, trader, symbol, side, 100, price=price, tif="ioc"))
            when += int((10 + rng.random() * 30) * SECOND / 1000)
            continue
        away = rng.randint(3, 10)
        orders: list[str] = []

        def price(away: int = away) -> int:
            bid, ask = sim.touch(symbol)
            return max(1, bid - away) if side == "buy" else ask + away

        sim.at(when, _placing(sim, trader, symbol, side, 100, price=price, into=orders))
        sim.at(when + int((2 + rng.random() * 18) * SECOND / 1000), _cancelling(sim, orders))
        when += int((2 + rng.random() * 6) * SECOND / 1000)
    episode.end_ns = when + 20 * SECOND // 1000


def _pumps_and_front_running(sim: MarketSimulation, config: ScenarioConfig) -> None:
    """MAN-3 and MAN-4 episodes with their near-misses."""
    rng = sim.rng
    names = list(sim.symbols)
    # Restricted listings in half the symbols and sessions at most; the staff trading around
    # client orders keeps to the others.
    listings = [(name, day) for day in range(config.days) for name in names]
    rng.shuffle(listings)
    listed = listings[: min(config.episodes_per_kind, len(listings) // 2)]
    for name, day in listed:
        _restricted_listing(sim, name, day)
    for n in range(config.episodes_per_kind):
        _trading_around_a_client_order(sim, EpisodeKind.FRONT_RUN, set(listed))
        if n % 2 == 0:
            for kind in (
                EpisodeKind.CUSTOMER_AHEAD,
                EpisodeKind.STAFF_AFTER,
                EpisodeKind.STAFF_HOLDS,
            ):
                _trading_around_a_client_order(sim, kind, set(listed))
    closes = [(name, day) for day in range(config.days) for name in names]
    rng.shuffle(closes)
    marked = min(config.episodes_per_kind, max(1, len(closes) * 2 // 3))
    for n, (name, day) in enumerate(closes):
        if n < marked:
            _marking_the_close(sim, name, day, honest=False)
        elif n < marked + max(1, config.episodes_per_kind // 2):
            _marking_the_close(sim, name, day, honest=True)
    for n in range(config.episodes_per_kind):
        _quote_stuffing(sim, honest=False)
        if n % 2 == 0:
            _quote_stuffing(sim, honest=True)
    # Pumps and rallies move a symbol's price for hours: one per symbol and session, so that
    # no two share a symbol within the pump model's window.
    slots = [(name, day) for day in range(config.days) for name in names]
    rng.shuffle(slots)
    pumps = min(config.episodes_per_kind, len(slots) // 2)
    for n, (name, day) in enumerate(slots[: 2 * pumps]):
        if n % 2 == 0:
            _pump_and_dump(sim, name, day)
        else:
            _rally(sim, name, day)


def _momentum_burst(
    sim: MarketSimulation,
    rng: random.Random,
    account: str,
    symbol: str,
    *,
    side: str,
    start: int,
    orders: int,
    step: float,
) -> tuple[int, Decimal]:
    """`orders` IOC orders one tick through the street's quote, 7-10 s apart, each after the
    street moved `step` (and at least a tick and a half) the trader's way: the burst takes
    out a new price level each time. (The end, the price's total factor.)"""
    mid = float(sim.symbols[symbol].model.mid)
    step = max(step, 1.5 * float(TICK) / mid)
    total = Decimal(1)
    when = start
    for _ in range(orders):
        factor = Decimal(str(round(1 + step * (0.9 + 0.2 * rng.random()), 6)))
        factor = factor if side == "buy" else 1 / factor
        total *= factor
        sim.at(when - 6 * SECOND, _moving(sim, symbol, factor, rng))
        quantity = sim.lot(300, 500) if rng.random() < 0.5 else 100 * rng.randint(3, 5)
        price = _marketable(sim, symbol, side)
        sim.at(when, _placing(sim, account, symbol, side, quantity, price=price, tif="ioc"))
        when += int((7 + 3 * rng.random()) * SECOND)
    return when, total


def _momentum_ignition(
    sim: MarketSimulation,
    rng: random.Random,
    kind: EpisodeKind,
    busy: list[tuple[str, int, int]],
) -> None:
    """Momentum ignition and its honest near-misses, each by a trader of its own.

    MOMENTUM_IGNITION: four to six IOC orders on one side within a minute, each taking out a
    new level as the street moves 0.4-0.6% their way (the trader's pressure); others
    follow (another 0.5% move); within one to four minutes the trader unwinds: a passive
    order resting at the moved price, filled as the price goes on, and for the rest at
    times one marketable order; the price later falls back. WORKING_ORDER: the same bursts
    three times ten minutes apart and no reversal. NEWS_BUYER: the price jumps 3% on news,
    the trader buys four times within a minute and holds. SELLS_DAYS_LATER: an ignition-
    like burst, sold at the next session (or hours later in a one-session market).
    STOP_LOSS: a burst, then the price turns and the trader sells at a loss."""
    _, (trader,) = sim.new_user(1)
    # How long the episode moves the price (until it has fallen back).
    lasts = _MOMENTUM_LASTS[kind]
    slot = _free_time(sim, rng, busy, lasts)
    if slot is None:
        return  # no room left in this market: fewer episodes, none on top of another
    symbol, t = slot
    day = (t - FIRST_OPEN_NS) // DAY_NS
    busy.append((symbol, t - 2 * MINUTE, t + lasts + 2 * MINUTE))
    side = "buy" if rng.random() < 0.5 else "sell"
    episode = _label(sim, kind, (trader,), symbol, t)
    if kind is EpisodeKind.NEWS_BUYER:
        _news_buyer(sim, rng, episode)
        return
    orders = rng.randint(4, 6)
    step = 0.004 + 0.002 * rng.random()
    if kind is EpisodeKind.WORKING_ORDER:
        end, moved = t, Decimal(1)
        for _ in range(3):
            end, total = _momentum_burst(
                sim, rng, trader, symbol, side=side, start=end, orders=orders, step=step
            )
            moved *= total
            end += 10 * MINUTE
        episode.end_ns = end
        sim.at(end + 2 * MINUTE, _moving(sim, symbol, Decimal(str(round(1 / moved, 6))), rng))
        return
    end, total = _momentum_burst(
        sim, rng, trader, symbol, side=side, start=t, orders=orders, step=step
    )
    if kind is EpisodeKind.SELLS_DAYS_LATER:
        later = (
            sim.session_open(day + 1) + int((30 + rng.random() * 120) * MINUTE)
            if day + 1 < sim.config.days
            else end + int((90 + rng.random() * 60) * MINUTE)
        )
        sim.at(later, _unwinding(sim, trader, symbol, side, passive=False))
        episode.end_ns = later
        back = Decimal(str(round(1 / total, 6)))
        sim.at(end + 10 * MINUTE, _moving(sim, symbol, back, rng))
        return
    if kind is EpisodeKind.STOP_LOSS:
        turn = Decimal(str(round(0.97 if side == "buy" else 1 / 0.97, 6)))
        sim.at(end + 20 * SECOND, _moving(sim, symbol, turn, rng))
        unwind = end + int((60 + rng.random() * 120) * SECOND)
        sim.at(unwind, _unwinding(sim, trader, symbol, side, passive=False))
        episode.end_ns = unwind + 30 * SECOND
        back = Decimal(str(round(1 / (total * turn), 6)))
        sim.at(unwind + 5 * MINUTE, _moving(sim, symbol, back, rng))
        return
    # Others follow: the price goes on its way a little; the trader rests an order at the
    # moved price on the other side, which the rising market fills, and sometimes takes
    # the rest.
    follow = Decimal(str(round(1.005, 6)))
    follow = follow if side == "buy" else 1 / follow
    unwind = end + int((30 + rng.random() * 150) * SECOND)
    sim.at(unwind, _unwinding(sim, trader, symbol, side, passive=True))
    sim.at(unwind + 2 * SECOND, _moving(sim, symbol, follow, rng))
    finish = unwind + 15 * SECOND
    if rng.random() < 0.5:
        sim.at(finish, _unwinding(sim, trader, symbol, side, passive=False))
    episode.end_ns = finish + 30 * SECOND
    back = Decimal(str(round(1 / (total * follow), 6)))
    sim.at(finish + int((3 + rng.random() * 3) * MINUTE), _moving(sim, symbol, back, rng))


_MOMENTUM_LASTS = {
    EpisodeKind.MOMENTUM_IGNITION: 15 * MINUTE,
    EpisodeKind.WORKING_ORDER: 40 * MINUTE,
    EpisodeKind.NEWS_BUYER: 25 * MINUTE,
    EpisodeKind.SELLS_DAYS_LATER: 15 * MINUTE,
    EpisodeKind.STOP_LOSS: 15 * MINUTE,
}


def _news_buyer(sim: MarketSimulation, rng: random.Random, episode: Episode) -> None:
    """The price jumps 3% on news; the trader buys four times within a minute and holds."""
    symbol, t = episode.symbol, episode.start_ns
    sim.at(t - 20 * SECOND, _moving(sim, symbol, Decimal("1.03"), rng))
    end, total = _momentum_burst(
        sim, rng, episode.accounts[0], symbol, side="buy", start=t, orders=4, step=0.001
    )
    episode.end_ns = end + 15 * MINUTE
    # The news is priced in; the price drifts back where it was (other episodes in the
    # symbol later see the market they would have seen).
    back = Decimal(str(round(1 / (total * Decimal("1.03")), 6)))
    sim.at(end + 18 * MINUTE, _moving(sim, symbol, back, rng))


def _free_time(
    sim: MarketSimulation, rng: random.Random, busy: list[tuple[str, int, int]], lasts: int
) -> tuple[str, int] | None:
    """A symbol and a moment, uniformly among those at least 20 minutes from the open and
    from which `lasts` ends 20 minutes before the close and overlaps no span in `busy`;
    None when there is none."""
    free: list[tuple[str, int, int]] = []
    for day in range(sim.config.days):
        low = sim.session_open(day) + 20 * MINUTE
        high = sim.session_close(day) - 20 * MINUTE - lasts
        for symbol in sim.symbols:
            spans = sorted((a - lasts, b) for name, a, b in busy if name == symbol and b >= low)
            start = low
            for a, b in spans:
                if a > high:
                    break
                if a > start:
                    free.append((symbol, start, a))
                start = max(start, b)
            if start < high:
                free.append((symbol, start, high))
    total = sum(b - a for _, a, b in free)
    if total <= 0:
        return None
    point = int(rng.random() * total)
    for symbol, a, b in free:
        if point < b - a:
            return symbol, a + point
        point -= b - a
    return None  # pragma: no cover - the point lies within the total


def _unwinding(
    sim: MarketSimulation, account: str, symbol: str, side: str, *, passive: bool
) -> Callable[[int], None]:
    """An action that trades out of the account's position from a burst on `side`: a limit
    at the far touch (resting, passive) or one tick through the near touch (marketable)."""

    def act(t: int) -> None:
        held = sim.positions.get((account, symbol), 0)
        quantity = held if side == "buy" else -held
        if quantity <= 0:
            return
        bid, ask = sim.touch(symbol)
        if side == "buy":
            price = ask if passive else max(1, bid - 1)
            sim.place(t, account, symbol, "sell", quantity, limit_ticks=price)
        else:
            price = max(1, bid) if passive else ask + 1
            sim.place(t, account, symbol, "buy", quantity, limit_ticks=price)

    return act


_LASTING = frozenset({EpisodeKind.PUMP_AND_DUMP, EpisodeKind.RALLY})


def _momentum(sim: MarketSimulation, config: ScenarioConfig) -> None:
    """Momentum ignition episodes and their near-misses, drawn from a generator of their own
    (so the rest of the market is drawn as it was without them)."""
    # Not for security: a seeded generator, so a seed reproduces its market; seeded apart
    # from the market's own, so that everything else is drawn as it was without these.
    rng = random.Random(f"momentum-{config.seed}")  # noqa: S311 - reproducible, not secret
    # The other detectors' episodes, two minutes either side, and pumps and rallies from
    # ten minutes before until their price has fallen back (half an hour after).
    busy = [
        (episode.symbol, episode.start_ns - 10 * MINUTE, episode.end_ns + 30 * MINUTE)
        if episode.kind in _LASTING
        else (episode.symbol, episode.start_ns - 2 * MINUTE, episode.end_ns + 2 * MINUTE)
        for episode in sim.episodes
        if episode.positive or episode.kind in _LASTING
    ]
    for n in range(config.episodes_per_kind):
        _momentum_ignition(sim, rng, EpisodeKind.MOMENTUM_IGNITION, busy)
        if n % 2 == 0:
            for kind in (
                EpisodeKind.WORKING_ORDER,
                EpisodeKind.NEWS_BUYER,
                EpisodeKind.SELLS_DAYS_LATER,
                EpisodeKind.STOP_LOSS,
            ):
                _momentum_ignition(sim, rng, kind, busy)


def generate(config: ScenarioConfig) -> Scenario:
    """The market of `config.seed`: background trading, near-misses, labelled manipulation."""
    if config.accounts < 10 or config.days < 1 or config.episodes_per_kind < 0:
        raise ValueError("at least 10 accounts, 1 day and no negative episode count")
    sim = MarketSimulation(config)
    rng = sim.rng
    population = config.accounts
    makers = max(1, population // 60)
    day_traders = max(1, population // 10)
    swing_traders = max(1, population // 20)
    retail = population - makers - day_traders - swing_traders
    for _ in range(retail):
        _, (account,) = sim.new_user(1)
        _retail(sim, account, mean_gap_seconds=rng.uniform(600, 2400))
    names = list(sim.symbols)
    for n in range(makers):
        _, (account,) = sim.new_user(1)
        pair = [names[n % len(names)], names[(n + 1) % len(names)]]
        # Every third maker leans on one side.
        _market_maker(sim, account, pair, skewed=n % 3 == 2)
    for _ in range(day_traders):
        _, (account,) = sim.new_user(1)
        _retail(sim, account, mean_gap_seconds=3600)
        for _ in range(config.days):
            _day_trade(sim, account)
    for _ in range(swing_traders):
        _, (account,) = sim.new_user(1)
        _swing_trade(sim, account)
    for _ in range(max(1, config.episodes_per_kind // 2)):
        _, (account,) = sim.new_user(1)
        _retail(sim, account, mean_gap_seconds=2400)
        _large_cancel(sim, account)
        _, (account,) = sim.new_user(1)
        _retail(sim, account, mean_gap_seconds=2400)
        _slow_cancel(sim, account)
        _, (account,) = sim.new_user(1)
        _retail(sim, account, mean_gap_seconds=2400)
        _accumulation(sim, account)
    for _ in range(config.episodes_per_kind):
        _wash_cross(sim)
        _wash_round_trip(sim)
        _spoof(sim, layered=False)
        _spoof(sim, layered=True)
    _pumps_and_front_running(sim, config)
    _momentum(sim, config)
    return sim.run()
