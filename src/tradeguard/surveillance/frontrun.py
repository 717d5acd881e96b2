"""MAN-4 front-running: staff or proprietary accounts trading on what the firm knows first.

Two patterns, after FINRA Rule 5270 (front running of block transactions: trading a
security while in possession of material, non-public market information about an imminent
block transaction) and Rule 5320 (trading ahead of customer orders), and the firm's duty to
watch its employees' and its own trading against its restricted list (Exchange Act section
15(g), FINRA Rule 3110(d) and 3210):

**Insiders are owners.** The firm registers staff and proprietary *accounts* (`insiders`);
the model judges their beneficial *owners* (the user with all their accounts, joined with
whatever is linked to them as one owner: surveillance/owners.py), as the stream resolves
them (`set_owners`). A staff member trading through another account of theirs, or through an
account linked to them, is the same insider; and an insider owner's own large orders are
never "client" orders.

**FRONT_RUNNING.** An *insider* (the owner of a staff or proprietary account) trades a
symbol, a *large client order* on the same side follows within `ahead_window`, and the
insider unwinds (trades the other side) within `unwind_window` of the client order. A
client order is one that took liquidity when it arrived (it moves the price; a market
maker's resting quotes do not), and it is large when what it executed is worth at least
`large_order_notional`. The finding is raised at the unwinding fill once the insider traded
at least `min_quantity` shares ahead and unwound at least `min_quantity`.
What the market already knew is not a secret: a client order that continues its owner's
program (another large order on the same side within `unwind_window` before it) is not a
target, and an insider fill within `ahead_window` after another client's block on the same
side, at least as large as the target, is explained by that block (trading after it).

**RESTRICTED_LIST_AHEAD.** When the firm adds a symbol to its restricted list (it has
non-public information: a mandate, research about to change), every insider owner whose
fills in that symbol (across its accounts) within `restricted_window` before the addition
built a net position of at least `min_quantity` shares (either way) is a finding, unless
its resting orders would take it back below that (a round trip whose sale had not executed
yet).

Near-misses it lets pass: a customer (not an insider) trading ahead of another customer's
order; an insider trading after the client order (the order is public then), or ahead of it
without unwinding within the window (an investment); an insider that never traded ahead
of a large order at all (the large side was resting quotes); an insider whose trading in the
symbol was long before the listing, or netted out.

State: the insider owners' fills within the longer window, and the client orders that arrived
taking liquidity, each followed for `ahead_window + unwind_window` from its arrival (what it
executed then, taking or resting): all a function of the lookback, so a restart replaying
it rebuilds the state exactly. Pure: no I/O.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Iterable
from decimal import Decimal

from tradeguard.surveillance.book import BookTracker
from tradeguard.surveillance.domain import (
    AlertType,
    Finding,
    FrontRunParameters,
    ratio,
    score,
)
from tradeguard.surveillance.events import Fill, RestrictedListed

MAX_EVIDENCE_IDS = 100


class _Client:
    """A client order that took liquidity on arrival, followed for `ahead + unwind` from
    then (a fixed lifetime: the state stays a function of the lookback)."""

    __slots__ = (
        "account_id",
        "buy",
        "execution_ids",
        "large",
        "notional",
        "order_id",
        "owner",
        "quantity",
        "seq",
        "symbol",
        "t",
    )

    def __init__(self, fill: Fill, t: int) -> None:
        self.t = t
        self.seq = fill.seq
        self.order_id = fill.order_id
        self.account_id = fill.account_id
        self.owner = fill.owner
        self.symbol = fill.symbol
        self.buy = fill.buy
        self.notional = Decimal(0)
        self.quantity = 0
        self.execution_ids: list[str] = []
        self.large = False


class FrontRunDetector:
    def __init__(self, params: FrontRunParameters, book: BookTracker) -> None:
        self.params = params
        self._book = book
        self._insiders = params.insiders
        # The insiders' beneficial owners: until the stream says otherwise (`set_owners`),
        # each account is its own owner (events.own_account).
        self._insider_owners: frozenset[str] = params.insiders
        # Insider fills per symbol and owner, within the longer window.
        self._insider_fills: dict[str, dict[str, deque[Fill]]] = {}
        # Client orders that arrived taking liquidity, in arrival order, and the large ones
        # per symbol.
        self._clients: dict[str, _Client] = {}
        self._arrivals: deque[_Client] = deque()
        self._large: dict[str, dict[str, _Client]] = {}

    def set_owners(self, owner_of: Callable[[str], str]) -> None:
        """Judge by beneficial owner: the owners (as `owner_of` names them, the function the
        events' owners come from) of the registered insider accounts are the insiders."""
        self._insider_owners = frozenset(owner_of(account) for account in self._insiders)

    def _insider(self, event: Fill) -> bool:
        return event.owner in self._insider_owners or event.account_id in self._insiders

    def fill(self, event: Fill, t: int) -> Finding | None:
        params = self.params
        self._forget(t)
        if self._insiders and self._insider(event):
            by_owner = self._insider_fills.get(event.symbol)
            if by_owner is None:
                by_owner = self._insider_fills[event.symbol] = {}
            fills = by_owner.get(event.owner)
            if fills is None:
                fills = by_owner[event.owner] = deque()
            fills.append(event)
            _evict(fills, t - params.reach_ns)
            return self._unwind(event, t, fills)
        client = self._clients.get(event.order_id)
        if client is None:
            if event.maker:
                return None  # resting liquidity (a quote) is not an order that moves prices
            client = self._clients[event.order_id] = _Client(event, t)
            self._arrivals.append(client)
        # Everything the order executed from its arrival on: what it took on arrival and
        # what rested of it and traded at its limit moments later.
        client.notional += event.price * event.quantity
        client.quantity += event.quantity
        if len(client.execution_ids) < MAX_EVIDENCE_IDS:
            client.execution_ids.append(event.execution_id)
        if not client.large and client.notional >= params.large_order_notional:
            client.large = True
            self._large.setdefault(event.symbol, {})[event.order_id] = client
        return None

    def _forget(self, t: int) -> None:
        # Client orders are followed for `ahead + unwind` from their arrival, and kept an
        # `unwind` longer: a later order of the same client asks whether they came before it.
        params = self.params
        horizon = t - params.ahead_window_ns - 2 * params.unwind_window_ns
        arrivals = self._arrivals
        while arrivals and arrivals[0].t < horizon:
            client = arrivals.popleft()
            del self._clients[client.order_id]
            if client.large:
                large = self._large[client.symbol]
                del large[client.order_id]
                if not large:
                    del self._large[client.symbol]

    def _unwind(self, event: Fill, t: int, fills: deque[Fill]) -> Finding | None:
        """The insider's fill unwinds a position taken just ahead of a large client order."""
        params = self.params
        best: tuple[int, _Client, list[Fill], list[Fill]] | None = None
        larges = self._large.get(event.symbol, {})
        for large in larges.values():
            if (
                large.buy == event.buy
                or large.t < t - params.unwind_window_ns
                or _program(large, larges.values(), params.unwind_window_ns)
            ):
                continue
            ahead = [
                f
                for f in fills
                if f.buy == large.buy
                and f.seq < large.seq
                and f.ts_ns >= large.t - params.ahead_window_ns
                and not _following(f, large, larges.values(), params)
            ]
            entered = sum(f.quantity for f in ahead)
            if entered < params.min_quantity:
                continue
            unwound = [f for f in fills if f.buy != large.buy and f.seq > large.seq]
            if sum(f.quantity for f in unwound) < params.min_quantity:
                continue
            if best is None or entered > best[0]:
                best = (entered, large, ahead, unwound)
        if best is None:
            return None
        entered, large, ahead, unwound = best
        unwound_quantity = sum(f.quantity for f in unwound)
        entry_price = _average(ahead)
        exit_price = _average(unwound)
        gain = (exit_price - entry_price) if large.buy else (entry_price - exit_price)
        lead = (large.t - ahead[0].ts_ns) / 1e9
        side = "bought" if large.buy else "sold"
        summary = (
            f"insider {side} {entered} {event.symbol} at {_money(entry_price)} "
            f"{lead:.0f}s before a client order executed {large.quantity} shares "
            f"(USD {_money(large.notional)}) on the same side, and unwound {unwound_quantity} at "
            f"{_money(exit_price)} ({_money(gain)} a share)"
        )
        orders = sorted({f.order_id for f in ahead + unwound} | {large.order_id})
        accounts = _accounts(ahead + unwound)
        return Finding(
            alert_type=AlertType.FRONT_RUNNING,
            symbol=event.symbol,
            owner=event.owner,
            accounts=accounts,
            score=score(
                ratio(entered, params.min_quantity),
                ratio(large.notional, params.large_order_notional),
            ),
            trigger_seq=event.seq,
            trigger_ns=t,
            window_start_ns=ahead[0].ts_ns,
            window_end_ns=t,
            summary=summary,
            order_ids=tuple(orders[:MAX_EVIDENCE_IDS]),
            execution_ids=tuple([f.execution_id for f in ahead + unwound] + large.execution_ids)[
                :MAX_EVIDENCE_IDS
            ],
            evidence={
                "insider_accounts": list(accounts),
                "side_ahead": "buy" if large.buy else "sell",
                "quantity_ahead": entered,
                "average_price_ahead": _money(entry_price),
                "seconds_ahead": round(lead, 3),
                "client_order_id": large.order_id,
                "client_account": large.account_id,
                "client_quantity": large.quantity,
                "client_notional": _money(large.notional),
                "unwound_quantity": unwound_quantity,
                "average_unwind_price": _money(exit_price),
                "seconds_to_unwind": round((t - large.t) / 1e9, 3),
                "gain_per_share": _money(gain),
                "book": self._book.snapshot(event.symbol, suspects=orders),
            },
        )

    def restricted(self, event: RestrictedListed, t: int) -> list[Finding]:
        """Insiders that built a position in the symbol shortly before it was restricted."""
        params = self.params
        self._forget(t)
        found: list[Finding] = []
        by_owner = self._insider_fills.get(event.symbol, {})
        start = t - params.restricted_window_ns
        for owner in sorted(by_owner):
            fills = [f for f in by_owner[owner] if f.ts_ns >= start]
            if not fills:
                continue
            bought = sum(f.quantity for f in fills if f.buy)
            sold = sum(f.quantity for f in fills if not f.buy)
            net = bought - sold
            if abs(net) < params.min_quantity:
                continue
            # Orders still resting are decided trades: a staff member whose sale (or the
            # purchase) of a round trip had not executed yet at the listing had already
            # chosen to hold nothing.
            accounts = _accounts(fills)
            intended = net + sum(
                order.remaining if order.buy else -order.remaining
                for account in accounts
                for order in self._book.resting_of(account, event.symbol)
            )
            if abs(intended) < params.min_quantity or (intended > 0) != (net > 0):
                continue
            first = fills[0]
            building = [f for f in fills if f.buy == (net > 0)]
            price = _average(building)
            lead = (t - first.ts_ns) / 1e9
            orders = sorted({f.order_id for f in fills})
            found.append(
                Finding(
                    alert_type=AlertType.RESTRICTED_LIST_AHEAD,
                    symbol=event.symbol,
                    owner=owner,
                    accounts=accounts,
                    score=score(ratio(abs(net), params.min_quantity)),
                    trigger_seq=event.seq,
                    trigger_ns=t,
                    window_start_ns=first.ts_ns,
                    window_end_ns=t,
                    summary=(
                        f"insider {'bought' if net > 0 else 'sold'} a net {abs(net)} "
                        f"{event.symbol} at {_money(price)} on average within {lead / 60:.0f} "
                        "minutes before the symbol was put on the restricted list"
                    ),
                    order_ids=tuple(orders[:MAX_EVIDENCE_IDS]),
                    execution_ids=tuple(f.execution_id for f in fills)[:MAX_EVIDENCE_IDS],
                    evidence={
                        "insider_accounts": list(accounts),
                        "bought": bought,
                        "sold": sold,
                        "net_quantity": net,
                        "net_with_resting_orders": intended,
                        "average_price": _money(price),
                        "minutes_before_listing": round(lead / 60, 1),
                        "restricted_seq": event.seq,
                        "window_seconds": params.restricted_window_ns // 1_000_000_000,
                        "book": self._book.snapshot(event.symbol, suspects=orders),
                    },
                )
            )
        return found

    def sweep(self, now: int) -> None:
        """Drop insiders and symbols with nothing left in the window (memory only)."""
        start = now - self.params.reach_ns
        for symbol in list(self._insider_fills):
            by_owner = self._insider_fills[symbol]
            for owner in [o for o, f in by_owner.items() if not f or f[-1].ts_ns < start]:
                del by_owner[owner]
            if not by_owner:
                del self._insider_fills[symbol]


def _program(order: _Client, larges: Iterable[_Client], window_ns: int) -> bool:
    """Whether the client order continues a buying (or selling) program the market had
    already seen: the same owner sent another large order on the same side within
    `window_ns` before it. Its next order is no secret then: trading alongside it is not
    trading on non-public knowledge of it."""
    return any(
        other.owner == order.owner
        and other.buy == order.buy
        and other.seq < order.seq
        and other.t >= order.t - window_ns
        for other in larges
    )


def _following(
    fill: Fill, large: _Client, larges: Collection[_Client], params: FrontRunParameters
) -> bool:
    """Whether the insider's fill followed another client's block on the same side, at least
    as large as `large`, within `ahead_window` before it: public by then, that block
    explains the trade (staff trading after a block is not trading ahead of the next
    order). A block that continued its owner's program explains nothing new."""
    return any(
        other.owner != large.owner
        and other.buy == large.buy
        and other.seq < fill.seq
        and other.t >= fill.ts_ns - params.ahead_window_ns
        and other.notional >= large.notional
        and not _program(other, larges, params.unwind_window_ns)
        for other in larges
    )


def _accounts(fills: Iterable[Fill]) -> tuple[str, ...]:
    """The accounts the fills were in, in order of first appearance."""
    return tuple(dict.fromkeys(f.account_id for f in fills))


def _evict(fills: deque[Fill], before: int) -> None:
    while fills and fills[0].ts_ns < before:
        fills.popleft()


def _average(fills: list[Fill]) -> Decimal:
    quantity = sum(f.quantity for f in fills)
    value = sum((f.price * f.quantity for f in fills), Decimal(0))
    return value / quantity if quantity else Decimal(0)


def _money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.0001")))
