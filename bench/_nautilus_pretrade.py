"""Nautilus Trader's RiskEngine on the pre-trade benchmark's orders (runs in its own venv).

Usage (started by bench/pretrade.py): python _nautilus_pretrade.py ORDERS.json RESULT.json

Imports only Nautilus Trader and the stdlib. Builds the engine as Nautilus's own tests do
(tests/unit_tests/risk/test_engine.py): TestClock, MessageBus, Cache, Portfolio and a
RiskEngine with a RiskEngineConfig. The checks it then applies to every SubmitOrder are
the ones tradeguard's pipeline also makes: price and quantity precision, instrument
minimum/maximum quantity, maximum notional per order, the submit-rate throttle, the
trading state (HALTED), reduce-only against the position, and the free balance of a cash
account. The execution engine's endpoints are registered as no-ops, so what is timed is
the risk engine alone, from `execute(command)` until it has sent the command on or denied
it. Nautilus's logging is left uninitialised, so its log calls return at once (the
cheapest setting for it). Writes its raw samples as one JSON object to RESULT.json.
"""

from __future__ import annotations

import gc
import json
import re
import sys
from collections import Counter

from nautilus_trader.accounting.accounts.cash import CashAccount
from nautilus_trader.cache.cache import Cache
from nautilus_trader.common.component import MessageBus, TestClock
from nautilus_trader.common.factories import OrderFactory
from nautilus_trader.config import RiskEngineConfig
from nautilus_trader.core.uuid import UUID4
from nautilus_trader.execution.messages import SubmitOrder
from nautilus_trader.model.currencies import USD
from nautilus_trader.model.data import QuoteTick
from nautilus_trader.model.enums import AccountType, OmsType, OrderSide, TradingState
from nautilus_trader.model.events import AccountState
from nautilus_trader.model.identifiers import (
    AccountId,
    InstrumentId,
    PositionId,
    StrategyId,
    Symbol,
    TraderId,
    Venue,
)
from nautilus_trader.model.instruments import Equity
from nautilus_trader.model.objects import AccountBalance, Money, Price, Quantity
from nautilus_trader.model.position import Position
from nautilus_trader.portfolio.portfolio import Portfolio
from nautilus_trader.risk.engine import RiskEngine
from nautilus_trader.test_kit.stubs.events import TestEventStubs

from _latency import CLOCKS, clock_overhead_ns  # bench/ is the script's directory

POSITION = PositionId("P-ACME-1")


def build(setup: dict) -> tuple:
    clock = TestClock()
    trader = TraderId("TRADER-001")
    strategy = StrategyId("BENCH-001")
    msgbus = MessageBus(trader_id=trader, clock=clock)
    cache = Cache()
    portfolio = Portfolio(msgbus=msgbus, cache=cache, clock=clock)
    outcome = {"sent": 0, "denied": Counter()}

    def sent(_command: object) -> None:
        outcome["sent"] += 1

    def denied(event: object) -> None:
        # Group denials by reason with the numbers taken out.
        reason = re.sub(r"-?\d[\d,]*(\.\d+)?", "N", getattr(event, "reason", "")).split(":")[0]
        outcome["denied"][reason] += 1

    msgbus.register(endpoint="ExecEngine.execute", handler=sent)
    msgbus.register(endpoint="ExecEngine.process", handler=denied)

    instrument_id = InstrumentId(Symbol(setup["symbol"]), Venue("XNAS"))
    engine = RiskEngine(
        portfolio=portfolio,
        msgbus=msgbus,
        cache=cache,
        clock=clock,
        config=RiskEngineConfig(
            max_order_submit_rate=f"{setup['max_orders_per_second']}/00:00:01",
            max_notional_per_order={str(instrument_id): int(setup["max_order_notional"])},
        ),
    )
    instrument = Equity(
        instrument_id=instrument_id,
        raw_symbol=Symbol(setup["symbol"]),
        currency=USD,
        price_precision=2,
        price_increment=Price.from_str(setup["tick_size"]),
        lot_size=Quantity.from_int(1),
        max_quantity=Quantity.from_int(setup["max_quantity"]),
        min_quantity=Quantity.from_int(1),
        ts_event=0,
        ts_init=0,
    )
    cache.add_instrument(instrument)
    cash = Money(int(setup["cash"]), USD)
    cache.add_account(
        CashAccount(
            AccountState(
                account_id=AccountId("XNAS-001"),
                account_type=AccountType.CASH,
                base_currency=USD,
                reported=True,
                balances=[AccountBalance(cash, Money(0, USD), cash)],
                margins=[],
                info={},
                event_id=UUID4(),
                ts_event=0,
                ts_init=0,
            )
        )
    )
    cache.add_quote_tick(
        QuoteTick(
            instrument_id=instrument_id,
            bid_price=Price.from_str(setup["best_bid"]),
            ask_price=Price.from_str(setup["best_ask"]),
            bid_size=Quantity.from_int(100),
            ask_size=Quantity.from_int(100),
            ts_event=0,
            ts_init=0,
        )
    )
    factory = OrderFactory(trader_id=trader, strategy_id=strategy, clock=clock)
    # The long position that reduce-only sales are checked against.
    opening = factory.market(instrument_id, OrderSide.BUY, Quantity.from_int(setup["long_shares"]))
    fill = TestEventStubs.order_filled(
        opening,
        instrument,
        position_id=POSITION,
        last_px=Price.from_str(setup["reference_price"]),
        account_id=AccountId("XNAS-001"),
    )
    cache.add_position(Position(instrument, fill), OmsType.NETTING)
    return clock, engine, factory, instrument_id, trader, strategy, outcome


def main() -> int:
    orders_path, result_path = sys.argv[1], sys.argv[2]
    with open(orders_path, encoding="utf-8") as f:
        spec = json.load(f)
    setup = spec["setup"]
    clock_, engine, factory, instrument_id, trader, strategy, outcome = build(setup)

    commands = []
    for order in spec["orders"]:
        side = OrderSide.BUY if order["side"] == "BUY" else OrderSide.SELL
        quantity = Quantity.from_int(order["quantity"])
        if order["price"] is None:
            built = factory.market(instrument_id, side, quantity, reduce_only=order["reduce_only"])
        else:
            built = factory.limit(
                instrument_id,
                side,
                quantity,
                Price.from_str(order["price"]),
                reduce_only=order["reduce_only"],
            )
        command = SubmitOrder(
            trader_id=trader,
            strategy_id=strategy,
            order=built,
            command_id=UUID4(),
            ts_init=0,
            position_id=POSITION if order["reduce_only"] else None,
        )
        commands.append((command, order["ts_ns"], order["halted"]))

    span = spec["orders"][-1]["ts_ns"] - spec["orders"][0]["ts_ns"] + 10**10
    samples: dict[str, list[int]] = {"wall": [], "cpu": []}
    rounds = spec["rounds"] + 2  # the first two warm up and are not recorded
    for round_ in range(rounds):
        name = "wall" if round_ % 2 == 0 else "cpu"
        clock = CLOCKS[name]
        timings = samples[name] if round_ >= 2 else []
        if round_ == 2:
            outcome["sent"] = 0
            outcome["denied"].clear()
        offset = round_ * span
        gc.collect()
        for command, ts_ns, halted in commands:
            # Advancing the TestClock fires the throttler's resume timer, as the live
            # clock would; outside the timed part, like building our snapshots.
            for handler in clock_.advance_time(ts_ns + offset):
                handler.handle()
            if halted:
                engine.set_trading_state(TradingState.HALTED)
            started = clock()
            engine.execute(command)
            timings.append(clock() - started)
            if halted:
                engine.set_trading_state(TradingState.ACTIVE)

    # Raw samples: bench/pretrade.py pools them over its segments and summarises them.
    result = {
        "samples": samples,
        "clock_overhead_ns": {name: clock_overhead_ns(CLOCKS[name]) for name in CLOCKS},
        "sent": outcome["sent"],
        "denials": dict(outcome["denied"].most_common()),
    }
    with open(result_path, "w", encoding="utf-8") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
