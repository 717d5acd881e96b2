"""MAN-3 pump and dump (pure model): a group buys, the price rises far, the group sells near
the top; honest rallies, profit-taking and market makers pass."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.support.surveillance import Tape, run
from tradeguard.surveillance.domain import (
    AlertType,
    Detector,
    PumpParameters,
    SurveillanceParameters,
)
from tradeguard.surveillance.engine import SurveillanceEngine

GANG = {"g1": "gus", "g2": "gus", "n1": "nina"}


def cents(price: Decimal) -> str:
    return str(price.quantize(Decimal("0.01")))


def rise(tape: Tape, start: str, end: str, steps: int = 10, *, buyer: str | None = None) -> None:
    """The street's price climbs from `start` to `end`: others trade at each step (and
    `buyer`, when given, buys 1,000 shares at each)."""
    low, high = Decimal(start), Decimal(end)
    for k in range(steps + 1):
        price = cents(low + (high - low) * k / steps)
        tape.street_trade(f"retail{k}", "PUMP", "buy" if k % 2 else "sell", 100, price)
        if buyer is not None:
            tape.street_trade(buyer, "PUMP", "buy", 1000, price)
        tape.wait(540)


def accumulate(tape: Tape, accounts: list[str], price: str = "2.00", quantity: int = 2000) -> None:
    for account in accounts:
        tape.street_trade(account, "PUMP", "buy", quantity, price)
        tape.wait(120)


def dump(tape: Tape, accounts: list[str], price: str = "2.55", quantity: int = 2000) -> None:
    for account in accounts:
        tape.street_trade(account, "PUMP", "sell", quantity, price)
        tape.wait(60)


@pytest.mark.spec("MAN-3")
class TestPumpAndDump:
    def test_a_group_buying_then_selling_near_the_peak_of_a_rise_is_a_pump_and_dump(
        self,
    ) -> None:
        tape = Tape(owners=GANG)
        accumulate(tape, ["g1", "g2", "n1"])
        rise(tape, "2.00", "2.60")
        dump(tape, ["g1", "g2", "n1"])
        found = run(tape.events)
        assert found, "coordinated buying, a 30% rise and sales at the top must be flagged"
        first = found[0]
        assert first.alert_type is AlertType.PUMP_AND_DUMP
        assert first.detector is Detector.PUMP
        # The first sale completes it: gus's two accounts and nina's were all buying, but
        # only gus has sold so far; two accounts of one owner are already a group.
        assert first.owner == "gus"
        assert set(first.accounts) >= {"g1"}
        ev = first.evidence
        assert ev["base_price"] == "2.00"
        assert ev["peak_price"] == "2.60"
        assert Decimal(ev["rise_fraction"]) == Decimal("0.3")
        assert Decimal(ev["group_buy_share"]) >= Decimal("0.3")
        # Every later sale of the group is a finding too, each of its own owner: nina's
        # (another user, no link) joins because she did the same thing.
        owners = {f.owner for f in found}
        assert owners == {"gus", "nina"}
        last = found[-1]
        assert set(last.accounts) == {"g1", "g2", "n1"}
        assert last.evidence["group_sold_near_peak"] == 6000
        assert last.evidence["owners"] == ["gus", "nina"]
        executions = {e.execution_id for e in tape.events if hasattr(e, "execution_id")}
        assert set(last.execution_ids) <= executions
        assert len(last.order_ids) == 6  # three purchases, three sales
        assert 50 <= last.score <= 100

    def test_a_low_volume_symbol_with_one_owners_two_accounts_is_caught(self) -> None:
        tape = Tape(owners={"g1": "gus", "g2": "gus"})
        accumulate(tape, ["g1", "g2"], price="0.50", quantity=5000)
        rise(tape, "0.50", "0.65", steps=4)
        dump(tape, ["g1", "g2"], price="0.62", quantity=5000)
        found = run(tape.events)
        assert [f.alert_type for f in found][:1] == [AlertType.PUMP_AND_DUMP]
        assert found[-1].accounts == ("g1", "g2")

    def test_a_market_maker_turning_over_many_shares_does_not_hide_the_group(self) -> None:
        tape = Tape(owners=GANG)
        accumulate(tape, ["g1", "g2", "n1"])
        # A market maker buys and sells 30,000 shares through the rise: turnover, not
        # demand (by gross buying the group would be a sixth of it).
        for k in range(11):
            price = cents(Decimal("2.00") + Decimal("0.06") * k)
            bid = tape.place("mm", "PUMP", "buy", 3000, price)
            ask = tape.place("mm", "PUMP", "sell", 3000, price)
            tape.fill(bid, 3000, price, maker=True)
            tape.fill(ask, 3000, price, maker=True)
            tape.wait(540)
        dump(tape, ["g1", "g2", "n1"], price="2.58")
        found = run(tape.events)
        assert {f.owner for f in found} == {"gus", "nina"}
        assert Decimal(found[-1].evidence["group_buy_share"]) >= Decimal("0.3")

    def test_a_bystander_selling_near_the_top_of_a_pump_is_not_one_of_the_group(self) -> None:
        tape = Tape(owners=GANG)
        accumulate(tape, ["g1", "g2", "n1"], quantity=20_000)
        tape.street_trade("lucky", "PUMP", "buy", 600, "2.00")
        rise(tape, "2.00", "2.60")
        dump(tape, ["g1", "g2", "n1"], quantity=15_000)
        dump(tape, ["lucky"], quantity=600)  # sold near the top, as the group did
        dump(tape, ["g1", "g2", "n1"], quantity=5000)
        found = run(tape.events)
        assert {f.owner for f in found} == {"gus", "nina"}
        assert all("lucky" not in f.accounts for f in found)
        # Without the member share, the lucky trader's sale is an alert of its own.
        loose = SurveillanceParameters(pump=PumpParameters(min_member_share=Decimal(0)))
        assert "lucky" in {f.owner for f in run(tape.events, loose)}

    def test_a_rally_where_the_buyers_hold_is_not_flagged(self) -> None:
        tape = Tape(owners=GANG)
        accumulate(tape, ["g1", "g2", "n1"])
        rise(tape, "2.00", "2.60", buyer="fund")
        # Others sell to them near the top; the buyers keep what they bought.
        for k in range(5):
            tape.street_trade(f"seller{k}", "PUMP", "sell", 500, "2.58")
            tape.wait(60)
        assert run(tape.events) == []

    def test_unrelated_traders_taking_a_profit_in_a_real_rally_are_not_flagged(self) -> None:
        tape = Tape()
        accumulate(tape, ["p1", "p2", "p3"], quantity=300)
        rise(tape, "2.00", "2.60", buyer="fund")  # a large buyer that holds
        dump(tape, ["p1", "p2", "p3"], quantity=300)
        assert run(tape.events) == []
        # They pass on the buying shares: without them they would be a "group". The fund's
        # holding is the demand that lifted the price; each of them is a bystander in it.
        params = SurveillanceParameters(
            pump=PumpParameters(min_buy_share=Decimal(0), min_member_share=Decimal(0))
        )
        assert run(tape.events, params) == []  # 900 shares: below min_quantity as well
        loose = SurveillanceParameters(
            pump=PumpParameters(
                min_buy_share=Decimal(0), min_member_share=Decimal(0), min_quantity=100
            )
        )
        assert {f.alert_type for f in run(tape.events, loose)} == {AlertType.PUMP_AND_DUMP}
        bystanders = SurveillanceParameters(
            pump=PumpParameters(min_buy_share=Decimal(0), min_quantity=100)
        )
        assert run(tape.events, bystanders) == []

    def test_a_market_maker_quoting_both_sides_through_the_rise_is_not_flagged(self) -> None:
        tape = Tape(owners={"mm1": "maker", "mm2": "maker"})
        low, high = Decimal("2.00"), Decimal("2.60")
        for k in range(21):
            price = low + (high - low) * min(k, 10) / 10
            for account in ("mm1", "mm2"):
                bid = tape.place(account, "PUMP", "buy", 1000, cents(price - Decimal("0.01")))
                ask = tape.place(account, "PUMP", "sell", 1000, cents(price + Decimal("0.01")))
                tape.fill(bid, 1000, cents(price - Decimal("0.01")), maker=True)
                tape.fill(ask, 1000, cents(price + Decimal("0.01")), maker=True)
            tape.wait(300)
        assert run(tape.events) == []

    def test_a_rise_below_the_threshold_is_not_flagged(self) -> None:
        tape = Tape(owners=GANG)
        accumulate(tape, ["g1", "g2", "n1"])
        rise(tape, "2.00", "2.30")  # +15%
        dump(tape, ["g1", "g2", "n1"], price="2.28")
        assert run(tape.events) == []
        lower = SurveillanceParameters(pump=PumpParameters(min_rise=Decimal("0.1")))
        assert run(tape.events, lower)

    def test_sales_after_the_price_fell_back_are_not_near_the_peak(self) -> None:
        tape = Tape(owners=GANG)
        accumulate(tape, ["g1", "g2", "n1"])
        rise(tape, "2.00", "2.60")
        tape.street_trade("retail", "PUMP", "sell", 100, "2.20")
        dump(tape, ["g1", "g2", "n1"], price="2.20")  # 15% below the peak
        assert run(tape.events) == []

    def test_a_rise_spread_over_more_than_the_window_is_not_flagged(self) -> None:
        tape = Tape(owners=GANG)
        accumulate(tape, ["g1", "g2", "n1"])
        tape.wait(3 * 3600)
        rise(tape, "2.00", "2.60")  # 90 minutes: the purchases are 4.5 hours old at the top
        dump(tape, ["g1", "g2", "n1"])
        assert run(tape.events) == []

    def test_one_account_alone_is_not_a_group_unless_the_setting_says_so(self) -> None:
        tape = Tape()
        accumulate(tape, ["solo"], quantity=5000)
        rise(tape, "2.00", "2.60")
        dump(tape, ["solo"], quantity=5000)
        assert run(tape.events) == []
        alone = SurveillanceParameters(pump=PumpParameters(min_accounts=1))
        assert [f.owner for f in run(tape.events, alone)] == ["solo"]

    def test_a_restart_at_every_event_finds_the_same(self) -> None:
        tape = Tape(owners=GANG)
        accumulate(tape, ["g1", "g2", "n1"])
        rise(tape, "2.00", "2.60", steps=5)
        dump(tape, ["g1", "g2", "n1"])
        params = SurveillanceParameters()
        whole = run(tape.events, params)
        assert whole
        for cut in range(1, len(tape.events)):
            first = SurveillanceEngine(params)
            before = [f for e in tape.events[:cut] for f in first.feed(e)]
            seq, floor = first.resume_point()
            second = SurveillanceEngine(params, floor_ns=floor)
            for event in tape.events[:cut]:
                if seq is not None and event.seq >= seq:
                    second.feed(event)
            after = [f for e in tape.events[cut:] for f in second.feed(e)]
            assert before + after == whole, f"restart after event {cut}"
