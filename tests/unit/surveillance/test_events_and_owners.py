"""Reading the trading core's ledger documents as market events, and beneficial owners
(pure)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tradeguard.surveillance.events import Fill, OrderClosed, OrderPlaced, parse_market_event
from tradeguard.surveillance.owners import BeneficialOwners


def document(kind: str, **data: Any) -> dict[str, Any]:
    return {
        "v": 1,
        "id": "e1",
        "type": kind,
        "ts": "1767625200000000000",
        "actor": {"kind": "user", "id": "u1"},
        "subject": {"kind": "account", "id": "a1"},
        "data": {"order_id": "o1", "symbol": "ACME", "side": "buy", **data},
    }


class TestParsing:
    def test_an_order_placed_a_cancel_and_an_execution_are_read(self) -> None:
        placed = parse_market_event(
            7,
            document("trading:order:placed", quantity=100, limit_price="50.01"),
            lambda account: f"owner-of-{account}",
        )
        assert placed == OrderPlaced(
            7, 1767625200000000000, "o1", "a1", "owner-of-a1", "ACME", True, 100, Decimal("50.01")
        )
        replacement = parse_market_event(
            7,
            document(
                "trading:order:placed", quantity=100, limit_price="49.00", replaces_order_id="o0"
            ),
        )
        assert isinstance(replacement, OrderPlaced)
        assert (placed.replaces, replacement.replaces) == (None, "o0")
        cancelled = parse_market_event(
            8, document("trading:order:cancelled", reason="user", unfilled=60)
        )
        assert isinstance(cancelled, OrderClosed)
        assert (cancelled.quantity, cancelled.final, cancelled.voluntary) == (60, True, True)
        reduced = parse_market_event(
            9, document("trading:order:cancelled", reason="self_trade", cancelled_quantity=10)
        )
        assert isinstance(reduced, OrderClosed)
        assert (reduced.quantity, reduced.final, reduced.voluntary) == (10, False, False)
        replaced = parse_market_event(
            10, document("trading:order:replaced", reason="replaced", unfilled=5)
        )
        assert isinstance(replaced, OrderClosed)
        assert replaced.voluntary
        fill = parse_market_event(
            11,
            document(
                "trading:execution:created",
                side="sell_short",
                execution_id="x1",
                quantity=100,
                price="50.00",
                liquidity="maker",
                contra="internal",
                match_id="m1",
            ),
        )
        assert isinstance(fill, Fill)
        assert (fill.buy, fill.maker, fill.internal, fill.match_id) == (False, True, True, "m1")

    def test_other_events_are_not_market_events(self) -> None:
        assert parse_market_event(1, {"type": "trading:order:filled"}) is None
        assert parse_market_event(1, {"type": "access:permission:checked"}) is None

    @pytest.mark.parametrize(
        "broken",
        [
            document("trading:order:placed", quantity=-1, limit_price="1"),
            document("trading:order:placed", quantity=True, limit_price="1"),
            document("trading:order:placed", quantity=10, limit_price="NaN"),
            document("trading:order:placed", quantity=10, limit_price="-5"),
            document("trading:order:placed", quantity=10, limit_price="ten"),
            document("trading:execution:created", quantity=10, price=None, execution_id="x"),
            document("trading:order:placed", quantity=10, limit_price="1", side="up"),
            {**document("trading:order:placed", quantity=1), "subject": None},
            {**document("trading:order:placed", quantity=1), "ts": "yesterday"},
            {**document("trading:order:placed", quantity=1), "data": []},
        ],
    )
    def test_a_malformed_trading_event_is_refused_with_a_reason(
        self, broken: dict[str, Any]
    ) -> None:
        with pytest.raises(ValueError):  # noqa: PT011 - the consumer skips and counts any
            parse_market_event(1, broken)


class TestBeneficialOwners:
    def test_an_account_belongs_to_its_user_and_links_join_users_transitively(self) -> None:
        users = {"a1": "u3", "a2": "u3", "b1": "u1", "c1": "u2", "d1": "u9"}
        owners = BeneficialOwners(users, [("a1", "b1"), ("c1", "b1")])
        # One group, named by its smallest user id, whichever way it was linked.
        assert {owners.owner(a) for a in ("a1", "a2", "b1", "c1")} == {"u1"}
        assert owners.owner("d1") == "u9"
        assert BeneficialOwners(users, [("b1", "c1"), ("b1", "a1")]).owner("a2") == "u1"

    def test_an_unknown_account_is_its_own_owner(self) -> None:
        assert BeneficialOwners({}).owner("zz") == "zz"
