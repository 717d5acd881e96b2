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
   net buying was at least `min_buy_share` of customers' net buying in the symbol in the
   window up to the peak (each owner's shares bought less sold: a market maker turning its
   inventory over adds little to the demand), each member's at least `min_member_share`
   of it: the group drove the rise, and a bystander who sold near the top is not in it.

Honest near-misses: a rally on news where the buyers hold (no sale, no group); profit-taking
by unrelated traders in a real rally (their buying is a small share of the symbol's: 4
fails); a market maker quoting both sides through the rise (it holds little: 3 fails); one
trader that bought and sold a position in an ordinary market (1 fails: ordinary prices move
a few percent in hours, and low-volume symbols are judged by the same rise).

**Incremental.** Every fill updates running aggregates in amortised O(1): per symbol, the
window's fills with the running maximum and minimum price (monotonic deques) and the
cumulative shares customers bought; per owner and symbol, its fills with cumulative bought
and net shares and the running maximum of its position (another monotonic deque). A sale
is judged only when the symbol passes the quick test (1) on the running extremes and the
sale is near the peak (2); then each owner is judged from its own aggregates: what it
bought before the peak and the most it held then come from its cumulative sums (a binary
search for the peak's time and a maximum over its own fills), and an owner whose running
figures already rule it out (nothing sold, or a position too small even over the whole
window) is never scanned. Only the group's members' own fills are read, for the evidence.
Nothing rescans the symbol's four hours of fills (a market maker selling near the top of a
rally used to cost one such scan per fill).

The state is the fills of the last `window` only, so a restart replaying the lookback
rebuilds it exactly (surveillance/engine.py): the cumulative sums start anywhere, and only
their differences within the window are used. Pure: no I/O.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from decimal import Decimal

from tradeguard.surveillance.book import BookTracker
from tradeguard.surveillance.domain import AlertType, Finding, PumpParameters, ratio, score
from tradeguard.surveillance.events import Fill

MAX_EVIDENCE_IDS = 100
# Evicted entries at the front of a list are deleted in one go once there are this many
# (and they are at least half of it): amortised O(1) eviction with bisect-able lists.
_COMPACT_AT = 512


class _Holding:
    """One owner's fills in one symbol within the window, with cumulative sums (from any
    origin: only differences are used) and the running maximum of its position."""

    __slots__ = (
        "bought",
        "cum_bought",
        "cum_net",
        "evicted_bought",
        "evicted_net",
        "head",
        "net_highs",
        "sold",
        "times",
        "trades",
    )

    def __init__(self) -> None:
        # Parallel lists, live from `head` on: the fills, their times, and the owner's
        # cumulative bought and net shares through each.
        self.trades: list[Fill] = []
        self.times: list[int] = []
        self.cum_bought: list[int] = []
        self.cum_net: list[int] = []
        self.head = 0
        # The cumulative sums through the last evicted fill.
        self.evicted_bought = 0
        self.evicted_net = 0
        # Shares bought and sold within the window.
        self.bought = 0
        self.sold = 0
        # Monotonic queue of (fill index, cumulative net): the window's highest at the front.
        self.net_highs: deque[tuple[int, int]] = deque()

    def add(self, trade: Fill, t: int) -> None:
        cum_net = self.cum_net
        bought = self.cum_bought[-1] if self.cum_bought else self.evicted_bought
        net = cum_net[-1] if cum_net else self.evicted_net
        if trade.buy:
            bought += trade.quantity
            net += trade.quantity
            self.bought += trade.quantity
        else:
            net -= trade.quantity
            self.sold += trade.quantity
        index = len(self.trades)
        self.trades.append(trade)
        self.times.append(t)
        self.cum_bought.append(bought)
        cum_net.append(net)
        highs = self.net_highs
        while highs and highs[-1][1] <= net:
            highs.pop()
        highs.append((index, net))

    def evict_first(self) -> None:
        head = self.head
        trade = self.trades[head]
        if trade.buy:
            self.bought -= trade.quantity
        else:
            self.sold -= trade.quantity
        self.evicted_bought = self.cum_bought[head]
        self.evicted_net = self.cum_net[head]
        if self.net_highs[0][0] == head:
            self.net_highs.popleft()
        self.head = head + 1
        if self.head >= _COMPACT_AT and self.head * 2 >= len(self.trades):
            self._compact()

    def _compact(self) -> None:
        head = self.head
        del self.trades[:head]
        del self.times[:head]
        del self.cum_bought[:head]
        del self.cum_net[:head]
        self.net_highs = deque((index - head, net) for index, net in self.net_highs)
        self.head = 0

    @property
    def empty(self) -> bool:
        return self.head == len(self.trades)

    def held_at_most(self) -> int:
        """The most the owner held in the window, counting from its start (an upper bound
        of the most it held before the peak)."""
        return max(0, self.net_highs[0][1] - self.evicted_net) if self.net_highs else 0

    def net_before(self, peak_t: int) -> int:
        """Net shares the owner bought from the window's start to `peak_t`."""
        end = bisect_right(self.times, peak_t, self.head)
        return self.cum_net[end - 1] - self.evicted_net if end > self.head else 0

    def before(self, peak_t: int) -> tuple[int, int, int]:
        """(the index after the owner's last fill at or before `peak_t`, the shares it bought
        from the window's start to then, the most it held then)."""
        end = bisect_right(self.times, peak_t, self.head)
        if end == self.head:
            return end, 0, 0
        bought = self.cum_bought[end - 1] - self.evicted_bought
        held = max(0, max(self.cum_net[self.head : end]) - self.evicted_net)
        return end, bought, held


class _Tape:
    """One symbol's fills within the window: the running maximum and minimum price, and
    each owner's holding."""

    __slots__ = (
        "head",
        "highs",
        "holdings",
        "lows",
        "times",
        "trades",
    )

    def __init__(self) -> None:
        self.trades: list[Fill] = []
        self.times: list[int] = []
        self.head = 0
        # Monotonic queues of (time, price): the window's maximum (its latest occurrence)
        # and minimum (its earliest) at the front.
        self.highs: deque[tuple[int, Decimal]] = deque()
        self.lows: deque[tuple[int, Decimal]] = deque()
        self.holdings: dict[str, _Holding] = {}

    def add(self, trade: Fill, t: int) -> _Holding:
        self.trades.append(trade)
        self.times.append(t)
        price = trade.price
        highs, lows = self.highs, self.lows
        while highs and highs[-1][1] <= price:
            highs.pop()
        highs.append((t, price))
        while lows and lows[-1][1] > price:
            lows.pop()
        lows.append((t, price))
        holding = self.holdings.get(trade.owner)
        if holding is None:
            holding = self.holdings[trade.owner] = _Holding()
        holding.add(trade, t)
        return holding

    def evict_before(self, t: int) -> None:
        trades, times, head = self.trades, self.times, self.head
        while head < len(trades) and times[head] < t:
            trade = trades[head]
            holding = self.holdings[trade.owner]
            holding.evict_first()
            if holding.empty:
                del self.holdings[trade.owner]
            head += 1
        self.head = head
        if head >= _COMPACT_AT and head * 2 >= len(trades):
            del trades[:head]
            del self.times[:head]
            self.head = 0
        while self.highs and self.highs[0][0] < t:
            self.highs.popleft()
        while self.lows and self.lows[0][0] < t:
            self.lows.popleft()

    @property
    def empty(self) -> bool:
        return self.head == len(self.trades)

    @property
    def first_t(self) -> int:
        return self.times[self.head]

    def base_before(self, peak_t: int) -> tuple[Decimal, int]:
        """The lowest price from the window's start to `peak_t` (its earliest time)."""
        low_t, low = self.lows[0]
        if low_t <= peak_t:
            return low, low_t  # the window's lowest came before the peak
        # The window's lowest came after the peak: read the fills up to the peak (rare:
        # the price fell below its base and a sale is still near the peak).
        end = bisect_right(self.times, peak_t, self.head)
        base, base_t = self.trades[self.head].price, self.times[self.head]
        for index in range(self.head + 1, end):
            price = self.trades[index].price
            if price < base:
                base, base_t = price, self.times[index]
        return base, base_t


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

    def __init__(self, bought: int, held: int, net: int) -> None:
        # Shares bought from the window's start to the peak, the most held then, and the
        # net shares bought by then.
        self.bought = bought
        self.held = held
        self.net = max(0, net)
        self.sold = 0
        self.buy_notional = Decimal(0)
        self.sell_notional = Decimal(0)
        self.accounts: set[str] = set()
        self.order_ids: list[str] = []
        self.execution_ids: list[str] = []


class PumpDumpDetector:
    def __init__(self, params: PumpParameters, book: BookTracker) -> None:
        self.params = params
        self._book = book
        self._tapes: dict[str, _Tape] = {}
        # The smallest position a member holds: its part of the group's shares.
        self._member_min = -(-params.min_quantity // params.min_accounts)

    def fill(self, event: Fill, t: int) -> Finding | None:
        params = self.params
        tape = self._tapes.get(event.symbol)
        if tape is None:
            tape = self._tapes[event.symbol] = _Tape()
        holding = tape.add(event, t)
        tape.evict_before(t - params.window_ns)
        if event.buy or not holding.bought:
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
        # (3) the seller is a member of a group (from its own fills only) ...
        seller = self._member(holding, peak_t, floor)
        if seller is None:
            return None
        # (1) ... and the rise is from the base recorded before the peak.
        base, base_t = tape.base_before(peak_t)
        if peak < base * (1 + params.min_rise):
            return None
        # Customers' demand before the peak: each owner's net buying from the window's start
        # (a market maker turning its inventory over adds little; a holder all it bought).
        demand = sum(max(0, other.net_before(peak_t)) for other in tape.holdings.values())
        if seller.net < params.min_member_share * demand:
            return None  # a bystander: it bought too little to be driving the rise
        # The rest of the group: every other owner trading the symbol in the window, each
        # judged on its own figures (most are ruled out without reading a fill).
        group: dict[str, _Member] = {}
        for owner, other in tape.holdings.items():
            member = seller if owner == event.owner else self._member(other, peak_t, floor)
            if member is not None and member.net >= params.min_member_share * demand:
                group[owner] = member
        return self._judge(
            event,
            t,
            tape,
            group,
            peak_t=peak_t,
            peak=peak,
            floor=floor,
            base=base,
            base_t=base_t,
            demand=demand,
        )

    def _member(self, holding: _Holding, peak_t: int, floor: Decimal) -> _Member | None:
        """The owner as a member of the group (criterion 3), or None: it built a position
        before the peak and sold enough of it near the peak."""
        params = self.params
        # Ruled out on the running figures first: no sale, or never held enough.
        if not holding.sold or not holding.bought:
            return None
        held_at_most = holding.held_at_most()
        if held_at_most < self._member_min:
            return None
        end, bought, held = holding.before(peak_t)
        if (
            not bought
            or held < self._member_min
            or held < params.min_accumulation * bought
            or holding.sold < params.min_sold_fraction * held
        ):
            return None
        member = _Member(bought, held, holding.net_before(peak_t))
        for index in range(holding.head, len(holding.trades)):
            trade = holding.trades[index]
            before_peak = index < end
            if not trade.buy and trade.price >= floor:
                member.sold += trade.quantity
                member.sell_notional += trade.price * trade.quantity
            elif trade.buy and before_peak:
                member.buy_notional += trade.price * trade.quantity
            else:
                continue
            member.accounts.add(trade.account_id)
            member.order_ids.append(trade.order_id)
            member.execution_ids.append(trade.execution_id)
        if not member.sold or member.sold < params.min_sold_fraction * held:
            return None
        return member

    def _judge(
        self,
        event: Fill,
        t: int,
        tape: _Tape,
        group: dict[str, _Member],
        *,
        peak_t: int,
        peak: Decimal,
        floor: Decimal,
        base: Decimal,
        base_t: int,
        demand: int,
    ) -> Finding | None:
        params = self.params
        # (4) coordination and weight.
        accounts = sorted({a for member in group.values() for a in member.accounts})
        bought = sum(member.bought for member in group.values())
        sold = sum(member.sold for member in group.values())
        share = ratio(sum(member.net for member in group.values()), demand)
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
            window_start_ns=min(base_t, tape.first_t),
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
                "customer_net_buying_before_peak": demand,
                "net_buying_share_by_owner": {
                    owner: _fraction(ratio(group[owner].net, demand)) for owner in owners
                },
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
            s for s, tape in self._tapes.items() if tape.empty or tape.times[-1] < start
        ]:
            del self._tapes[symbol]


def _money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.0001")))


def _fraction(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.0001")))


def _percent(value: Decimal) -> str:
    return f"{(value * 100).quantize(Decimal('0.1'))}%"
