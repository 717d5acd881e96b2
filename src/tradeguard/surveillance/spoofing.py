"""MAN-2 spoofing and layering: orders not meant to trade, cancelled once the other side did.

FINRA (Rule 5210 and its spoofing and layering guidance, Regulatory Notice 15-09) describes
the pattern: an account places orders on one side that it does not intend to execute
(spoofing: usually large, at or near the best price; layering: several orders at several
price levels), an order of the same account on the other side executes at the price those
orders pushed toward, and the non-bona-fide orders are then cancelled, fast. RedDeer
Surveillance's spoofing rule judges the cancelled share of the opposite side within a window.

The model keeps, per beneficial owner (the owner resolution of MAN-1: a user's accounts,
joined by live owner links) and symbol, an episode that starts at an execution, so a spoof
resting in one of the owner's accounts and the execution in another are one episode:

- the far side: the owner's orders (any of its accounts) on the other side resting at the
  execution (what is left of them), placed at most `max_order_age` before it and within
  `max_distance_bps` of its price;
- the near side: the shares executed (within `cancel_window` of the first execution) plus
  the owner's orders resting on the execution's side within `near_touch_bps` of its price
  (an order parked away from the touch could not trade and would only dilute test 3).

A voluntary cancel (a cancel request or a cancel-replace: never the venue's IOC, self-trade
or halt cancels) of a far-side order at most `cancel_window` after the first execution is
counted, and the episode raises one finding once:

1. at least `min_quantity` far-side shares were cancelled;
2. the cancelled shares are at least `size_ratio` x the shares executed;
3. the far side rested at least `imbalance_ratio` x the near side at the execution.

4. the account did not re-quote in good faith. A re-quote is a new far-side limit order of
   at least half the largest cancelled one, near the touch (at or better than the best
   price cancelled, or not more than `near_touch_bps` behind the market's last price: a
   bid below it, an offer above), placed within `requote_window` of
   the cancel (a liquidity provider leaning on one side replaces what it cancels; a spoofer
   withdraws). It clears the finding only once it proves bona fide: one of its shares
   executes, or it is still shown `cancel_window` after it was placed. Its order closing
   ends it, unless another qualifying order follows within `requote_window` (a market maker
   moving its quote with the market keeps showing the size: the chain is one re-quote). A
   re-quote pulled within the window clears nothing. A cancel-replace of a far-side order
   that moves it away from the touch (a lower bid, a higher offer) counts as its cancel, and
   the moved order is no re-quote. The finding is held until that is decided, and raised
   with the first event after.

With the far side (its orders cancelled or still resting) at `layering_min_levels` distinct
prices or more it is LAYERING, otherwise SPOOFING. Each later cancel of the same episode's
far side is a further finding of the same type (folded into the alert, so its evidence ends
up listing every cancelled order). A market maker quoting both sides alike fails 2 and 3
however often it cancels; a trader whose large order was cancelled with nothing executed on
the other side never starts an episode. The evidence carries the account's order-to-trade and cancel
ratios over the episode's reach, the time from placement to cancel and from the execution
to cancel, and the customer book at the execution. Pure: no I/O.
"""

from __future__ import annotations

from collections import deque
from decimal import Decimal
from typing import Any

from tradeguard.surveillance.book import BookTracker, Resting
from tradeguard.surveillance.domain import (
    AlertType,
    Finding,
    SpoofParameters,
    ratio,
    score,
)
from tradeguard.surveillance.events import Fill, OrderClosed, OrderPlaced

BPS = Decimal(10_000)
_PLACED, _CANCELLED, _TRADED = 0, 1, 2


class _Chain:
    """A re-quote: far-side liquidity shown again after a cancel, followed until it proves
    bona fide (an order of it executes, or it is still shown `cancel_window` after it began)
    or is withdrawn (its order closed and none followed within `requote_window`)."""

    __slots__ = ("episode", "gap_until", "order_id", "start_ns")

    def __init__(self, episode: _Episode, order_id: str, t: int) -> None:
        self.episode = episode
        self.order_id: str | None = order_id
        self.start_ns = t
        # While its order is closed: until when another may take its place.
        self.gap_until = 0


class _Candidate:
    __slots__ = ("account_id", "order_id", "placed_ns", "price", "quantity")

    def __init__(self, order: Resting) -> None:
        self.account_id = order.account_id
        self.order_id = order.order_id
        self.placed_ns = order.placed_ns
        self.price = order.price
        self.quantity = order.remaining


class _Episode:
    __slots__ = (
        "account_id",
        "accounts",
        "alert_type",
        "book",
        "cancelled",
        "candidates",
        "chains",
        "executed",
        "executing_accounts",
        "execution_ids",
        "execution_price",
        "first_ns",
        "genuine_buy",
        "genuine_orders",
        "largest_cancel",
        "near_quantity",
        "owner",
        "replaced",
        "requote_until",
        "symbol",
    )

    def __init__(self, fill: Fill, t: int) -> None:
        self.account_id = fill.account_id
        # Every account of the owner the episode involves: the executing ones, then those
        # whose far-side orders were cancelled.
        self.accounts: list[str] = [fill.account_id]
        self.executing_accounts: list[str] = [fill.account_id]
        self.owner = fill.owner
        self.symbol = fill.symbol
        self.genuine_buy = fill.buy
        self.first_ns = t
        self.execution_price = fill.price
        self.executed = 0
        self.execution_ids: list[str] = []
        self.genuine_orders: list[str] = []
        self.candidates: dict[str, _Candidate] = {}
        self.near_quantity = 0
        # order id -> (shares cancelled, when)
        self.cancelled: dict[str, tuple[int, int]] = {}
        self.book: dict[str, Any] | None = None
        # Set by the first finding; later ones keep it.
        self.alert_type: AlertType | None = None
        # The re-quote test: until when a new far-side order would count as re-quoting,
        # the size it must have, and whether one came.
        self.requote_until = 0
        self.largest_cancel = 0
        self.replaced = False
        self.chains: list[_Chain] = []

    def decided(self, now: int) -> bool:
        """Whether the re-quote test is over: a re-quote proved bona fide, or none can any
        more (the window passed and every re-quote was withdrawn)."""
        return self.replaced or (now > self.requote_until and not self.chains)

    @property
    def far_quantity(self) -> int:
        return sum(c.quantity for c in self.candidates.values())


class _Activity:
    """An account's placements, voluntary cancels and fills in one symbol, recently."""

    __slots__ = ("counts", "events")

    def __init__(self) -> None:
        self.events: deque[tuple[int, int]] = deque()
        self.counts = [0, 0, 0]

    def add(self, t: int, kind: int) -> None:
        self.events.append((t, kind))
        self.counts[kind] += 1

    def evict_before(self, t: int) -> None:
        events = self.events
        while events and events[0][0] < t:
            self.counts[events.popleft()[1]] -= 1


class SpoofingDetector:
    def __init__(self, params: SpoofParameters, book: BookTracker) -> None:
        self.params = params
        self._book = book
        self._reach = params.max_order_age_ns + params.cancel_window_ns
        self._episodes: dict[tuple[str, str, bool], _Episode] = {}
        self._activity: dict[tuple[str, str], _Activity] = {}
        # Findings held for the re-quote test, in the order found, with their episodes.
        self._held: list[tuple[Finding, _Episode]] = []
        # The live order of each re-quote being followed.
        self._chain_orders: dict[str, list[_Chain]] = {}
        # Nothing held can be decided before this time unless an event decides it (`_dirty`).
        self._next_check = 0
        self._dirty = False

    def _active(self, account_id: str, symbol: str, t: int) -> _Activity:
        key = (account_id, symbol)
        activity = self._activity.get(key)
        if activity is None:
            activity = self._activity[key] = _Activity()
        activity.evict_before(t - self._reach)
        return activity

    def placed(self, event: OrderPlaced, t: int) -> None:
        self._active(event.owner, event.symbol, t).add(t, _PLACED)
        if not self._held or event.limit_price is None:
            return
        # Near the market: the last print, which may have moved since the execution.
        market = self._book.last_price(event.symbol)
        seen: set[int] = set()
        for _, episode in self._held:
            if id(episode) in seen:
                continue
            seen.add(id(episode))
            if (
                episode.replaced
                or episode.owner != event.owner
                or episode.symbol != event.symbol
                or episode.genuine_buy == event.buy
                or 2 * event.quantity < episode.largest_cancel
                or not self._at_touch(
                    episode, event.limit_price, market or episode.execution_price, event.buy
                )
                or self._moved_away(episode, event)
            ):
                continue
            # Liquidity shown again: it continues a re-quote whose order just closed, or
            # (within the re-quote window) begins one.
            gapped = [c for c in episode.chains if c.order_id is None and t <= c.gap_until]
            if gapped:
                for chain in gapped:
                    chain.order_id = event.order_id
                    self._chain_orders.setdefault(event.order_id, []).append(chain)
            elif t <= episode.requote_until:
                chain = _Chain(episode, event.order_id, t)
                episode.chains.append(chain)
                self._chain_orders.setdefault(event.order_id, []).append(chain)
            else:
                continue
            self._dirty = True

    def _at_touch(self, episode: _Episode, price: Decimal, market: Decimal, buy: bool) -> bool:
        """A re-quote shows liquidity where it can trade: at or better than the best price
        the episode cancelled (a bid as high, an offer as low), or at most
        `near_touch_bps` behind the market. An order parked further away (still
        within `max_distance_bps`) never has to fill, so it proves no good faith."""
        cancelled = [
            c.price
            for order_id, c in episode.candidates.items()
            if order_id in episode.cancelled and c.price is not None
        ]
        if cancelled:
            best = max(cancelled) if buy else min(cancelled)
            if (price >= best) if buy else (price <= best):
                return True
        reach = market * self.params.near_touch_bps / BPS
        return price >= market - reach if buy else price <= market + reach

    def _near(self, price: Decimal, market: Decimal, buy: bool) -> bool:
        """Not parked far behind the market: a bid at most `max_distance_bps` below it, an
        offer at most that far above (a more aggressive price is never far)."""
        reach = market * self.params.max_distance_bps / BPS
        return price >= market - reach if buy else price <= market + reach

    def _moved_away(self, episode: _Episode, event: OrderPlaced) -> bool:
        """A cancel-replace of one of the episode's far-side orders to a price further from
        the touch: the spoof moved away (its cancel counted), not liquidity shown again."""
        if event.replaces is None or event.limit_price is None:
            return False
        before = episode.candidates.get(event.replaces)
        if before is None or before.price is None:
            return False
        return event.limit_price < before.price if event.buy else event.limit_price > before.price

    def _chain_closed(self, order_id: str, t: int, executed: bool) -> None:
        chains = self._chain_orders.pop(order_id, None)
        if chains is None:
            return
        for chain in chains:
            if executed:
                chain.episode.replaced = True
            else:
                chain.order_id = None
                chain.gap_until = t + self.params.requote_window_ns
        self._dirty = True

    @property
    def holding(self) -> bool:
        """Whether findings are held for the re-quote test."""
        return bool(self._held)

    def due(self, now: int) -> list[Finding]:
        """Held findings whose re-quote test is over without a bona fide re-quote.

        Released in the order found, except that a finding whose test is still running
        holds back later ones of the same type, owner and symbol (so they fold in order)."""
        if not self._held or (not self._dirty and now <= self._next_check):
            return []
        self._dirty = False
        window = self.params.cancel_window_ns
        episodes = {id(e): e for _, e in self._held}
        for episode in episodes.values():
            for chain in list(episode.chains):
                if chain.order_id is not None and now > chain.start_ns + window:
                    episode.replaced = True  # still shown a whole cancel window: bona fide
                elif chain.order_id is None and now > chain.gap_until:
                    episode.chains.remove(chain)  # withdrawn
        released: list[Finding] = []
        kept: list[tuple[Finding, _Episode]] = []
        waiting: set[tuple[str, str, str]] = set()
        next_check: int | None = None
        for finding, episode in self._held:
            if not episode.decided(now):
                waiting.add(finding.fold_key)
                kept.append((finding, episode))
                for when in self._deadlines(episode, now):
                    next_check = when if next_check is None else min(next_check, when)
                continue
            if finding.fold_key in waiting:
                kept.append((finding, episode))
                continue
            self._forget_chains(episode)
            if not episode.replaced:
                released.append(finding)
        self._held = kept
        self._next_check = next_check if next_check is not None else now
        return released

    def _deadlines(self, episode: _Episode, now: int) -> list[int]:
        """The times at which the episode's re-quote test may be decided without an event."""
        found = [episode.requote_until] if now <= episode.requote_until else []
        window = self.params.cancel_window_ns
        for chain in episode.chains:
            found.append(chain.start_ns + window if chain.order_id is not None else chain.gap_until)
        return found

    def _forget_chains(self, episode: _Episode) -> None:
        for chain in episode.chains:
            if chain.order_id is not None:
                chains = self._chain_orders.get(chain.order_id)
                if chains is not None and chain in chains:
                    chains.remove(chain)
                    if not chains:
                        del self._chain_orders[chain.order_id]
        episode.chains.clear()

    def _sides(self, event: Fill, t: int) -> tuple[int, list[Resting]]:
        """What the owner rests, in all of its accounts, at an execution: the near side's
        shares near the touch, and the far side's orders within reach."""
        params = self.params
        oldest = t - params.max_order_age_ns
        reach = event.price * params.max_distance_bps / BPS
        touch = event.price * params.near_touch_bps / BPS
        near = 0
        far: list[Resting] = []
        for order in self._book.resting_of_owner(event.owner, event.symbol):
            if order.buy == event.buy:
                # Only near-side orders that could realistically trade weigh against the
                # far side (within `near_touch_bps` of the execution): one parked away
                # from the touch would only dilute it.
                if order.price is not None and abs(order.price - event.price) <= touch:
                    near += order.remaining
            elif (
                order.placed_ns >= oldest
                and order.price is not None
                and abs(order.price - event.price) <= reach
            ):
                far.append(order)
        return near, far

    def fill(self, event: Fill, t: int) -> None:
        params = self.params
        self._active(event.owner, event.symbol, t).add(t, _TRADED)
        if self._chain_orders and event.order_id in self._chain_orders:
            self._chain_closed(event.order_id, t, executed=True)
        # Judged per beneficial owner: a spoof on one of the owner's accounts and the
        # execution on another (a customer's cash and margin accounts, or two linked
        # customers) is one episode.
        key = (event.owner, event.symbol, event.buy)
        episode = self._episodes.get(key)
        if episode is None or t - episode.first_ns > params.cancel_window_ns:
            episode = None
        near, far = self._sides(event, t)
        if episode is None:
            if not far:
                return
            episode = self._episodes[key] = _Episode(event, t)
        episode.executed += event.quantity
        episode.execution_ids.append(event.execution_id)
        if event.account_id not in episode.accounts:
            episode.accounts.append(event.account_id)
        if event.account_id not in episode.executing_accounts:
            episode.executing_accounts.append(event.account_id)
        if event.order_id not in episode.genuine_orders:
            episode.genuine_orders.append(event.order_id)
        for order in far:
            if order.order_id not in episode.candidates:
                episode.candidates[order.order_id] = _Candidate(order)
        episode.near_quantity = max(episode.near_quantity, episode.executed + near)
        if episode.book is None and self._plausible(episode):
            # The book as it stood at the execution, with the far-side orders marked; taken
            # only when the episode could become an alert (a market maker's fills never are).
            episode.book = self._book.snapshot(event.symbol, suspects=episode.candidates)

    def _plausible(self, episode: _Episode) -> bool:
        params = self.params
        far = episode.far_quantity
        return (
            far >= params.min_quantity
            and far >= params.size_ratio * episode.executed
            and far >= params.imbalance_ratio * episode.near_quantity
        )

    def closed(self, event: OrderClosed, t: int) -> Finding | None:
        if event.final and self._chain_orders and event.order_id in self._chain_orders:
            self._chain_closed(event.order_id, t, executed=False)
        if not event.voluntary:
            return None
        activity = self._active(event.owner, event.symbol, t)
        activity.add(t, _CANCELLED)
        params = self.params
        episode = self._episodes.get((event.owner, event.symbol, not event.buy))
        if (
            episode is None
            or episode.replaced
            or t - episode.first_ns > params.cancel_window_ns
            or event.order_id not in episode.candidates
        ):
            return None
        before = episode.cancelled.get(event.order_id, (0, t))[0]
        if event.account_id not in episode.accounts:
            episode.accounts.append(event.account_id)
        episode.cancelled[event.order_id] = (before + event.quantity, t)
        cancelled = sum(quantity for quantity, _ in episode.cancelled.values())
        far = episode.far_quantity
        if (
            cancelled < params.min_quantity
            or cancelled < params.size_ratio * episode.executed
            or far < params.imbalance_ratio * episode.near_quantity
        ):
            return None
        if episode.alert_type is None:
            layering = self._far_levels(episode) >= params.layering_min_levels
            episode.alert_type = AlertType.LAYERING if layering else AlertType.SPOOFING
        finding = self._finding(episode, event, t, cancelled, activity)
        if not params.requote_window_ns:
            return finding
        episode.requote_until = t + params.requote_window_ns
        episode.largest_cancel = max(episode.largest_cancel, event.quantity)
        self._held.append((finding, episode))
        self._dirty = True
        return None

    def _far_levels(self, episode: _Episode) -> int:
        """Distinct prices of the far side still in play: cancelled, or resting still."""
        prices = {
            candidate.price
            for order_id, candidate in episode.candidates.items()
            if order_id in episode.cancelled or self._book.get(order_id) is not None
        }
        return len(prices)

    def _finding(
        self,
        episode: _Episode,
        event: OrderClosed,
        t: int,
        cancelled: int,
        activity: _Activity,
    ) -> Finding:
        params = self.params
        orders = [episode.candidates[order_id] for order_id in episode.cancelled]
        levels = len({order.price for order in orders})
        alert_type = episode.alert_type or AlertType.SPOOFING
        layering = alert_type is AlertType.LAYERING
        far = episode.far_quantity
        placed, cancels, traded = activity.counts
        to_cancel = sorted(
            (t_cancel - episode.candidates[o].placed_ns)
            for o, (_, t_cancel) in episode.cancelled.items()
        )
        after_execution = max(t_cancel for _, t_cancel in episode.cancelled.values()) - (
            episode.first_ns
        )
        side = "bid" if not episode.genuine_buy else "offer"
        kind = "layered" if layering else "spoofed"
        summary = (
            f"{kind} {cancelled} shares of {episode.symbol} on the {side} "
            f"({levels} price level{'s' if levels != 1 else ''}), executed {episode.executed} "
            f"on the other side at {episode.execution_price}, cancelled within "
            f"{after_execution / 1e9:.1f}s of the execution"
        )
        return Finding(
            alert_type=alert_type,
            symbol=episode.symbol,
            owner=episode.owner,
            accounts=tuple(episode.accounts),
            score=score(
                ratio(cancelled, params.min_quantity),
                ratio(cancelled, params.size_ratio * episode.executed),
                ratio(far, params.imbalance_ratio * episode.near_quantity),
            ),
            trigger_seq=event.seq,
            trigger_ns=t,
            window_start_ns=min(order.placed_ns for order in orders),
            window_end_ns=t,
            summary=summary,
            order_ids=tuple(episode.genuine_orders + [order.order_id for order in orders]),
            execution_ids=tuple(episode.execution_ids),
            evidence={
                "genuine_side": "buy" if episode.genuine_buy else "sell",
                "accounts": list(episode.accounts),
                "executing_accounts": list(episode.executing_accounts),
                "cancelling_accounts": sorted({order.account_id for order in orders}),
                "executed_quantity": episode.executed,
                "execution_price": str(episode.execution_price),
                "genuine_order_ids": list(episode.genuine_orders),
                "cancelled_order_ids": [order.order_id for order in orders],
                "cancelled_quantity": cancelled,
                "cancelled_levels": levels,
                "cancelled_prices": sorted({str(order.price) for order in orders}),
                "far_side_resting_quantity": far,
                "near_side_quantity": episode.near_quantity,
                "seconds_to_cancel_max": round(to_cancel[-1] / 1e9, 3),
                "seconds_to_cancel_min": round(to_cancel[0] / 1e9, 3),
                "seconds_after_execution": round(after_execution / 1e9, 3),
                "orders_placed": placed,
                "orders_cancelled": cancels,
                "fills": traded,
                "order_to_trade_ratio": str(
                    ratio(placed, max(traded, 1)).quantize(Decimal("0.01"))
                ),
                "cancel_ratio": str(ratio(cancels, max(placed, 1)).quantize(Decimal("0.01"))),
                "activity_window_seconds": self._reach // 1_000_000_000,
                "book_at_execution": episode.book,
            },
        )

    def sweep(self, now: int) -> None:
        """Drop finished episodes and idle accounts (memory only: what is dropped could no
        longer change any finding)."""
        expired = now - self.params.cancel_window_ns
        for episode in [k for k, e in self._episodes.items() if e.first_ns < expired]:
            del self._episodes[episode]
        idle = now - self._reach
        for key in [k for k, a in self._activity.items() if not a.events or a.events[-1][0] < idle]:
            del self._activity[key]


def _hundredths(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01")))
