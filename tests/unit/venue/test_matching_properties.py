"""Matching engine invariants over random order flow, and agreement with a reference book.

The reference book below is written to be obviously correct rather than fast: it keeps one
flat list of resting orders and re-sorts the opposite side by (price, arrival) before every
single match step. Any difference from `OrderBook`, fill for fill, is a bug in one of them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeguard.core.orders import BookSide, StpMode, TimeInForce
from tradeguard.venue.matching import (
    CancelReason,
    Depth,
    Fill,
    IncomingOrder,
    MatchResult,
    OrderBook,
    RestingOrder,
)

BID, ASK = BookSide.BID, BookSide.ASK
OWNERS = ["alice", "bob", "carol"]
PRICES = (1, 8)  # a narrow band, so orders cross, queue and self-match often


@dataclass
class _RefOrder:
    order_id: str
    owner: str
    side: BookSide
    price: int
    remaining: int
    arrival: int


@dataclass
class ReferenceBook:
    """Price-time matching the slow, plain way."""

    resting: list[_RefOrder] = field(default_factory=list)
    arrivals: int = 0

    def _opposite_in_priority(self, side: BookSide) -> list[_RefOrder]:
        others = [o for o in self.resting if o.side is not side]
        if side is BID:  # a buy meets asks: lowest price first
            return sorted(others, key=lambda o: (o.price, o.arrival))
        return sorted(others, key=lambda o: (-o.price, o.arrival))

    def submit(self, order: IncomingOrder) -> MatchResult:  # noqa: PLR0912 - the rules, spelled out
        remaining = order.quantity
        fills: list[Fill] = []
        stp: list[tuple[str, int]] = []
        self_trade = 0
        stop: CancelReason | None = None
        bound = order.limit_ticks if order.limit_ticks is not None else order.protection_ticks
        while remaining > 0:
            queue = self._opposite_in_priority(order.side)
            if not queue:
                stop = CancelReason.NO_LIQUIDITY
                break
            best = queue[0]
            acceptable = bound is None or (
                best.price <= bound if order.side is BID else best.price >= bound
            )
            if not acceptable:
                stop = CancelReason.PRICE_PROTECTION
                break
            if best.owner == order.owner:
                if order.stp is StpMode.CANCEL_NEWEST:
                    stop = CancelReason.SELF_TRADE
                    break
                if order.stp is StpMode.DECREMENT:
                    overlap = min(remaining, best.remaining)
                    stp.append((best.order_id, overlap))
                    remaining -= overlap
                    self_trade += overlap
                    best.remaining -= overlap
                else:
                    stp.append((best.order_id, best.remaining))
                    best.remaining = 0
                self.resting = [o for o in self.resting if o.remaining > 0]
                if order.stp is StpMode.CANCEL_BOTH:
                    stop = CancelReason.SELF_TRADE
                    break
                continue
            quantity = min(remaining, best.remaining)
            fills.append(
                Fill(order.order_id, order.owner, best.order_id, best.owner, best.price, quantity)
            )
            remaining -= quantity
            best.remaining -= quantity
            self.resting = [o for o in self.resting if o.remaining > 0]

        rested, cancelled = 0, self_trade
        reason = CancelReason.SELF_TRADE if self_trade else None
        if remaining > 0:
            if stop is CancelReason.SELF_TRADE:
                self_trade += remaining
                cancelled, reason = cancelled + remaining, stop
            elif order.limit_ticks is None:
                cancelled, reason = cancelled + remaining, stop
            elif order.tif is TimeInForce.IOC:
                cancelled, reason = cancelled + remaining, CancelReason.IOC
            else:
                rested = remaining
                self.arrivals += 1
                self.resting.append(
                    _RefOrder(
                        order.order_id,
                        order.owner,
                        order.side,
                        order.limit_ticks,
                        remaining,
                        self.arrivals,
                    )
                )
        return MatchResult(tuple(fills), rested, cancelled, reason, tuple(stp), self_trade)

    def cancel(self, order_id: str) -> int | None:
        for o in self.resting:
            if o.order_id == order_id:
                self.resting.remove(o)
                return o.remaining
        return None

    def reduce(self, order_id: str, new_remaining: int) -> int | None:
        for o in self.resting:
            if o.order_id == order_id:
                removed = o.remaining - new_remaining
                o.remaining = new_remaining
                return removed
        return None

    def depth(self) -> Depth:
        levels: dict[tuple[BookSide, int], int] = {}
        for o in self.resting:
            levels[o.side, o.price] = levels.get((o.side, o.price), 0) + o.remaining
        bids = sorted(((p, q) for (s, p), q in levels.items() if s is BID), reverse=True)
        asks = sorted((p, q) for (s, p), q in levels.items() if s is ASK)
        return Depth(bids, asks)

    def open_orders(self) -> list[RestingOrder]:
        ordered = sorted(self.resting, key=lambda o: o.arrival)
        return [RestingOrder(o.order_id, o.owner, o.side, o.price, o.remaining) for o in ordered]


# -- random order flow ---------------------------------------------------------------------

# ("submit", owner, side, quantity, limit or None, tif, protection, stp)
# ("cancel", index into ids seen so far, or past the end for an unknown id)
# ("reduce", index, fraction of the remaining quantity to keep)
Operation = tuple[object, ...]

submits = st.tuples(
    st.just("submit"),
    st.sampled_from(OWNERS),
    st.sampled_from([BID, ASK]),
    st.integers(min_value=1, max_value=12),
    st.one_of(st.none(), st.integers(*PRICES)),
    st.sampled_from(list(TimeInForce)),
    st.one_of(st.none(), st.integers(*PRICES)),
    st.sampled_from(list(StpMode)),
)
cancels = st.tuples(st.just("cancel"), st.integers(min_value=0, max_value=80))
reduces = st.tuples(
    st.just("reduce"), st.integers(min_value=0, max_value=80), st.floats(min_value=0, max_value=1)
)
flows = st.lists(st.one_of(submits, submits, submits, cancels, reduces), max_size=60)


def random_flow(rng: random.Random, length: int) -> list[Operation]:
    """The same kinds of operations as `flows`, from a seeded generator (for long runs)."""
    ops: list[Operation] = []
    for _ in range(length):
        roll = rng.random()
        if roll < 0.65:
            ops.append(
                (
                    "submit",
                    rng.choice(OWNERS),
                    rng.choice([BID, ASK]),
                    rng.randint(1, 12),
                    None if rng.random() < 0.15 else rng.randint(*PRICES),
                    rng.choice(list(TimeInForce)),
                    None if rng.random() < 0.5 else rng.randint(*PRICES),
                    rng.choice(list(StpMode)),
                )
            )
        elif roll < 0.85:
            ops.append(("cancel", rng.randint(0, length)))
        else:
            ops.append(("reduce", rng.randint(0, length), rng.random()))
    return ops


def to_order(op: Operation, order_id: str) -> IncomingOrder:
    _, owner, side, quantity, limit, tif, protection, stp = op
    assert isinstance(owner, str)
    assert isinstance(side, BookSide)
    assert isinstance(quantity, int)
    assert limit is None or isinstance(limit, int)
    assert isinstance(tif, TimeInForce)
    assert isinstance(stp, StpMode)
    # Protection belongs to market orders only; the generator's value is dropped for limits.
    protection_ticks = protection if limit is None else None
    assert protection_ticks is None or isinstance(protection_ticks, int)
    return IncomingOrder(order_id, owner, side, quantity, limit, tif, protection_ticks, stp)


class Replay:
    """Applies a flow to the engine and to the reference, checking both after every step."""

    def __init__(self) -> None:
        self.book = OrderBook("PROP")
        self.reference = ReferenceBook()
        self.ids: list[str] = []
        self.fills = 0

    def run(self, ops: list[Operation]) -> None:
        for op in ops:
            self.step(op)

    def step(self, op: Operation) -> None:
        kind = op[0]
        if kind == "submit":
            order = to_order(op, f"o{len(self.ids)}")
            self.ids.append(order.order_id)
            before = {o.order_id: o.remaining for o in self.book.open_orders()}
            result = self.book.submit(order)
            assert result == self.reference.submit(order)
            self.fills += len(result.fills)
            check_submit(self.book, order, result, before)
        else:
            index = op[1]
            assert isinstance(index, int)
            order_id = self.ids[index] if index < len(self.ids) else f"unknown-{index}"
            if kind == "cancel":
                assert self.book.cancel(order_id) == self.reference.cancel(order_id)
                assert order_id not in self.book
            else:
                keep = op[2]
                assert isinstance(keep, float)
                current = self.book.remaining(order_id)
                new = max(1, round((current or 1) * keep))
                assert self.book.reduce(order_id, new) == self.reference.reduce(order_id, new)
        check_book(self.book)
        assert self.book.depth(100) == self.reference.depth()
        assert self.book.open_orders() == self.reference.open_orders()


def check_book(book: OrderBook) -> None:
    """Structural invariants that hold after every operation."""
    bid, ask = book.best_bid(), book.best_ask()
    assert bid is None or ask is None or bid[0] < ask[0], "the book is crossed"
    depth = book.depth(100)
    orders = book.open_orders()
    assert len(orders) == len(book)
    for side, levels in ((BID, depth.bids), (ASK, depth.asks)):
        prices = [p for p, _ in levels]
        assert prices == sorted(prices, reverse=side is BID)
        for price, total in levels:
            assert total == sum(
                o.remaining for o in orders if o.side is side and o.price_ticks == price
            )
    assert all(o.remaining > 0 for o in orders)
    for owner in OWNERS:
        assert book.open_orders(owner) == [o for o in orders if o.owner == owner]


def check_submit(
    book: OrderBook, order: IncomingOrder, result: MatchResult, before: dict[str, int]
) -> None:
    """What one submission may and may not do."""
    # Quantity is conserved on the incoming side...
    assert result.filled + result.rested + result.cancelled == order.quantity
    assert 0 <= result.self_trade_cancelled <= result.cancelled
    assert (result.cancel_reason is None) == (result.cancelled == 0)
    # ...and on the resting side: each maker lost exactly its fills plus its STP quantity.
    after = {o.order_id: o.remaining for o in book.open_orders()}
    taken: dict[str, int] = {}
    for fill in result.fills:
        taken[fill.maker_order_id] = taken.get(fill.maker_order_id, 0) + fill.quantity
    for maker_id, quantity in result.stp_cancelled:
        taken[maker_id] = taken.get(maker_id, 0) + quantity
    for order_id, remaining in before.items():
        assert remaining - after.get(order_id, 0) == taken.get(order_id, 0)
    # Never rest what may not rest.
    if order.limit_ticks is None or order.tif is TimeInForce.IOC:
        assert result.rested == 0
        assert order.order_id not in book
    else:
        assert (order.order_id in book) == (result.rested > 0)
    for fill in result.fills:
        assert fill.taker_order_id == order.order_id
        assert fill.quantity > 0
        if order.limit_ticks is not None:
            assert fill.price_ticks <= order.limit_ticks if order.side is BID else True
            assert fill.price_ticks >= order.limit_ticks if order.side is ASK else True
        elif order.protection_ticks is not None:
            assert fill.price_ticks <= order.protection_ticks if order.side is BID else True
            assert fill.price_ticks >= order.protection_ticks if order.side is ASK else True
    # Price priority: fills never improve as the order walks the book.
    prices = [f.price_ticks for f in result.fills]
    assert prices == sorted(prices, reverse=order.side is ASK)


SETTINGS = settings(max_examples=100, deadline=None, derandomize=True)


class TestOrderBookInvariants:
    @SETTINGS
    @given(flows)
    def test_every_operation_keeps_the_book_sound_and_matches_the_reference(
        self, ops: list[Operation]
    ) -> None:
        Replay().run(ops)

    @pytest.mark.parametrize("seed", [1, 2, 3])
    def test_a_long_seeded_flow_matches_the_reference_fill_for_fill(self, seed: int) -> None:
        replay = Replay()

        replay.run(random_flow(random.Random(seed), 1_500))

        assert replay.fills > 100

    def test_the_seeded_flows_exercise_every_outcome(self) -> None:
        """Guards the generator: a flow that never trades would prove nothing."""
        book = OrderBook("PROP")
        reasons: set[CancelReason | None] = set()
        stp_modes_hit: set[StpMode] = set()
        fills = 0
        for n, op in enumerate(random_flow(random.Random(1), 1_500)):
            if op[0] != "submit":
                continue
            order = to_order(op, f"o{n}")
            result = book.submit(order)
            fills += len(result.fills)
            reasons.add(result.cancel_reason)
            if result.stp_cancelled or result.self_trade_cancelled:
                stp_modes_hit.add(order.stp)
        assert fills > 100
        assert reasons == {None, *CancelReason}
        assert stp_modes_hit == set(StpMode)


def replay_checking_self_trades(ops: list[Operation]) -> int:
    book = OrderBook("PROP")
    fills = 0
    for n, op in enumerate(ops):
        if op[0] == "submit":
            result = book.submit(to_order(op, f"o{n}"))
            fills += len(result.fills)
            for fill in result.fills:
                assert fill.taker_owner != fill.maker_owner
        elif op[0] == "cancel":
            book.cancel(f"o{op[1]}")
    return fills


@pytest.mark.spec("PRE-3")
class TestNoSelfTrades:
    @settings(max_examples=60, deadline=None, derandomize=True)
    @given(flows)
    def test_no_owner_ever_trades_with_itself(self, ops: list[Operation]) -> None:
        replay_checking_self_trades(ops)

    @pytest.mark.parametrize("seed", range(5))
    def test_no_owner_trades_with_itself_in_long_flows_of_three_owners(self, seed: int) -> None:
        assert replay_checking_self_trades(random_flow(random.Random(seed), 3_000)) > 200
