"""The double-entry journal: every movement balances per asset and phase, or is refused."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradeguard.trading import journal
from tradeguard.trading.journal import Entry, Phase, UnbalancedMovement, imbalance

amounts = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("1000000"), places=4)
shares = st.integers(min_value=1, max_value=1_000_000)


class TestMovements:
    @given(notional=amounts, fee=amounts, released=amounts, quantity=shares, buy=st.booleans())
    def test_every_fill_balances_per_asset_and_phase(
        self, notional: Decimal, fee: Decimal, released: Decimal, quantity: int, buy: bool
    ) -> None:
        move = journal.fill(
            account_id="a",
            currency="USD",
            symbol="AAPL",
            buy=buy,
            quantity=quantity,
            notional=notional,
            fee=fee,
            released_cash=released if buy else Decimal(0),
            released_shares=0 if buy else quantity,
            order_id="o",
            execution_id="e",
        )
        assert imbalance(move.entries) == {}

    def test_a_buy_fill_moves_cash_into_unsettled_and_shares_into_the_position(self) -> None:
        move = journal.fill(
            account_id="a",
            currency="USD",
            symbol="AAPL",
            buy=True,
            quantity=10,
            notional=Decimal("2000"),
            fee=Decimal("0.05"),
            released_cash=Decimal("2000.05"),
            released_shares=0,
            order_id="o",
            execution_id="e",
        )
        by_book = {(e.book, e.phase): e.amount for e in move.entries if e.book.startswith("acct")}
        assert by_book[("acct:a:pos:AAPL", Phase.POSTED)] == 10
        assert by_book[("acct:a:cash", Phase.HELD)] == Decimal("2000.05")
        unsettled = sum(e.amount for e in move.entries if e.book == "acct:a:unsettled")
        assert unsettled == Decimal("-2000.05")

    def test_an_unbalanced_or_empty_movement_is_refused(self) -> None:
        with pytest.raises(UnbalancedMovement):
            journal.movement(
                journal.MovementKind.ADJUSTMENT,
                "x",
                [Entry("acct:a:cash", "USD", Phase.POSTED, Decimal(5))],
            )
        with pytest.raises(UnbalancedMovement):
            journal.movement(journal.MovementKind.ADJUSTMENT, "x", [])

    def test_a_hold_and_its_release_cancel_out(self) -> None:
        hold = journal.hold_cash("a", "USD", Decimal("10.5"), "o")
        release = journal.release(
            account_id="a",
            currency="USD",
            symbol="AAPL",
            cash=Decimal("10.5"),
            shares=0,
            order_id="o",
        )
        net = imbalance(hold.entries + release.entries)
        assert net == {}
        on_cash = sum(e.amount for e in hold.entries + release.entries if e.book == "acct:a:cash")
        assert on_cash == 0

    def test_customer_books_name_their_account_and_firm_books_none(self) -> None:
        assert journal.account_of(journal.position_book("acc-1", "MSFT")) == "acc-1"
        assert journal.account_of(journal.FIRM_CLEARING) is None
