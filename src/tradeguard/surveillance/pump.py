"""MAN-3 pump and dump: a group buys a symbol, its price rises far, the group sells near the top.

The model (after FINRA's and the SEC's descriptions of pump-and-dump schemes, e.g. FINRA
Investor Insights "Avoid pump-and-dump schemes", and the SEC's microcap fraud guidance: a
group accumulates, often through several accounts and newly opened ones, the price is driven
up by its buying and promotion, and the group sells into the rise; issue #12's example is
+20% in 4 hours then -15% within 12). Per symbol it keeps the fills of the last `window` and,
at a sale, asks:

1. **the rise**: the highest price in the window (the *peak*) is at least `min_rise` above
   the lowest price recorded before the peak in the window (the *base*);
2. **a sale near the peak**: the sale's price is at most `near_peak` below the peak;
3. **the group**: the beneficial owners who built a position before the peak (the most they
   held, counting from the window's start, is at least `min_accumulation` of what they
   bought: a market maker buys and sells all along and holds little; and at least a
   member's part of the group's shares, `min_quantity / min_accounts`: a retail trader who
   happened to buy before and sell near the top is not one of them) and have sold at least
   `min_sold_fraction` of that position at prices near the peak; the seller is one of them;
4. **coordination and weight**: the group used at least `min_accounts` accounts (linked
   accounts are one owner with several accounts; unlinked ones, new accounts among them,
   join the group by doing the same thing), bought at least `min_quantity` shares, and its
   buying was at least `min_buy_share` of all shares customers bought in the symbol in the
   window up to the peak: the group drove the rise.

Honest near-misses: a rally on news where the buyers hold (no sale, no group); profit-taking
by unrelated traders in a real rally (their buying is a small share of the symbol's: 4
fails); a market maker quoting both sides through the rise (it holds little: 3 fails); one
trader that bought and sold a position in an ordinary market (1 fails: ordinary prices move
a few percent in hours, and low-volume symbols are judged by the same rise).

The quick test (1) runs on the window's running minimum and maximum; the group is computed
only at a sale near the peak of a symbol that rose that far, by an owner that bought there.
The state is the fills of the last `window` only, so a restart replaying the lookback
rebuilds it exactly (surveillance/engine.py). Pure: no I/O.
"""

from __future__ import annotations

from collections import deque
from decimal import Decimal

from tradeguard.surveillance.book import BookTracker
from tradeguard.surveillance.domain import AlertType, Finding, PumpParameters, ratio, score
from tradeguard.surveillance.events import Fill

MAX_EVIDENCE_IDS = 100


class _Trade:
    __slots__ = ("account_id", "buy", "execution_id", "order_id", "owner", "price", "quantity", "t")

    def __init__(self, fill: Fill, t: int) -> None:
        self.t = t
        self.owner = fill.owner
        self.account_id = fill.account_id
        self.buy = fill.buy
        self.quantity = fill.quantity
        self.price = fill.price
        self.order_id = fill.order_id
        self.execution_id = fill.execution_id


class _Tape:
    """One symbol's fills within the window, with the running minimum and maximum price and
    each owner's shares bought."""

    __slots__ = ("bought", "highs", "lows", "trades")

    def __init__(self) -> None:
        self.trades: deque[_Trade] = deque()
        # Monotonic queues of (time, price): the window's maximum and minimum at the front.
        self.highs: deque[tuple[int, Decimal]] = deque()
        self.lows: deque[tuple[int, Decimal]] = deque()
        self.bought: dict[str, int] = {}

    def add(self, trade: _Trade) -> None:
        self.trades.append(trade)
        price, t = trade.price, trade.t
        highs, lows = self.highs, self.lows
        while highs and highs[-1][1] <= price:
            highs.pop()
        highs.append((t, price))
        while lows and lows[-1][1] >= price:
            lows.pop()
        lows.append((t, price))
        if trade.buy:
            self.bought[trade.owner] = self.bought.get(trade.owner, 0) + trade.quantity

    def evict_before(self, t: int) -> None:
        trades = self.trades
        while trades and trades[0].t < t:
            trade = trades.popleft()
            if trade.buy:
                left = self.bought[trade.owner] - trade.quantity
                if left:
                    self.bought[trade.owner] = left
                else:
                    del self.bought[trade.owner]
        while self.highs and self.highs[0][0] < t:
            self.highs.popleft()
        while self.lows and self.lows[0][0] < t:
            self.lows.popleft()


class _Member:
    __slots__ = (
        "accounts",
        "bought",
        "buy_notional",
        "execution_ids",
        "held",
        "net",
        "order_ids",
        "sell_notional",
        "sold",
    )

    def __init__(self) -> None:
        self.bought = 0
        self.sold = 0
        self.buy_notional = Decimal(0)
        self.sell_notional = Decimal(0)
        # The running position from the window's start to the peak, and the most it held.
        self.net = 0
        self.held = 0
        self.accounts: set[str] = set()
        self.order_ids: list[str] = []
        self.execution_ids: list[str] = []


class PumpDumpDetector:
    def __init__(self, params: PumpParameters, book: BookTracker) -> None:
        self.params = params
        self._book = book
        self._tapes: dict[str, _Tape] = {}

    def fill(self, event: Fill, t: int) -> Finding | None:
        params = self.params
        tape = self._tapes.get(event.symbol)
        if tape is None:
            tape = self._tapes[event.symbol] = _Tape()
        tape.add(_Trade(event, t))
        tape.evict_before(t - params.window_ns)
        if event.buy or event.owner not in tape.bought:
            return None
        peak_t, peak = tape.highs[0]
        low = tape.lows[0][1]
        # (1) on the running extremes first: an ordinary market stops here.
        if peak < low * (1 + params.min_rise):
            return None
        # (2) the sale near the peak.
        floor = peak * (1 - params.near_peak)
        if event.price < floor:
            return None
        return self._judge(event, t, tape, peak_t=peak_t, peak=peak, floor=floor)

    def _judge(
        self, event: Fill, t: int, tape: _Tape, *, peak_t: int, peak: Decimal, floor: Decimal
    ) -> Finding | None:
        params = self.params
        base: Decimal | None = None
        base_t = 0
        bought_before_peak = 0
        members: dict[str, _Member] = {}
        for trade in tape.trades:
            member = members.get(trade.owner)
            if member is None:
                member = members[trade.owner] = _Member()
            if trade.t <= peak_t:
                if base is None or trade.price < base:
                    base, base_t = trade.price, trade.t
                if trade.buy:
                    bought_before_peak += trade.quantity
                    member.bought += trade.quantity
                    member.buy_notional += trade.price * trade.quantity
                    member.net += trade.quantity
                    member.held = max(member.held, member.net)
                else:
                    member.net -= trade.quantity
            if not trade.buy and trade.price >= floor:
                member.sold += trade.quantity
                member.sell_notional += trade.price * trade.quantity
            elif not trade.buy or trade.t > peak_t:
                continue
            member.accounts.add(trade.account_id)
            member.order_ids.append(trade.order_id)
            member.execution_ids.append(trade.execution_id)
        # (1) the rise from the base recorded before the peak.
        if base is None or peak < base * (1 + params.min_rise):
            return None
        # (3) the group: built a position before the peak, sold enough of it near the peak.
        group = {
            owner: member
            for owner, member in members.items()
            if member.bought
            and member.held * params.min_accounts >= params.min_quantity
            and member.held >= params.min_accumulation * member.bought
            and member.sold
            and member.sold >= params.min_sold_fraction * member.held
        }
        if event.owner not in group:
            return None
        # (4) coordination and weight.
        accounts = sorted({a for member in group.values() for a in member.accounts})
        bought = sum(member.bought for member in group.values())
        sold = sum(member.sold for member in group.values())
        share = ratio(bought, bought_before_peak)
        if (
            len(accounts) < params.min_accounts
            or bought < params.min_quantity
            or share < params.min_buy_share
        ):
            return None
        rise = peak / base - 1
        buy_notional = sum((m.buy_notional for m in group.values()), Decimal(0))
        sell_notional = sum((m.sell_notional for m in group.values()), Decimal(0))
        average_buy = buy_notional / bought
        average_sell = sell_notional / sold
        orders = sorted({o for member in group.values() for o in member.order_ids})
        executions = [e for member in group.values() for e in member.execution_ids]
        owners = sorted(group)
        summary = (
            f"{len(owners)} owner(s) with {len(accounts)} accounts bought {bought} "
            f"{event.symbol} ({_percent(share)} of customer buying) at {_money(average_buy)} on "
            f"average; the price rose {_percent(rise)} from {base} to {peak}; they sold {sold} "
            f"near the peak at {_money(average_sell)} on average"
        )
        return Finding(
            alert_type=AlertType.PUMP_AND_DUMP,
            symbol=event.symbol,
            owner=event.owner,
            accounts=tuple(accounts),
            score=score(
                ratio(rise, params.min_rise),
                ratio(share, params.min_buy_share),
                ratio(len(accounts), params.min_accounts),
                ratio(bought, params.min_quantity),
            ),
            trigger_seq=event.seq,
            trigger_ns=t,
            window_start_ns=min(base_t, tape.trades[0].t),
            window_end_ns=t,
            summary=summary,
            order_ids=tuple(orders[:MAX_EVIDENCE_IDS]),
            execution_ids=tuple(executions[-MAX_EVIDENCE_IDS:]),
            evidence={
                "owners": owners,
                "accounts": accounts,
                "base_price": str(base),
                "base_at_ns": base_t,
                "peak_price": str(peak),
                "peak_at_ns": peak_t,
                "rise_fraction": _fraction(rise),
                "minutes_base_to_peak": round((peak_t - base_t) / 60e9, 1),
                "group_bought": bought,
                "group_sold_near_peak": sold,
                "average_buy_price": _money(average_buy),
                "average_sell_price": _money(average_sell),
                "group_buy_share": _fraction(share),
                "symbol_bought_before_peak": bought_before_peak,
                "near_peak_floor": _money(floor),
                "held_at_most_by_owner": {owner: group[owner].held for owner in owners},
                "sold_fraction_by_owner": {
                    owner: _fraction(ratio(group[owner].sold, group[owner].held))
                    for owner in owners
                },
                "window_seconds": params.window_ns // 1_000_000_000,
                "book": self._book.snapshot(event.symbol, suspects=orders),
            },
        )

    def sweep(self, now: int) -> None:
        """Drop symbols with nothing left in the window (memory only)."""
        start = now - self.params.window_ns
        for symbol in [
            s for s, tape in self._tapes.items() if not tape.trades or tape.trades[-1].t < start
        ]:
            del self._tapes[symbol]


def _money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.0001")))


def _fraction(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.0001")))


def _percent(value: Decimal) -> str:
    return f"{(value * 100).quantize(Decimal('0.1'))}%"
