"""Reversing an execution by compensating entries (ATO-3): the movement balances, gives the
customer back exactly the execution's effect, and a position replayed without it is the
position before it."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradeguard.trading import journal
from tradeguard.trading.journal import FIRM_ERROR, MovementKind, Phase, imbalance
from tradeguard.trading.reversals import replay_position


def _net(move: journal.Movement, book: str, asset: str) -> Decimal:
    return sum((e.amount for e in move.entries if e.book == book and e.asset == asset), Decimal(0))


class TestReversalMovement:
    @pytest.mark.spec("ATO-3")
    @given(
        buy=st.booleans(),
        quantity=st.integers(min_value=1, max_value=10_000),
        cents=st.integers(min_value=1, max_value=100_000),
        fee_cents=st.integers(min_value=0, max_value=500),
    )
    def test_it_balances_and_undoes_the_fill_for_the_customer(
        self, buy: bool, quantity: int, cents: int, fee_cents: int
    ) -> None:
        price = Decimal(cents) / 100
        notional, fee = price * quantity, Decimal(fee_cents) / 100
        fill = journal.fill(
            account_id="a",
            currency="USD",
            symbol="ACME",
            buy=buy,
            quantity=quantity,
            notional=notional,
            fee=fee,
            released_cash=Decimal(0),
            released_shares=0,
            order_id="o",
            execution_id="e",
        )
        reversal = journal.reversal(
            account_id="a",
            currency="USD",
            symbol="ACME",
            buy=buy,
            quantity=quantity,
            notional=notional,
            fee=fee,
            execution_id="e",
        )
        assert reversal.kind is MovementKind.REVERSAL
        assert reversal.execution_id == "e"
        assert not imbalance(reversal.entries)
        assert all(e.phase is Phase.POSTED for e in reversal.entries)
        position = journal.position_book("a", "ACME")
        assert _net(fill, position, "ACME") + _net(reversal, position, "ACME") == 0
        customer_cash = _net(fill, journal.unsettled_book("a"), "USD") + _net(
            reversal, journal.cash_book("a"), "USD"
        )
        assert customer_cash == 0
        assert {e.book for e in reversal.entries} <= {
            journal.cash_book("a"),
            position,
            FIRM_ERROR,
        }


class TestReplay:
    def _e(self, side: str, quantity: int, price: str) -> Any:
        return SimpleNamespace(side=side, quantity=quantity, price=Decimal(price))

    def test_a_position_replayed_without_the_sale_is_the_one_before_it(self) -> None:
        bought = [self._e("buy", 100, "10.00"), self._e("buy", 50, "12.00")]
        before = replay_position(bought)
        assert replay_position([*bought, self._e("sell", 150, "9.00")])[0] == 0
        assert replay_position(bought) == before
        assert before[0] == 150
        assert before[1] == Decimal("1600.00")
