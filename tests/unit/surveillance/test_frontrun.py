"""MAN-4 front-running (pure model): staff or proprietary accounts trading ahead of a large
client order and unwinding, or building a position shortly before the firm restricts a
symbol; customers, later trades, held positions and resting quotes pass."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.support.surveillance import Tape, run
from tradeguard.surveillance.domain import (
    AlertType,
    Detector,
    FrontRunParameters,
    SurveillanceParameters,
)
from tradeguard.surveillance.engine import SurveillanceEngine
from tradeguard.surveillance.events import RestrictedListed, parse_market_event
from tradeguard.surveillance.owners import BeneficialOwners, OwnerLink

STAFF = SurveillanceParameters(frontrun=FrontRunParameters(insiders=frozenset({"staff"})))


def front_run(tape: Tape, trader: str = "staff", *, ahead: float = 60, hold: float = 600) -> None:
    """`trader` buys 500, a client buys 20,000 (USD 201,000) `ahead` seconds later, and
    `trader` sells the 500 `hold` seconds after that."""
    tape.street_trade(trader, "ACME", "buy", 500, "10.00")
    tape.wait(ahead)
    tape.street_trade("whale", "ACME", "buy", 20_000, "10.05")
    tape.wait(hold)
    tape.street_trade(trader, "ACME", "sell", 500, "10.20")


@pytest.mark.spec("MAN-4")
class TestFrontRunning:
    def test_staff_buying_ahead_of_a_large_client_order_and_unwinding_is_front_running(
        self,
    ) -> None:
        tape = Tape()
        front_run(tape)
        found = run(tape.events, STAFF)
        assert [f.alert_type for f in found] == [AlertType.FRONT_RUNNING]
        finding = found[0]
        assert finding.detector is Detector.FRONT_RUNNING
        assert finding.owner == "staff"
        assert finding.accounts == ("staff",)
        ev = finding.evidence
        assert ev["side_ahead"] == "buy"
        assert ev["quantity_ahead"] == 500
        assert ev["seconds_ahead"] == 60
        assert ev["client_account"] == "whale"
        assert ev["client_quantity"] == 20_000
        assert Decimal(ev["client_notional"]) == Decimal("201000")
        assert ev["unwound_quantity"] == 500
        assert Decimal(ev["gain_per_share"]) == Decimal("0.20")
        placed = {e.order_id for e in tape.events if hasattr(e, "limit_price")}
        assert set(finding.order_ids) <= placed
        assert ev["client_order_id"] in finding.order_ids
        assert len(finding.execution_ids) == 3

    def test_selling_short_ahead_of_a_large_client_sale_is_front_running_too(self) -> None:
        tape = Tape()
        tape.street_trade("staff", "ACME", "sell", 300, "10.00")
        tape.wait(30)
        tape.street_trade("whale", "ACME", "sell", 30_000, "9.95")
        tape.wait(300)
        tape.street_trade("staff", "ACME", "buy", 300, "9.80")
        found = run(tape.events, STAFF)
        assert [f.alert_type for f in found] == [AlertType.FRONT_RUNNING]
        assert found[0].evidence["side_ahead"] == "sell"
        assert Decimal(found[0].evidence["gain_per_share"]) == Decimal("0.20")

    def test_the_staff_members_other_account_or_a_linked_account_is_the_same_insider(
        self,
    ) -> None:
        """The firm registered one account of Sally's; she trades ahead through her other
        account, and unwinds through her husband's, linked to her as one owner."""
        owners = BeneficialOwners(
            {"staff": "sally", "sally-ira": "sally", "bob-1": "bob", "whale": "wendy"},
            owner_links=[OwnerLink("l1", "manual", account_a="sally-ira", account_b="bob-1")],
        )
        tape = Tape(owners={a: owners.owner(a) for a in ("staff", "sally-ira", "bob-1", "whale")})
        tape.street_trade("sally-ira", "ACME", "buy", 500, "10.00")
        tape.wait(60)
        tape.street_trade("whale", "ACME", "buy", 20_000, "10.05")
        tape.wait(600)
        tape.street_trade("bob-1", "ACME", "sell", 500, "10.20")
        found = run(tape.events, STAFF, owners=owners.owner)
        assert [(f.alert_type, f.owner) for f in found] == [(AlertType.FRONT_RUNNING, "bob")]
        assert found[0].accounts == ("sally-ira", "bob-1")
        assert found[0].evidence["insider_accounts"] == ["sally-ira", "bob-1"]
        # Judged by account, as before, the registered account never traded: nothing.
        assert run(tape.events, STAFF) == []
        # Without the link, Bob's sale is a customer's: Sally never unwound.
        apart = BeneficialOwners({"staff": "sally", "sally-ira": "sally", "bob-1": "bob"})
        tape = Tape(owners={a: apart.owner(a) for a in ("staff", "sally-ira", "bob-1")})
        tape.street_trade("sally-ira", "ACME", "buy", 500, "10.00")
        tape.wait(60)
        tape.street_trade("whale", "ACME", "buy", 20_000, "10.05")
        tape.wait(600)
        tape.street_trade("bob-1", "ACME", "sell", 500, "10.20")
        assert run(tape.events, STAFF, owners=apart.owner) == []

    def test_a_customer_doing_the_same_is_not_an_insider(self) -> None:
        tape = Tape()
        front_run(tape, trader="customer")
        assert run(tape.events, STAFF) == []
        # Nobody is an insider unless the firm says so: the default flags nothing.
        tape = Tape()
        front_run(tape)
        assert run(tape.events) == []

    def test_staff_trading_after_the_client_order_is_not_ahead_of_it(self) -> None:
        tape = Tape()
        tape.street_trade("whale", "ACME", "buy", 20_000, "10.05")
        tape.wait(60)
        tape.street_trade("staff", "ACME", "buy", 500, "10.10")
        tape.wait(600)
        tape.street_trade("staff", "ACME", "sell", 500, "10.20")
        assert run(tape.events, STAFF) == []

    def test_staff_following_a_block_is_not_ahead_of_a_smaller_order_that_comes_next(
        self,
    ) -> None:
        tape = Tape()
        tape.street_trade("whale", "ACME", "buy", 30_000, "10.05")  # USD 301,500: public
        tape.wait(60)
        tape.street_trade("staff", "ACME", "buy", 500, "10.10")
        tape.wait(60)
        tape.street_trade("minnow", "ACME", "buy", 12_000, "10.10")  # USD 121,200
        tape.wait(600)
        tape.street_trade("staff", "ACME", "sell", 500, "10.20")
        assert run(tape.events, STAFF) == []
        # Ahead of a larger order than the one it followed, it is front-running again.
        tape = Tape()
        tape.street_trade("minnow", "ACME", "buy", 12_000, "10.05")
        tape.wait(60)
        front_run(tape)
        assert [f.alert_type for f in run(tape.events, STAFF)] == [AlertType.FRONT_RUNNING]

    def test_trading_alongside_a_clients_buying_program_is_not_front_running(self) -> None:
        tape = Tape()
        tape.street_trade("whale", "ACME", "buy", 20_000, "10.00")  # the program's first
        tape.wait(540)
        front_run(tape)  # the whale's next block, nine minutes later
        assert run(tape.events, STAFF) == []
        # The program's first block is news: trading ahead of it is front-running.
        tape = Tape()
        front_run(tape)
        tape.wait(60)
        tape.street_trade("whale", "ACME", "buy", 20_000, "10.30")
        assert [f.alert_type for f in run(tape.events, STAFF)] == [AlertType.FRONT_RUNNING]

    def test_staff_ahead_who_hold_past_the_unwind_window_are_not_flagged(self) -> None:
        tape = Tape()
        front_run(tape, hold=3 * 3600)
        assert run(tape.events, STAFF) == []

    def test_a_trade_long_before_the_client_order_is_not_ahead_of_it(self) -> None:
        tape = Tape()
        front_run(tape, ahead=900)  # 15 minutes: beyond the 5-minute window
        assert run(tape.events, STAFF) == []
        wider = SurveillanceParameters(
            frontrun=FrontRunParameters(insiders=frozenset({"staff"}), ahead_window_ns=10**12)
        )
        assert [f.alert_type for f in run(tape.events, wider)] == [AlertType.FRONT_RUNNING]

    def test_resting_quotes_and_small_orders_are_not_large_client_orders(self) -> None:
        tape = Tape()
        tape.street_trade("staff", "ACME", "buy", 500, "10.00")
        tape.wait(60)
        quote = tape.place("maker", "ACME", "buy", 20_000, "10.05")
        tape.fill(quote, 20_000, "10.05", maker=True)  # a resting bid the street sold into
        tape.street_trade("small", "ACME", "buy", 9000, "10.05")  # USD 90,450
        tape.wait(600)
        tape.street_trade("staff", "ACME", "sell", 500, "10.20")
        assert run(tape.events, STAFF) == []

    def test_a_client_order_that_took_liquidity_counts_what_rested_and_traded_after(
        self,
    ) -> None:
        tape = Tape()
        tape.street_trade("staff", "ACME", "buy", 500, "10.00")
        tape.wait(60)
        order = tape.place("whale", "ACME", "buy", 20_000, "10.05")
        tape.fill(order, 500, "10.05")  # took the street's offer on arrival
        tape.wait(5)
        tape.fill(order, 19_500, "10.05", maker=True)  # the rest, swept moments later
        tape.wait(600)
        tape.street_trade("staff", "ACME", "sell", 500, "10.20")
        found = run(tape.events, STAFF)
        assert [f.evidence["client_quantity"] for f in found] == [20_000]


@pytest.mark.spec("MAN-4")
class TestRestrictedListAhead:
    def test_staff_buying_shortly_before_the_symbol_is_restricted_is_flagged(self) -> None:
        tape = Tape()
        tape.street_trade("staff", "ACME", "buy", 1000, "20.00")
        tape.wait(1800)
        tape.street_trade("staff", "ACME", "buy", 500, "20.30")
        tape.street_trade("customer", "ACME", "buy", 5000, "20.30")
        tape.wait(3600)
        listed = tape.restrict("ACME")
        found = run(tape.events, STAFF)
        assert [f.alert_type for f in found] == [AlertType.RESTRICTED_LIST_AHEAD]
        finding = found[0]
        assert finding.detector is Detector.FRONT_RUNNING
        assert finding.owner == "staff"
        assert finding.trigger_seq == listed.seq
        ev = finding.evidence
        assert ev["net_quantity"] == 1500
        assert Decimal(ev["average_price"]) == Decimal("20.1")
        assert ev["minutes_before_listing"] == 90.0
        assert len(finding.execution_ids) == 2

    def test_the_staff_members_other_accounts_trading_ahead_of_the_listing_are_flagged(
        self,
    ) -> None:
        """Sally's registered account never trades; her own other account and an account
        linked to her (one beneficial owner) build the position together."""
        owners = BeneficialOwners(
            {"staff": "sally", "sally-2": "sally", "trust": "tom", "carl": "carl"},
            owner_links=[OwnerLink("l1", "manual", account_a="staff", account_b="trust")],
        )
        tape = Tape(owners={a: owners.owner(a) for a in ("staff", "sally-2", "trust", "carl")})
        tape.street_trade("sally-2", "ACME", "buy", 600, "20.00")
        tape.street_trade("trust", "ACME", "buy", 600, "20.10")
        tape.street_trade("carl", "ACME", "buy", 5000, "20.10")  # a customer: not judged
        tape.wait(1800)
        tape.restrict("ACME")
        found = run(tape.events, STAFF, owners=owners.owner)
        assert [(f.alert_type, f.owner) for f in found] == [
            (AlertType.RESTRICTED_LIST_AHEAD, owners.owner("staff"))
        ]
        assert found[0].accounts == ("sally-2", "trust")
        assert found[0].evidence["net_quantity"] == 1200
        assert run(tape.events, STAFF) == []  # by account: nobody

    def test_staff_who_traded_hours_before_or_netted_out_or_customers_are_not_flagged(
        self,
    ) -> None:
        tape = Tape()
        tape.street_trade("staff", "ACME", "buy", 1000, "20.00")  # 5 hours before
        tape.wait(5 * 3600)
        tape.street_trade("staff2", "ACME", "buy", 1000, "20.00")
        tape.wait(600)
        tape.street_trade("staff2", "ACME", "sell", 1000, "20.05")  # a round trip: no position
        tape.street_trade("customer", "ACME", "buy", 5000, "20.05")
        tape.street_trade("staff", "OTHER", "buy", 1000, "5.00")  # another symbol
        tape.wait(600)
        tape.restrict("ACME")
        params = SurveillanceParameters(
            frontrun=FrontRunParameters(insiders=frozenset({"staff", "staff2"}))
        )
        assert run(tape.events, params) == []

    def test_a_round_trip_whose_sale_still_rests_at_the_listing_is_no_position(self) -> None:
        tape = Tape()
        tape.street_trade("staff", "ACME", "buy", 1600, "20.00")
        tape.wait(1800)
        sale = tape.place("staff", "ACME", "sell", 1600, "19.98")
        tape.fill(sale, 700, "19.98")  # the rest waits for a buyer
        tape.wait(1800)
        tape.restrict("ACME")
        assert run(tape.events, STAFF) == []
        # Had it not offered the rest, the 900 shares it kept would be a position.
        tape = Tape()
        tape.street_trade("staff", "ACME", "buy", 1600, "20.00")
        tape.wait(1800)
        tape.street_trade("staff", "ACME", "sell", 700, "19.98")
        tape.wait(1800)
        tape.restrict("ACME")
        found = run(tape.events, STAFF)
        assert [f.evidence["net_quantity"] for f in found] == [900]

    def test_the_restricted_list_event_of_the_ledger_is_read(self) -> None:
        document = {
            "type": "trading:restricted_list:added",
            "ts": "1767625200000000000",
            "subject": {"kind": "instrument", "id": "ACME"},
            "data": {"symbol": "ACME", "reason": "mandate"},
        }
        assert parse_market_event(7, document) == RestrictedListed(
            seq=7, ts_ns=1_767_625_200_000_000_000, symbol="ACME"
        )
        for bad in ({**document, "data": {}}, {**document, "ts": "soon"}):
            with pytest.raises(ValueError, match="restricted-list event"):
                parse_market_event(7, bad)

    def test_a_restart_at_every_event_finds_the_same(self) -> None:
        tape = Tape()
        front_run(tape)
        tape.wait(60)
        tape.street_trade("staff", "ACME", "buy", 700, "10.25")
        tape.wait(1200)
        tape.restrict("ACME")
        whole = run(tape.events, STAFF)
        assert {f.alert_type for f in whole} == {
            AlertType.FRONT_RUNNING,
            AlertType.RESTRICTED_LIST_AHEAD,
        }
        for cut in range(1, len(tape.events)):
            first = SurveillanceEngine(STAFF)
            before = [f for e in tape.events[:cut] for f in first.feed(e)]
            seq, floor = first.resume_point()
            second = SurveillanceEngine(STAFF, floor_ns=floor)
            for event in tape.events[:cut]:
                if seq is not None and event.seq >= seq:
                    second.feed(event)
            after = [f for e in tape.events[cut:] for f in second.feed(e)]
            assert before + after == whole, f"restart after event {cut}"
