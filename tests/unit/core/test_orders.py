"""Order vocabulary shared by trading, risk and the venue."""

from __future__ import annotations

import pytest

from tradeguard.core.orders import BookSide, Side, book_side


class TestBookSide:
    @pytest.mark.parametrize(
        ("side", "expected"),
        [(Side.BUY, BookSide.BID), (Side.SELL, BookSide.ASK), (Side.SELL_SHORT, BookSide.ASK)],
    )
    def test_buys_rest_on_the_bid_and_every_sale_on_the_ask(
        self, side: Side, expected: BookSide
    ) -> None:
        assert book_side(side) is expected
