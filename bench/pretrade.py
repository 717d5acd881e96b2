"""Pre-trade pipeline latency per order, with Nautilus Trader's RiskEngine on the same orders.

Usage: python bench/pretrade.py [--orders N] [--rounds N] [--segments N] [--seed N]
                                [--setup] [--skip-nautilus]

Builds a realistic stream of one account's orders (most accepted; rejects for the collar,
tick, size, notional, buying power, throttles, halts, locates, PDT, self-trade, restricted
list), with every RiskSnapshot prebuilt: its `recent` history is the stream's own previous
attempts. Times `evaluate` per order with every check on, then runs Nautilus Trader's
RiskEngine (pinned below, in its own venv under bench/.venvs/, created on first use or with
--setup) on the same orders for the checks both perform, as a subprocess, and merges.
The run alternates segments of our rounds and Nautilus rounds, so both see the same machine
load; rounds alternate between the wall clock and the thread CPU clock (see _latency.py).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from _latency import CLOCKS, clock_overhead_ns, summarize
from _machine import machine_info  # bench/ is on sys.path as the script's directory
from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.core.orders import OrderType, Side, TimeInForce
from tradeguard.risk.domain import (
    RECENT_ORDERS_MAX,
    AccountState,
    AccountStatus,
    AccountType,
    DayTradeState,
    InstrumentState,
    MarketState,
    OrderIntent,
    OwnOrders,
    PositionState,
    RecentOrder,
    RiskLimits,
    RiskSnapshot,
    ShortSaleState,
    TradingState,
)
from tradeguard.risk.pipeline import CHECKS, evaluate

HERE = Path(__file__).resolve().parent
NAUTILUS_VERSION = "1.221.0"  # the newest release that supports Python 3.11
NAUTILUS_VENV = HERE / ".venvs" / f"nautilus-{NAUTILUS_VERSION}"
MS = 1_000_000
START_NS = 1_767_711_600 * NS_PER_SECOND  # Tuesday 2026-01-06 15:00 UTC, 10:00 in New York
SYMBOL = "ACME"
REFERENCE = Decimal("100.00")
CASH = Decimal(100_000)
LONG_SHARES = 500
START_DATE = date(2026, 1, 6)
LIMITS = RiskLimits.defaults()
NautilusOrder = dict[str, object]

# What kind of order, how often (per 100), and what tradeguard should decide.
KINDS: list[tuple[str, int]] = [
    ("buy_limit_margin", 25),
    ("buy_limit_cash", 15),
    ("buy_market", 10),
    ("sell_long", 10),
    ("sell_short_located", 5),
    ("collar", 4),
    ("off_tick", 3),
    ("too_many_shares", 3),
    ("notional", 3),
    ("buying_power", 5),
    ("account_halted", 2),
    ("no_locate", 3),
    ("pdt", 2),
    ("self_trade", 2),
    ("restricted", 2),
    ("symbol_halted", 1),
]


def _price(rng: random.Random, low: int, high: int) -> Decimal:
    return Decimal(rng.randint(low, high)) / 100


NO_SHORT_SALE = ShortSaleState(0, 0, False)
NO_DAY_TRADES = DayTradeState(0, 0, False)
NO_OWN_ORDERS = OwnOrders(None, None, Decimal(0))


@dataclasses.dataclass
class Shape:
    """What one order of a kind looks like; each kind changes a few fields of the default."""

    quantity: int
    price: Decimal | None
    side: Side = Side.BUY
    order_type: OrderType = OrderType.LIMIT
    account_type: AccountType = AccountType.MARGIN
    cash: Decimal = CASH
    trading_state: TradingState = TradingState.ACTIVE
    position: PositionState = dataclasses.field(default_factory=PositionState.flat)
    long_value: Decimal = Decimal(0)
    instrument: dict[str, object] = dataclasses.field(default_factory=dict)
    short_sale: ShortSaleState = NO_SHORT_SALE
    day_trades: DayTradeState = NO_DAY_TRADES
    own: OwnOrders = NO_OWN_ORDERS
    reduce_only: bool = False


def _plain(shape: Shape, rng: random.Random) -> None:
    """A margin limit buy of 1-300 shares inside the collar."""


def _cash_buy(shape: Shape, rng: random.Random) -> None:
    shape.account_type = AccountType.CASH
    shape.quantity = rng.randint(1, 500)


def _market_buy(shape: Shape, rng: random.Random) -> None:
    shape.order_type, shape.price = OrderType.MARKET, None


def _long_sale(shape: Shape, rng: random.Random) -> None:
    shape.side, shape.reduce_only = Side.SELL, True
    shape.quantity = rng.randint(1, LONG_SHARES)
    shape.position = PositionState(LONG_SHARES, 0, 0, 0, 0, 0, REFERENCE)
    shape.long_value = LONG_SHARES * REFERENCE


def _day_trade_under_minimum(shape: Shape, rng: random.Random) -> None:
    # $20,000 equity, the shares bought today, three day trades already this week.
    _long_sale(shape, rng)
    shape.cash = Decimal(20_000) - shape.long_value
    shape.position = dataclasses.replace(shape.position, opened_today_long=LONG_SHARES)
    shape.day_trades = DayTradeState(3, 12, False)


def _located_short(shape: Shape, rng: random.Random) -> None:
    shape.side = Side.SELL_SHORT
    shape.short_sale = ShortSaleState(shape.quantity, 0, False)


def _unlocated_short(shape: Shape, rng: random.Random) -> None:
    shape.side = Side.SELL_SHORT


def _outside_collar(shape: Shape, rng: random.Random) -> None:
    shape.price = _price(rng, 10_501, 12_000)


def _off_tick(shape: Shape, rng: random.Random) -> None:
    shape.price = Decimal(rng.randint(96_000, 104_000)) / 1000 + Decimal("0.0005")


def _too_many_shares(shape: Shape, rng: random.Random) -> None:
    shape.quantity = rng.randint(50_001, 60_000)


def _over_notional(shape: Shape, rng: random.Random) -> None:
    shape.quantity, shape.price = rng.randint(10_001, 15_000), REFERENCE


def _over_buying_power(shape: Shape, rng: random.Random) -> None:
    shape.account_type = AccountType.CASH
    shape.quantity, shape.price = rng.randint(1_100, 2_000), REFERENCE


def _account_halted(shape: Shape, rng: random.Random) -> None:
    shape.trading_state = TradingState.HALTED


def _crosses_own_bid(shape: Shape, rng: random.Random) -> None:
    shape.side = Side.SELL_SHORT
    shape.short_sale = ShortSaleState(shape.quantity, 0, False)
    shape.own = OwnOrders(Decimal("100.50"), None, Decimal("10050"))
    shape.price = _price(rng, 9_600, 10_050)


def _restricted(shape: Shape, rng: random.Random) -> None:
    shape.instrument["restricted"] = True


def _symbol_halted(shape: Shape, rng: random.Random) -> None:
    shape.instrument["halted"] = True


SHAPES: dict[str, Callable[[Shape, random.Random], None]] = {
    "buy_limit_margin": _plain,
    "buy_limit_cash": _cash_buy,
    "buy_market": _market_buy,
    "sell_long": _long_sale,
    "sell_short_located": _located_short,
    "collar": _outside_collar,
    "off_tick": _off_tick,
    "too_many_shares": _too_many_shares,
    "notional": _over_notional,
    "buying_power": _over_buying_power,
    "account_halted": _account_halted,
    "no_locate": _unlocated_short,
    "pdt": _day_trade_under_minimum,
    "self_trade": _crosses_own_bid,
    "restricted": _restricted,
    "symbol_halted": _symbol_halted,
}


def build_order(
    kind: str, rng: random.Random, now_ns: int, history: tuple[RecentOrder, ...]
) -> tuple[OrderIntent, RiskSnapshot, NautilusOrder]:
    """One order of this kind: (intent, snapshot, the same order for Nautilus)."""
    shape = Shape(quantity=rng.randint(1, 300), price=_price(rng, 9_600, 10_400))
    SHAPES[kind](shape, rng)
    side, price, quantity = shape.side, shape.price, shape.quantity

    order = OrderIntent(
        account_id="bench-account",
        symbol=SYMBOL,
        side=side,
        order_type=shape.order_type,
        time_in_force=TimeInForce.DAY,
        quantity=quantity,
        limit_price=price,
        client_order_id=f"c-{now_ns}",
    )
    account = AccountState(
        account_id="bench-account",
        account_type=shape.account_type,
        status=AccountStatus.ACTIVE,
        trading_state=shape.trading_state,
        cash_settled=shape.cash,
        cash_unsettled=Decimal(0),
        cash_held=Decimal(0),
        long_market_value=shape.long_value,
        short_market_value=Decimal(0),
        start_of_day_equity=shape.cash + shape.long_value,
    )
    instrument = InstrumentState(
        symbol=SYMBOL,
        tick_size=Decimal("0.01"),
        lot_size=1,
        min_quantity=1,
        max_quantity=1_000_000,
        reference_price=REFERENCE,
        band_tier=1,
        tradable=True,
        restricted=False,
        threshold_security=False,
        easy_to_borrow=False,
        halted=False,
    )
    snapshot = RiskSnapshot(
        account=account,
        instrument=dataclasses.replace(instrument, **shape.instrument),
        market=MarketState(
            now_ns=now_ns,
            trading_date=START_DATE,
            market_halted=False,
            session_open=True,
            enforce_session=True,
            best_bid=Decimal("99.99"),
            best_ask=Decimal("100.01"),
        ),
        position=shape.position,
        own_orders=shape.own,
        recent=history,
        short_sale=shape.short_sale,
        day_trades=shape.day_trades,
        limits=LIMITS,
        gross_exposure=shape.long_value,
    )
    nautilus = {
        "side": "BUY" if side is Side.BUY else "SELL",
        "quantity": quantity,
        "price": None if price is None else str(price),
        "ts_ns": now_ns,
        "halted": shape.trading_state is TradingState.HALTED,
        "reduce_only": shape.reduce_only,
    }
    return order, snapshot, nautilus


def build_stream(
    count: int, seed: int
) -> tuple[list[tuple[OrderIntent, RiskSnapshot]], list[NautilusOrder], Counter[str]]:
    """The account's order stream: gaps of 0.2-1.5 s, now and then a burst 30 ms apart."""
    rng = random.Random(seed)
    names = [name for name, _ in KINDS]
    weights = [weight for _, weight in KINDS]
    cases: list[tuple[OrderIntent, RiskSnapshot]] = []
    specs: list[NautilusOrder] = []
    outcomes: Counter[str] = Counter()
    history: list[RecentOrder] = []
    now = START_NS
    burst_left = 0
    for _ in range(count):
        if burst_left:
            burst_left -= 1
            now += 30 * MS
        else:
            if rng.random() < 0.005:
                burst_left = 14
            now += rng.randint(200, 1500) * MS
        kind = rng.choices(names, weights)[0]
        recent = tuple(reversed(history[-RECENT_ORDERS_MAX:]))
        order, snapshot, spec = build_order(kind, rng, now, recent)
        decision = evaluate(order, snapshot)
        outcomes[decision.code.value if decision.code else "ACCEPTED"] += 1
        history.append(
            RecentOrder(
                SYMBOL, order.side, order.quantity, order.limit_price, now, decision.accepted
            )
        )
        cases.append((order, snapshot))
        specs.append(spec)
    return cases, specs, outcomes


def time_ours(
    cases: list[tuple[OrderIntent, RiskSnapshot]],
    rounds: range,
    samples: dict[str, list[int]],
) -> None:
    """Time `evaluate` per order: even rounds on the wall clock, odd rounds on CPU time."""
    for round_ in rounds:
        name = "wall" if round_ % 2 == 0 else "cpu"
        clock, timings = CLOCKS[name], samples[name]
        gc.collect()
        for order, snapshot in cases:
            started = clock()
            evaluate(order, snapshot)
            timings.append(clock() - started)


def ensure_nautilus() -> Path:
    python = NAUTILUS_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {NAUTILUS_VENV} (nautilus_trader=={NAUTILUS_VERSION})", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(NAUTILUS_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"nautilus_trader=={NAUTILUS_VERSION}"],
            check=True,
        )
    return python


def run_nautilus(specs: list[NautilusOrder], rounds: int) -> dict[str, Any]:
    """One Nautilus segment: a fresh engine in its own process, `rounds` recorded rounds."""
    python = ensure_nautilus()
    setup = {
        "symbol": SYMBOL,
        "tick_size": "0.01",
        "max_quantity": LIMITS.max_order_quantity,
        "max_order_notional": str(LIMITS.max_order_notional),
        "max_orders_per_second": LIMITS.max_orders_per_second,
        "cash": str(CASH),
        "reference_price": str(REFERENCE),
        "best_bid": "99.99",
        "best_ask": "100.01",
        "long_shares": LONG_SHARES,
    }
    with tempfile.TemporaryDirectory() as scratch:
        orders_path = Path(scratch) / "orders.json"
        result_path = Path(scratch) / "result.json"
        orders_path.write_text(json.dumps({"setup": setup, "orders": specs, "rounds": rounds}))
        subprocess.run(
            [str(python), str(HERE / "_nautilus_pretrade.py"), str(orders_path), str(result_path)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        result: dict[str, Any] = json.loads(result_path.read_text())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=24)
    parser.add_argument("--segments", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--setup", action="store_true", help="only create the Nautilus venv")
    parser.add_argument("--skip-nautilus", action="store_true")
    args = parser.parse_args()
    if args.setup:
        print(ensure_nautilus())
        return

    load_before = os.getloadavg()
    cases, specs, outcomes = build_stream(args.orders, args.seed)
    time_ours(cases, range(2), {"wall": [], "cpu": []})  # warm up
    ours: dict[str, list[int]] = {"wall": [], "cpu": []}
    theirs: dict[str, list[int]] = {"wall": [], "cpu": []}
    their_overhead: dict[str, list[int]] = {"wall": [], "cpu": []}
    sent = 0
    denials: Counter[str] = Counter()
    # Segments alternate between the two engines, so a change in the machine's load during
    # the run falls on both alike.
    per_segment = max(2, args.rounds // args.segments)
    for segment in range(args.segments):
        time_ours(cases, range(segment * per_segment, (segment + 1) * per_segment), ours)
        if not args.skip_nautilus:
            run = run_nautilus(specs, per_segment)
            for name in CLOCKS:
                theirs[name] += run["samples"][name]
                their_overhead[name].append(run["clock_overhead_ns"][name])
            sent += run["sent"]
            denials.update(run["denials"])
    mine = {name: summarize(ours[name], clock_overhead_ns(CLOCKS[name])) for name in CLOCKS}

    result: dict[str, object] = {
        "benchmark": "pretrade",
        "machine": machine_info(),
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "orders_per_round": len(cases),
        "rounds": per_segment * args.segments,
        "segments": args.segments,
        "tradeguard": {
            **mine,
            "checks": len(CHECKS),
            "accepted_share": round(outcomes["ACCEPTED"] / len(cases), 4),
            "outcomes": dict(outcomes.most_common()),
        },
    }
    if not args.skip_nautilus:
        nautilus = {
            name: summarize(theirs[name], int(statistics.median(their_overhead[name])))
            for name in CLOCKS
        }
        recorded = len(theirs["wall"]) + len(theirs["cpu"])
        result["nautilus"] = {
            "version": NAUTILUS_VERSION,
            **nautilus,
            "sent_share": round(sent / recorded, 4),
            "denials": dict(denials.most_common()),
        }
        result["nautilus_over_tradeguard"] = {
            f"{name}_{stat}": round(nautilus[name][stat] / mine[name][stat], 2)
            for name in CLOCKS
            for stat in ("p50_us", "p99_us", "mean_us")
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
