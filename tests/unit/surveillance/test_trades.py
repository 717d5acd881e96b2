"""Every finding, of every detector, carries the trades behind it (MAN-5): each order's side,
price, quantity, time and status, each execution's price, quantity, time and counterparty,
as the market events recorded them at the finding (surveillance/trades.py)."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

import pytest

from tests.support.surveillance import Tape, run
from tradeguard.core.clock import ns_to_iso
from tradeguard.surveillance.domain import AlertType, Finding, SurveillanceParameters
from tradeguard.surveillance.engine import SurveillanceEngine
from tradeguard.surveillance.evaluation import scenario_parameters
from tradeguard.surveillance.events import Fill, OrderPlaced, parse_market_event
from tradeguard.surveillance.scenarios import ScenarioConfig, generate
from tradeguard.surveillance.trades import (
    counterparty_accounts,
    mask_counterparties,
    merge_details,
)


@pytest.fixture(scope="module")
def findings() -> tuple[list[Finding], dict[str, OrderPlaced], dict[str, list[Fill]]]:
    scenario = generate(ScenarioConfig(seed=7, accounts=40, days=2, episodes_per_kind=2, symbols=4))
    params = scenario_parameters(scenario, SurveillanceParameters())
    engine = SurveillanceEngine(params)
    users = scenario.account_users
    engine.set_owners(lambda a: users.get(a, a))
    found: list[Finding] = []
    placed: dict[str, OrderPlaced] = {}
    fills: dict[str, list[Fill]] = defaultdict(list)
    for seq, doc in enumerate(scenario.documents, 1):
        event = parse_market_event(seq, doc, lambda a: users.get(a, a))
        if isinstance(event, OrderPlaced):
            placed[event.order_id] = event
        elif isinstance(event, Fill):
            fills[event.match_id].append(event)
        if event is not None:
            found.extend(engine.feed(event))
    return found, placed, fills


class TestEveryDetector:
    def test_every_findings_orders_and_executions_are_detailed_as_recorded(
        self, findings: tuple[list[Finding], dict[str, OrderPlaced], dict[str, list[Fill]]]
    ) -> None:
        found, placed, fills = findings
        by_execution = {f.execution_id: f for group in fills.values() for f in group}
        types = {f.alert_type for f in found}
        # The generated market has episodes of every kind the detectors raise.
        assert {AlertType.WASH_TRADE, AlertType.SPOOFING, AlertType.PUMP_AND_DUMP} <= types
        for finding in found:
            orders = finding.evidence["orders"]
            executions = finding.evidence["executions"]
            assert [o["order_id"] for o in orders] == list(dict.fromkeys(finding.order_ids))
            assert [x["execution_id"] for x in executions] == list(
                dict.fromkeys(finding.execution_ids)
            )
            for o in orders:
                event = placed[o["order_id"]]
                assert o["side"] == ("buy" if event.buy else "sell")
                assert o["quantity"] == event.quantity
                assert o["time"] == ns_to_iso(event.ts_ns)
                assert o["price"] == (
                    str(event.limit_price) if event.limit_price is not None else "market"
                )
                assert o["status"]
            for x in executions:
                fill = by_execution[x["execution_id"]]
                assert Decimal(x["price"]) == fill.price
                assert x["quantity"] == fill.quantity
                assert x["time"] == ns_to_iso(fill.ts_ns)
                if fill.internal:
                    [other] = [f for f in fills[fill.match_id] if f is not fill]
                    # The other side, or "internal" when the finding came at the first fill
                    # of the match (the stream resolves it from the fill that follows).
                    if (
                        other.seq < finding.trigger_seq
                        or fill.seq < other.seq <= finding.trigger_seq
                    ):
                        assert x["counterparty"] == other.account_id
                    else:
                        assert x["counterparty"] == "internal"
                        assert x["match_id"] == fill.match_id
                else:
                    assert x["counterparty"] == "street"


class TestTape:
    def test_the_status_is_the_orders_at_the_finding(self) -> None:
        tape = Tape()
        resting = tape.place("a1", "ACME", "buy", 1000, "10.00")
        taker = tape.place("a2", "ACME", "sell", 400, "10.00")
        tape.cross(taker, resting, 400, "10.00")
        gone = tape.place("a1", "ACME", "buy", 500, "9.90")
        tape.cancel(gone, reason="self_trade")
        engine = SurveillanceEngine(SurveillanceParameters())
        for event in tape.events:
            engine.feed(event)
        orders, executions = engine.tape.details(
            [resting.order_id, taker.order_id, gone.order_id, "o-unknown"],
            [e.execution_id for e in tape.events if isinstance(e, Fill)],
        )
        assert [o.get("status") for o in orders] == [
            "partially_filled",
            "filled",
            "cancelled (self_trade)",
            None,
        ]
        assert orders[0]["filled_quantity"] == 400
        assert orders[3] == {"order_id": "o-unknown"}
        assert [x["counterparty"] for x in executions] == ["a1", "a2"]
        assert [x["liquidity"] for x in executions] == ["taker", "maker"]

    def test_counterparties_are_masked_and_street_and_unknown_kept(self) -> None:
        tape = Tape()
        a = tape.place("a1", "ACME", "buy", 100, "10.00")
        b = tape.place("a2", "ACME", "sell", 100, "10.00")
        tape.cross(b, a, 100, "10.00")
        tape.street_trade("a1", "ACME", "buy", 100, "10.01")
        engine = SurveillanceEngine(SurveillanceParameters())
        for event in tape.events:
            engine.feed(event)
        ids = [e.execution_id for e in tape.events if isinstance(e, Fill)]
        orders, executions = engine.tape.details([], ids)
        finding = Finding(
            alert_type=AlertType.WASH_TRADE,
            symbol="ACME",
            owner="u",
            accounts=("a1",),
            score=50,
            trigger_seq=1,
            trigger_ns=1,
            window_start_ns=0,
            window_end_ns=1,
            summary="",
            order_ids=(),
            execution_ids=tuple(ids),
            evidence={"orders": orders, "executions": executions},
        )
        assert counterparty_accounts(finding.evidence) == {"a1", "a2"}
        masked = mask_counterparties(finding, lambda account: f"TG****{account[-1]}")
        assert [x["counterparty"] for x in masked.evidence["executions"]] == [
            "TG****1",
            "TG****2",
            "street",
        ]

    def test_merged_details_keep_first_seen_order_and_the_newest_row(self) -> None:
        old = [{"order_id": "a", "status": "working"}, {"order_id": "b", "status": "working"}]
        new = [{"order_id": "a", "status": "filled"}, {"order_id": "c"}, {"bad": 1}]
        merged = merge_details(old, new, "order_id")
        assert [r["order_id"] for r in merged] == ["a", "b", "c"]
        assert merged[0]["status"] == "filled"

    def test_the_tape_forgets_beyond_the_lookback(self) -> None:
        tape = Tape()
        old = tape.place("a1", "ACME", "buy", 100, "10.00")
        tape.wait(SurveillanceParameters().lookback_ns / 1e9 + 10)
        tape.street_trade("a2", "ZZZZ", "buy", 100, "10.00")
        engine = SurveillanceEngine(SurveillanceParameters())
        for event in tape.events:
            engine.feed(event)
        orders, _ = engine.tape.details([old.order_id], [])
        assert orders == [{"order_id": old.order_id}]
        assert run(tape.events) == []
