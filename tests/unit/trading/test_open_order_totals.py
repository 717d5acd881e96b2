"""The account memo's open-order totals (trading/snapshots.py `OpenOrders`): summed as orders
are read or added, they must say what summing every open order on each order said."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from tradeguard.core.orders import Side
from tradeguard.trading.snapshots import NO_ORDERS, OpenOrderMemo, OpenOrders, order_price

SYMBOLS = ("AAPL", "MSFT", "TSLA")
MARKS = {"AAPL": Decimal("232.10"), "MSFT": None, "TSLA": Decimal("0.05")}

orders = st.lists(
    st.builds(
        OpenOrderMemo,
        order_id=st.uuids().map(str),
        symbol=st.sampled_from(SYMBOLS),
        side=st.sampled_from(list(Side)),
        remaining=st.integers(1, 10**6),
        limit_price=st.none() | st.decimals("0.01", "100000", places=2),
    ),
    max_size=40,
)


def summed_one_by_one(
    open_orders: list[OpenOrderMemo], symbol: str
) -> tuple[Decimal, int, int, Decimal | None, Decimal | None]:
    """What the snapshot computed before: a pass over every open order."""
    notional = Decimal(0)
    buy = sell = 0
    bid: Decimal | None = None
    ask: Decimal | None = None
    for order in open_orders:
        notional += order_price(order.limit_price, MARKS[order.symbol]) * order.remaining
        if order.symbol != symbol:
            continue
        if order.side is Side.BUY:
            buy += order.remaining
            if order.limit_price is not None and (bid is None or order.limit_price > bid):
                bid = order.limit_price
        else:
            sell += order.remaining
            if order.limit_price is not None and (ask is None or order.limit_price < ask):
                ask = order.limit_price
    return notional, buy, sell, bid, ask


class TestOpenOrderTotals:
    @given(orders, orders, st.sampled_from(SYMBOLS))
    def test_totals_read_then_added_to_equal_a_pass_over_every_order(
        self, read: list[OpenOrderMemo], added: list[OpenOrderMemo], symbol: str
    ) -> None:
        totals = OpenOrders.of(read)
        for order in added:
            totals = totals.plus(order)
        mine = totals.by_symbol.get(symbol, NO_ORDERS)
        assert (
            totals.notional(MARKS.__getitem__),
            mine.buy,
            mine.sell,
            mine.best_bid,
            mine.best_ask,
        ) == summed_one_by_one(read + added, symbol)

    def test_adding_an_order_leaves_the_totals_it_was_added_to_unchanged(self) -> None:
        before = OpenOrders.of([OpenOrderMemo("a", "AAPL", Side.BUY, 10, Decimal("100.00"))])
        after = before.plus(OpenOrderMemo("b", "AAPL", Side.SELL, 5, Decimal("101.00")))
        assert before.by_symbol["AAPL"].sell == 0
        assert after.by_symbol["AAPL"].sell == 5
        assert before.limit_notional == Decimal("1000.00")
