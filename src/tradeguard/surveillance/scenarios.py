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


DETECTOR_OF_EPISODE: dict[EpisodeKind, Detector] = {
    EpisodeKind.WASH_CROSS: Detector.WASH,
    EpisodeKind.WASH_ROUND_TRIP: Detector.WASH,
    EpisodeKind.SPOOF: Detector.SPOOFING,
    EpisodeKind.LAYER: Detector.SPOOFING,
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

    def pick_symbol(self) -> str:
        return self.rng.choices(self._names, weights=self._weights)[0]

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
        return Scenario(self.config, self.documents, self.account_users, self.episodes)


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
    return sim.run()
