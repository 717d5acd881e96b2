"""Order vocabulary shared by trading, risk and the venue."""

from __future__ import annotations

import pytest

from tradeguard.core.orders import BookSide, OrderType, Side, StpMode, TimeInForce, book_side


class TestBookSide:
    def test_a_buy_rests_on_the_bid_side(self) -> None:
        assert book_side(Side.BUY) is BookSide.BID

    @pytest.mark.parametrize("side", [Side.SELL, Side.SELL_SHORT])
    def test_a_sale_long_or_short_rests_on_the_ask_side(self, side: Side) -> None:
        assert book_side(side) is BookSide.ASK

    def test_parses_the_wire_value_of_a_side(self) -> None:
        assert book_side(Side("sell_short")) is BookSide.ASK


class TestWireValues:
    """Values are stored and sent over the API: changing one breaks stored orders."""

    def test_every_enum_keeps_its_stable_lowercase_values(self) -> None:
        assert [s.value for s in Side] == ["buy", "sell", "sell_short"]
        assert [t.value for t in OrderType] == ["market", "limit"]
        assert [t.value for t in TimeInForce] == ["day", "ioc", "gtc"]
        assert [m.value for m in StpMode] == [
            "cancel_newest",
            "cancel_oldest",
            "cancel_both",
            "decrement",
        ]
        assert [b.value for b in BookSide] == ["bid", "ask"]

    def test_an_unknown_value_is_refused(self) -> None:
        with pytest.raises(ValueError, match="is not a valid TimeInForce"):
            TimeInForce("fok")
