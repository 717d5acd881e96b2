"""Market data: GBM street quotes, NBBO across sources, LULD reference price."""

from __future__ import annotations

import math
import random
import statistics
from decimal import Decimal, localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.core.errors import InvalidInput
from tradeguard.core.orders import BookSide, TimeInForce
from tradeguard.venue.marketdata import (
    LULD_WINDOW_NS,
    TRADING_SECONDS_PER_YEAR,
    GbmQuoteModel,
    Nbbo,
    Quote,
    ReferencePriceTracker,
)
from tradeguard.venue.matching import IncomingOrder, OrderBook

CENT = Decimal("0.01")
MINUTE_NS = 60 * NS_PER_SECOND


def model(seed: int = 1, **overrides: object) -> GbmQuoteModel:
    params: dict[str, object] = {
        "initial_price": Decimal("100.00"),
        "volatility": Decimal("0.30"),
        "tick": CENT,
        "rng": random.Random(seed),
    }
    params.update(overrides)
    return GbmQuoteModel(**params)  # type: ignore[arg-type]


def path(m: GbmQuoteModel, steps: int, dt: Decimal | int = 60) -> list[Quote]:
    return [m.step(dt) for _ in range(steps)]


class TestGbmQuoteModel:
    def test_the_same_seed_gives_the_same_path(self) -> None:
        assert path(model(seed=7), 200) == path(model(seed=7), 200)
        assert path(model(seed=7), 200) != path(model(seed=8), 200)

    def test_the_path_does_not_depend_on_the_callers_decimal_context(self) -> None:
        expected = path(model(), 100)
        with localcontext() as ctx:
            ctx.prec = 6
            assert path(model(), 100) == expected

    def test_quotes_are_on_tick_with_the_configured_spread_and_size(self) -> None:
        m = model(spread_ticks=3, quote_size=300, tick=Decimal("0.05"))
        for quote in path(m, 500):
            assert quote.bid % Decimal("0.05") == 0
            assert quote.ask - quote.bid == Decimal("0.15")
            assert (quote.bid_size, quote.ask_size) == (300, 300)

    @pytest.mark.parametrize("spread_ticks", [1, 2, 3])
    def test_the_quote_is_centred_on_the_mid_within_half_a_tick(self, spread_ticks: int) -> None:
        m = model(spread_ticks=spread_ticks)
        for _ in range(500):
            quote = m.step(60)
            assert abs((quote.bid + quote.ask) / 2 - m.mid) <= CENT / 2

    def test_prices_stay_positive_even_for_a_penny_stock_in_a_storm(self) -> None:
        m = model(initial_price=Decimal("0.03"), volatility=Decimal("4.0"), spread_ticks=2)
        quotes = path(m, 300, dt=TRADING_SECONDS_PER_YEAR // 12)
        assert all(q.bid >= CENT and q.ask > q.bid for q in quotes)
        assert m.mid > 0
        # The mid did fall below one tick: the floor was exercised, not just never reached.
        assert min(q.bid for q in quotes) == CENT

    def test_without_volatility_the_mid_grows_at_exactly_the_drift(self) -> None:
        m = model(volatility=Decimal(0), drift=Decimal("0.10"))

        m.step(TRADING_SECONDS_PER_YEAR)

        assert m.mid.quantize(Decimal("1E-20")) == (Decimal(100) * Decimal("0.10").exp()).quantize(
            Decimal("1E-20")
        )

    def test_a_zero_step_leaves_the_mid_unchanged(self) -> None:
        m = model()
        before = m.quote()

        assert m.step(0) == before

    def test_log_returns_have_the_ito_corrected_mean_and_the_gbm_variance(self) -> None:
        """ln(S_t+dt / S_t) ~ N((mu - sigma^2/2) dt, sigma^2 dt): the exact solution's law."""
        sigma, mu, steps, dt = 1.0, 0.05, 2_000, 0.25
        m = model(seed=3, volatility=Decimal(sigma), drift=Decimal(mu))
        returns = []
        for _ in range(steps):
            before = m.mid
            m.step(TRADING_SECONDS_PER_YEAR // 4)  # a quarter of a trading year
            returns.append(float((m.mid / before).ln()))

        mean, variance = statistics.fmean(returns), statistics.variance(returns)
        # Five standard errors: the fixed seed makes this deterministic, the margin keeps it
        # meaningful. Without the Ito term the mean would be 11 errors away; with dt in
        # place of sqrt(dt) the variance would be 0.0625, 20 errors away.
        assert abs(mean - (mu - sigma**2 / 2) * dt) < 5 * math.sqrt(sigma**2 * dt / steps)
        assert abs(variance - sigma**2 * dt) < 5 * math.sqrt(2 * (sigma**2 * dt) ** 2 / (steps - 1))

    @pytest.mark.parametrize(
        ("overrides", "message"),
        [
            ({"initial_price": Decimal(0)}, "initial price must be positive"),
            ({"initial_price": 100.0}, "initial price must be a finite Decimal"),
            ({"volatility": Decimal("-0.1")}, "volatility must not be negative"),
            ({"volatility": Decimal("NaN")}, "volatility must be a finite Decimal"),
            ({"tick": Decimal(0)}, "tick size must be positive"),
            ({"drift": 0.05}, "drift must be a finite Decimal"),
            ({"spread_ticks": 0}, "spread in ticks"),
            ({"quote_size": True}, "quote size"),
        ],
    )
    def test_refuses_bad_parameters(self, overrides: dict[str, object], message: str) -> None:
        with pytest.raises(InvalidInput, match=message):
            model(**overrides)

    @pytest.mark.parametrize("dt", [-1, Decimal("-0.5"), 1.5, True, Decimal("Infinity")])
    def test_refuses_a_bad_time_step_and_keeps_its_state(self, dt: object) -> None:
        m = model()
        before = m.mid

        with pytest.raises(InvalidInput, match="time step"):
            m.step(dt)  # type: ignore[arg-type]

        assert m.mid == before


class TestNbbo:
    def test_takes_the_highest_bid_and_lowest_offer_across_sources(self) -> None:
        street = Quote(Decimal("99.98"), Decimal("100.02"), 500, 400)
        internal = Nbbo(Decimal("99.99"), 100, Decimal("100.05"), 200)

        assert Nbbo.across([street, internal]) == (Decimal("99.99"), 100, Decimal("100.02"), 400)

    def test_adds_up_the_size_shown_at_the_best_price(self) -> None:
        street = Quote(Decimal("99.99"), Decimal("100.01"), 500, 400)
        internal = Nbbo(Decimal("99.99"), 100, Decimal("100.01"), 50)

        assert Nbbo.across([street, internal]) == (Decimal("99.99"), 600, Decimal("100.01"), 450)

    def test_a_one_sided_source_contributes_only_its_side(self) -> None:
        street = Quote(Decimal("99.98"), Decimal("100.02"), 500, 400)
        bids_only = Nbbo(Decimal("100.00"), 10, None, 0)

        assert Nbbo.across([bids_only, street]) == (Decimal("100.00"), 10, Decimal("100.02"), 400)

    def test_no_quotes_give_an_empty_nbbo(self) -> None:
        assert Nbbo.across([]) == Nbbo(None, 0, None, 0)
        assert not Nbbo.across([]).locked_or_crossed

    def test_independent_sources_can_lock_or_cross(self) -> None:
        street = Quote(Decimal("99.98"), Decimal("100.00"), 500, 400)
        internal = Nbbo(Decimal("100.00"), 100, None, 0)

        assert Nbbo.across([street, internal]).locked_or_crossed
        assert not Nbbo.across([street]).locked_or_crossed

    def test_reads_the_top_of_an_internal_book_in_decimal_prices(self) -> None:
        book = OrderBook("TEST")
        assert Nbbo.of_book(book, CENT) == Nbbo(None, 0, None, 0)
        for order_id, side, quantity, price in [
            ("b1", BookSide.BID, 300, 9_999),
            ("b2", BookSide.BID, 200, 9_999),
            ("a1", BookSide.ASK, 100, 10_003),
        ]:
            book.submit(IncomingOrder(order_id, "o", side, quantity, price, TimeInForce.DAY))

        assert Nbbo.of_book(book, CENT) == (Decimal("99.99"), 500, Decimal("100.03"), 100)


class TestReferencePriceTracker:
    def test_has_no_reference_before_the_first_trade(self) -> None:
        assert ReferencePriceTracker().reference_price(0) is None

    def test_the_first_trade_is_the_reference(self) -> None:
        tracker = ReferencePriceTracker()
        tracker.observe(Decimal("50.10"), 0)

        assert tracker.reference_price(0) == Decimal("50.10")

    def test_is_the_arithmetic_mean_of_the_trades_in_the_preceding_five_minutes(self) -> None:
        tracker = ReferencePriceTracker()
        for minute, price in [(0, "10.00"), (1, "11.00"), (2, "12.50"), (4, "10.50")]:
            tracker.observe(Decimal(price), minute * MINUTE_NS)

        assert tracker.reference_price(4 * MINUTE_NS) == Decimal("11.00")
        # At 5 min the 0-min trade is exactly five minutes old and has left the window.
        assert tracker.reference_price(5 * MINUTE_NS) == Decimal("11.33333333333333333333333333")
        assert tracker.reference_price(6 * MINUTE_NS + 1) == Decimal("11.50")
        assert tracker.reference_price(7 * MINUTE_NS + 1) == Decimal("10.50")

    def test_a_trade_one_nanosecond_inside_the_window_still_counts(self) -> None:
        tracker = ReferencePriceTracker()
        tracker.observe(Decimal("10"), 0)
        tracker.observe(Decimal("20"), 1)

        assert tracker.reference_price(LULD_WINDOW_NS) == Decimal("20")
        tracker = ReferencePriceTracker()
        tracker.observe(Decimal("10"), 0)
        tracker.observe(Decimal("20"), 1)
        assert tracker.reference_price(LULD_WINDOW_NS - 1) == Decimal("15")

    def test_keeps_the_last_price_in_effect_when_no_trade_is_recent(self) -> None:
        tracker = ReferencePriceTracker()
        tracker.observe(Decimal("10.00"), 0)
        tracker.observe(Decimal("12.00"), MINUTE_NS)

        assert tracker.reference_price(60 * MINUTE_NS) == Decimal("12.00")

    def test_trades_sharing_the_last_timestamp_stay_in_effect_as_their_mean(self) -> None:
        tracker = ReferencePriceTracker()
        tracker.observe(Decimal("10.00"), 0)
        tracker.observe(Decimal("12.00"), MINUTE_NS)
        tracker.observe(Decimal("13.00"), MINUTE_NS)

        assert tracker.reference_price(60 * MINUTE_NS) == Decimal("12.50")

    def test_refuses_time_going_backward_and_keeps_its_state(self) -> None:
        tracker = ReferencePriceTracker()
        tracker.observe(Decimal("10.00"), MINUTE_NS)
        tracker.reference_price(3 * MINUTE_NS)

        with pytest.raises(InvalidInput, match="backward"):
            tracker.observe(Decimal("99.00"), 2 * MINUTE_NS)
        with pytest.raises(InvalidInput, match="backward"):
            tracker.reference_price(2 * MINUTE_NS)

        assert tracker.reference_price(3 * MINUTE_NS) == Decimal("10.00")

    @pytest.mark.parametrize(
        ("price", "at_ns", "message"),
        [
            (Decimal(0), 0, "positive"),
            (10.5, 0, "finite Decimal"),
            (Decimal("NaN"), 0, "finite Decimal"),
            (Decimal(10), 1.0, "integer nanoseconds"),
            (Decimal(10), True, "integer nanoseconds"),
        ],
    )
    def test_refuses_a_bad_trade(self, price: object, at_ns: object, message: str) -> None:
        tracker = ReferencePriceTracker()

        with pytest.raises(InvalidInput, match=message):
            tracker.observe(price, at_ns)  # type: ignore[arg-type]

        assert tracker.reference_price(0) is None

    @settings(max_examples=60, deadline=None, derandomize=True)
    @given(
        st.lists(
            st.tuples(
                st.integers(min_value=0, max_value=3 * MINUTE_NS),  # gap since the last event
                st.integers(min_value=1, max_value=10**9).map(lambda n: Decimal(n).scaleb(-4)),
                st.booleans(),  # also ask for the reference at this moment
            ),
            max_size=80,
        )
    )
    def test_equals_a_plain_recomputation_over_the_trade_history(
        self, events: list[tuple[int, Decimal, bool]]
    ) -> None:
        tracker = ReferencePriceTracker()
        history: list[tuple[int, Decimal]] = []
        now = 0
        for gap, price, query in events:
            now += gap
            tracker.observe(price, now)
            history.append((now, price))
            if query:
                recent = [p for t, p in history if t > now - LULD_WINDOW_NS]
                assert tracker.reference_price(now) == sum(recent) / len(recent)
