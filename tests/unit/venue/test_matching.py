"""Matching engine, by example: priority, time in force, price protection, STP, book queries."""

from __future__ import annotations

import pytest

from tradeguard.core.errors import Conflict, InvalidInput
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
DAY, IOC, GTC = TimeInForce.DAY, TimeInForce.IOC, TimeInForce.GTC


def limit(
    order_id: str,
    side: BookSide,
    quantity: int,
    price: int,
    *,
    owner: str | None = None,
    tif: TimeInForce = DAY,
    stp: StpMode = StpMode.CANCEL_NEWEST,
) -> IncomingOrder:
    return IncomingOrder(order_id, owner or f"acct-{order_id}", side, quantity, price, tif, stp=stp)


def market(
    order_id: str,
    side: BookSide,
    quantity: int,
    *,
    protection: int | None = None,
    owner: str | None = None,
    tif: TimeInForce = DAY,
) -> IncomingOrder:
    return IncomingOrder(
        order_id,
        owner or f"acct-{order_id}",
        side,
        quantity,
        None,
        tif,
        protection_ticks=protection,
    )


def book_with(*orders: IncomingOrder) -> OrderBook:
    book = OrderBook("TEST")
    for order in orders:
        assert book.submit(order).rested == order.quantity, "setup orders must rest whole"
    return book


def makers(result: MatchResult) -> list[tuple[str, int, int]]:
    return [(f.maker_order_id, f.price_ticks, f.quantity) for f in result.fills]


class TestPriceTimePriority:
    def test_a_better_price_trades_before_an_earlier_order(self) -> None:
        book = book_with(limit("a1", ASK, 5, 101), limit("a2", ASK, 5, 100))

        result = book.submit(limit("b", BID, 7, 101))

        assert makers(result) == [("a2", 100, 5), ("a1", 101, 2)]

    def test_at_one_price_the_earlier_order_trades_first(self) -> None:
        book = book_with(limit("a1", ASK, 5, 100), limit("a2", ASK, 5, 100))

        result = book.submit(limit("b", BID, 7, 100))

        assert makers(result) == [("a1", 100, 5), ("a2", 100, 2)]

    def test_trades_print_at_the_resting_orders_price(self) -> None:
        book = book_with(limit("b1", BID, 3, 99))

        result = book.submit(limit("s", ASK, 3, 90))

        assert result.fills == (Fill("s", "acct-s", "b1", "acct-b1", 99, 3),)

    def test_a_partially_filled_order_keeps_its_place_at_the_head_of_the_queue(self) -> None:
        book = book_with(limit("a1", ASK, 5, 100), limit("a2", ASK, 5, 100))
        book.submit(limit("b1", BID, 2, 100))

        result = book.submit(limit("b2", BID, 4, 100))

        assert makers(result) == [("a1", 100, 3), ("a2", 100, 1)]

    def test_a_reduced_order_keeps_its_time_priority(self) -> None:
        book = book_with(limit("a1", ASK, 5, 100), limit("a2", ASK, 5, 100))

        assert book.reduce("a1", 2) == 3
        result = book.submit(limit("b", BID, 3, 100))

        assert makers(result) == [("a1", 100, 2), ("a2", 100, 1)]
        assert book.best_ask() == (100, 4)

    def test_a_limit_order_never_trades_beyond_its_limit(self) -> None:
        book = book_with(limit("a1", ASK, 5, 100), limit("a2", ASK, 5, 102))

        result = book.submit(limit("b", BID, 8, 101))

        assert makers(result) == [("a1", 100, 5)]
        assert (result.rested, result.cancelled) == (3, 0)
        assert book.best_bid() == (101, 3)
        assert book.best_ask() == (102, 5)

    def test_a_sell_sweeps_bids_from_the_highest_down(self) -> None:
        book = book_with(limit("b1", BID, 2, 98), limit("b2", BID, 2, 100), limit("b3", BID, 2, 99))

        result = book.submit(limit("s", ASK, 5, 98))

        assert makers(result) == [("b2", 100, 2), ("b3", 99, 2), ("b1", 98, 1)]
        assert result.filled == 5
        assert book.best_bid() == (98, 1)


class TestTimeInForce:
    @pytest.mark.parametrize("tif", [DAY, GTC])
    def test_a_day_or_gtc_limit_remainder_rests(self, tif: TimeInForce) -> None:
        book = book_with(limit("a", ASK, 2, 100))

        result = book.submit(limit("b", BID, 5, 100, tif=tif))

        assert (result.filled, result.rested, result.cancelled) == (2, 3, 0)
        assert result.cancel_reason is None
        assert book.remaining("b") == 3

    def test_an_ioc_remainder_is_cancelled_not_rested(self) -> None:
        book = book_with(limit("a", ASK, 2, 100))

        result = book.submit(limit("b", BID, 5, 100, tif=IOC))

        assert (result.filled, result.rested, result.cancelled) == (2, 0, 3)
        assert result.cancel_reason is CancelReason.IOC
        assert "b" not in book

    def test_an_ioc_that_fills_completely_reports_no_cancel(self) -> None:
        book = book_with(limit("a", ASK, 5, 100))

        result = book.submit(limit("b", BID, 5, 100, tif=IOC))

        assert (result.filled, result.cancelled, result.cancel_reason) == (5, 0, None)

    @pytest.mark.parametrize("tif", [DAY, IOC, GTC])
    def test_a_market_order_never_rests_whatever_its_time_in_force(self, tif: TimeInForce) -> None:
        book = book_with(limit("a", ASK, 2, 100))

        result = book.submit(market("m", BID, 5, tif=tif))

        assert (result.filled, result.rested, result.cancelled) == (2, 0, 3)
        assert result.cancel_reason is CancelReason.NO_LIQUIDITY
        assert len(book) == 0

    def test_a_market_order_on_an_empty_book_is_cancelled_for_no_liquidity(self) -> None:
        result = OrderBook("TEST").submit(market("m", ASK, 5))

        assert result == MatchResult((), 0, 5, CancelReason.NO_LIQUIDITY, (), 0)


class TestPriceProtection:
    def test_a_market_buy_stops_at_its_protection_price(self) -> None:
        book = book_with(
            limit("a1", ASK, 2, 100), limit("a2", ASK, 2, 105), limit("a3", ASK, 2, 106)
        )

        result = book.submit(market("m", BID, 6, protection=105))

        assert makers(result) == [("a1", 100, 2), ("a2", 105, 2)]
        assert (result.cancelled, result.cancel_reason) == (2, CancelReason.PRICE_PROTECTION)
        assert book.best_ask() == (106, 2)

    def test_a_market_sell_stops_at_its_protection_price(self) -> None:
        book = book_with(limit("b1", BID, 2, 100), limit("b2", BID, 2, 95))

        result = book.submit(market("m", ASK, 4, protection=96))

        assert makers(result) == [("b1", 100, 2)]
        assert result.cancel_reason is CancelReason.PRICE_PROTECTION
        assert book.best_bid() == (95, 2)

    def test_without_protection_a_market_order_sweeps_every_level(self) -> None:
        book = book_with(limit("a1", ASK, 1, 100), limit("a2", ASK, 1, 10_000))

        result = book.submit(market("m", BID, 2))

        assert makers(result) == [("a1", 100, 1), ("a2", 10_000, 1)]

    def test_a_market_order_beyond_protection_from_the_start_trades_nothing(self) -> None:
        book = book_with(limit("a", ASK, 2, 110))

        result = book.submit(market("m", BID, 2, protection=105))

        assert result == MatchResult((), 0, 2, CancelReason.PRICE_PROTECTION, (), 0)
        assert book.remaining("a") == 2


@pytest.mark.spec("PRE-3")
class TestSelfTradePrevention:
    """An owner's orders never trade with each other; the incoming order's mode decides."""

    def test_cancel_newest_cancels_the_incoming_remainder_and_keeps_the_resting_order(self) -> None:
        book = book_with(
            limit("other", ASK, 2, 100, owner="x"), limit("mine", ASK, 5, 100, owner="me")
        )

        result = book.submit(limit("b", BID, 6, 101, owner="me", stp=StpMode.CANCEL_NEWEST))

        assert makers(result) == [("other", 100, 2)]
        assert (result.rested, result.cancelled, result.self_trade_cancelled) == (0, 4, 4)
        assert result.cancel_reason is CancelReason.SELF_TRADE
        assert result.stp_cancelled == ()
        assert book.remaining("mine") == 5
        assert "b" not in book

    def test_cancel_oldest_cancels_the_resting_order_and_keeps_matching(self) -> None:
        book = book_with(
            limit("mine", ASK, 5, 100, owner="me"), limit("other", ASK, 3, 101, owner="x")
        )

        result = book.submit(limit("b", BID, 6, 101, owner="me", stp=StpMode.CANCEL_OLDEST))

        assert makers(result) == [("other", 101, 3)]
        assert result.stp_cancelled == (("mine", 5),)
        assert (result.rested, result.cancelled, result.cancel_reason) == (3, 0, None)
        assert "mine" not in book
        assert book.best_bid() == (101, 3)
        assert book.best_ask() is None

    def test_cancel_both_cancels_the_resting_order_and_the_incoming_remainder(self) -> None:
        book = book_with(
            limit("mine", ASK, 5, 100, owner="me"), limit("other", ASK, 3, 101, owner="x")
        )

        result = book.submit(limit("b", BID, 6, 101, owner="me", stp=StpMode.CANCEL_BOTH))

        assert result.fills == ()
        assert result.stp_cancelled == (("mine", 5),)
        assert (result.cancelled, result.self_trade_cancelled) == (6, 6)
        assert result.cancel_reason is CancelReason.SELF_TRADE
        assert book.open_orders() == [RestingOrder("other", "x", ASK, 101, 3)]

    def test_decrement_with_a_smaller_incoming_order_reduces_the_resting_order(self) -> None:
        book = book_with(limit("mine", ASK, 5, 100, owner="me"))

        result = book.submit(limit("b", BID, 3, 100, owner="me", stp=StpMode.DECREMENT))

        assert result.fills == ()
        assert result.stp_cancelled == (("mine", 3),)
        assert (result.rested, result.cancelled, result.cancel_reason) == (
            0,
            3,
            CancelReason.SELF_TRADE,
        )
        assert book.remaining("mine") == 2
        assert book.best_ask() == (100, 2)

    def test_decrement_with_a_larger_incoming_order_cancels_the_resting_one_and_matches_on(
        self,
    ) -> None:
        book = book_with(
            limit("mine", ASK, 2, 100, owner="me"), limit("other", ASK, 2, 100, owner="x")
        )

        result = book.submit(limit("b", BID, 6, 100, owner="me", stp=StpMode.DECREMENT))

        assert result.stp_cancelled == (("mine", 2),)
        assert makers(result) == [("other", 100, 2)]
        # 6 = 2 decremented + 2 filled + 2 resting; the decrement is the only cancellation.
        assert (result.cancelled, result.rested, result.self_trade_cancelled) == (2, 2, 2)
        assert result.cancel_reason is CancelReason.SELF_TRADE
        assert book.open_orders() == [RestingOrder("b", "me", BID, 100, 2)]

    def test_decrement_of_equal_quantities_cancels_both(self) -> None:
        book = book_with(limit("mine", ASK, 4, 100, owner="me"))

        result = book.submit(limit("b", BID, 4, 100, owner="me", stp=StpMode.DECREMENT))

        assert result.stp_cancelled == (("mine", 4),)
        assert (result.cancelled, result.rested) == (4, 0)
        assert len(book) == 0

    def test_the_reason_is_the_last_cancellation_when_an_ioc_remainder_follows_a_decrement(
        self,
    ) -> None:
        book = book_with(limit("mine", ASK, 2, 100, owner="me"))

        result = book.submit(limit("b", BID, 5, 100, owner="me", tif=IOC, stp=StpMode.DECREMENT))

        assert (result.cancelled, result.self_trade_cancelled) == (5, 2)
        assert result.cancel_reason is CancelReason.IOC

    def test_a_market_order_is_covered_as_well(self) -> None:
        book = book_with(limit("mine", BID, 5, 100, owner="me"))

        result = book.submit(market("m", ASK, 5, owner="me"))

        assert result.fills == ()
        assert result.cancel_reason is CancelReason.SELF_TRADE
        assert book.remaining("mine") == 5

    def test_orders_of_one_owner_on_the_same_side_coexist(self) -> None:
        book = book_with(limit("b1", BID, 5, 100, owner="me"), limit("b2", BID, 5, 101, owner="me"))

        assert book.best_bid() == (101, 5)
        assert len(book) == 2


class TestValidation:
    """A refused order raises before anything changes."""

    @pytest.mark.parametrize(
        ("order", "message"),
        [
            (IncomingOrder("x", "o", BID, 0, 100, DAY), "quantity"),
            (IncomingOrder("x", "o", BID, -3, 100, DAY), "quantity"),
            (IncomingOrder("x", "o", BID, 1.5, 100, DAY), "quantity"),  # type: ignore[arg-type]
            (IncomingOrder("x", "o", BID, True, 100, DAY), "quantity"),
            (IncomingOrder("x", "o", BID, 1, 0, DAY), "limit price"),
            (IncomingOrder("x", "o", BID, 1, 100.0, DAY), "limit price"),  # type: ignore[arg-type]
            (IncomingOrder("x", "o", BID, 1, 100, DAY, protection_ticks=110), "market orders"),
            (IncomingOrder("x", "o", BID, 1, None, DAY, protection_ticks=0), "protection"),
        ],
    )
    def test_a_malformed_order_is_refused_and_changes_nothing(
        self, order: IncomingOrder, message: str
    ) -> None:
        book = book_with(limit("a", ASK, 5, 100))

        with pytest.raises(InvalidInput, match=message):
            book.submit(order)

        assert book.open_orders() == [RestingOrder("a", "acct-a", ASK, 100, 5)]

    def test_an_id_already_on_the_book_is_refused(self) -> None:
        book = book_with(limit("a", ASK, 5, 100))

        with pytest.raises(Conflict):
            book.submit(limit("a", BID, 5, 100))

        assert book.remaining("a") == 5

    def test_an_id_no_longer_on_the_book_may_be_used_again(self) -> None:
        book = book_with(limit("a", ASK, 5, 100))
        book.cancel("a")

        assert book.submit(limit("a", ASK, 1, 100)).rested == 1


class TestCancelAndReduce:
    def test_cancel_removes_the_order_and_returns_its_remaining_quantity(self) -> None:
        book = book_with(limit("a1", ASK, 5, 100), limit("a2", ASK, 4, 100))
        book.submit(limit("b", BID, 2, 100))

        assert book.cancel("a1") == 3
        assert book.best_ask() == (100, 4)
        assert "a1" not in book

    def test_cancelling_the_last_order_at_a_price_removes_the_level(self) -> None:
        book = book_with(
            limit("a1", ASK, 5, 100), limit("a2", ASK, 4, 101), limit("a3", ASK, 1, 102)
        )

        book.cancel("a2")

        assert book.depth(5) == Depth([], [(100, 5), (102, 1)])
        book.cancel("a1")
        assert book.best_ask() == (102, 1)

    def test_cancelling_from_the_middle_of_a_queue_keeps_the_others_order(self) -> None:
        book = book_with(
            limit("a1", ASK, 1, 100), limit("a2", ASK, 1, 100), limit("a3", ASK, 1, 100)
        )

        book.cancel("a2")
        result = book.submit(limit("b", BID, 2, 100))

        assert makers(result) == [("a1", 100, 1), ("a3", 100, 1)]

    def test_cancel_of_an_unknown_filled_or_already_cancelled_order_is_harmless(self) -> None:
        book = book_with(limit("a", ASK, 5, 100), limit("z", ASK, 1, 200))
        book.submit(limit("b", BID, 5, 100))

        assert book.cancel("a") is None  # filled
        assert book.cancel("nope") is None
        assert book.cancel("z") == 1
        assert book.cancel("z") is None
        assert len(book) == 0

    def test_reduce_of_an_unknown_order_returns_none(self) -> None:
        assert OrderBook("TEST").reduce("nope", 1) is None

    def test_reduce_refuses_an_increase(self) -> None:
        book = book_with(limit("a", ASK, 5, 100))

        with pytest.raises(InvalidInput, match="only be reduced"):
            book.reduce("a", 6)

        assert book.remaining("a") == 5

    def test_reduce_refuses_to_leave_nothing(self) -> None:
        book = book_with(limit("a", ASK, 5, 100))

        with pytest.raises(InvalidInput, match="cancel the order instead"):
            book.reduce("a", 0)

        assert book.best_ask() == (100, 5)


class TestBookQueries:
    def test_an_empty_book_has_no_best_prices(self) -> None:
        book = OrderBook("TEST")

        assert (book.best_bid(), book.best_ask(), len(book)) == (None, None, 0)
        assert book.depth(3) == Depth([], [])

    def test_best_prices_carry_the_total_quantity_at_that_price(self) -> None:
        book = book_with(limit("b1", BID, 3, 99), limit("b2", BID, 4, 99), limit("b3", BID, 9, 98))

        assert book.best_bid() == (99, 7)

    def test_depth_lists_levels_best_first_and_stops_at_the_asked_count(self) -> None:
        book = book_with(
            limit("b1", BID, 1, 97),
            limit("b2", BID, 2, 99),
            limit("b3", BID, 3, 98),
            limit("a1", ASK, 4, 103),
            limit("a2", ASK, 5, 101),
        )

        assert book.depth(2) == Depth([(99, 2), (98, 3)], [(101, 5), (103, 4)])
        assert book.depth(10) == Depth([(99, 2), (98, 3), (97, 1)], [(101, 5), (103, 4)])
        assert book.depth(0) == Depth([], [])
        with pytest.raises(InvalidInput):
            book.depth(-1)

    def test_open_orders_lists_an_owners_orders_oldest_first(self) -> None:
        book = book_with(
            limit("b1", BID, 1, 97, owner="me"),
            limit("a1", ASK, 4, 103, owner="you"),
            limit("a2", ASK, 5, 101, owner="me"),
        )

        assert book.open_orders("me") == [
            RestingOrder("b1", "me", BID, 97, 1),
            RestingOrder("a2", "me", ASK, 101, 5),
        ]
        assert [o.order_id for o in book.open_orders()] == ["b1", "a1", "a2"]
        assert book.open_orders("nobody") == []

    def test_membership_length_and_remaining_follow_fills(self) -> None:
        book = book_with(limit("a1", ASK, 5, 100), limit("a2", ASK, 5, 100))

        book.submit(limit("b", BID, 7, 100))

        assert ("a1" in book, "a2" in book, len(book)) == (False, True, 1)
        assert (book.remaining("a1"), book.remaining("a2")) == (None, 3)
        assert book.open_orders("acct-a1") == []
