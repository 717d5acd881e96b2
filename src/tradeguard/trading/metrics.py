"""Prometheus metrics of the order path (every pre-trade reject is counted by its code)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge


class TradingMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._orders = Counter(
            "tradeguard_orders",
            "Orders submitted, by outcome of the pre-trade checks.",
            ("outcome",),
            registry=self.registry,
        )
        self._rejects = Counter(
            "tradeguard_pretrade_rejects",
            "Orders refused by the pre-trade pipeline, by stable reject code.",
            ("code",),
            registry=self.registry,
        )
        self._executions = Counter(
            "tradeguard_executions", "Executions recorded.", registry=self.registry
        )
        self._slow = Counter(
            "tradeguard_stream_slow_clients_dropped",
            "WebSocket clients disconnected because they did not keep up with their updates.",
            registry=self.registry,
        )
        self._streams = Gauge(
            "tradeguard_stream_connections",
            "WebSocket streams open now.",
            registry=self.registry,
        )
        self._stale = Counter(
            "tradeguard_venue_book_rebuilds",
            "Venue books rebuilt from the database because they disagreed with it.",
            registry=self.registry,
        )

    def order_accepted(self) -> None:
        self._orders.labels("accepted").inc()

    def order_rejected(self, code: str) -> None:
        self._orders.labels("rejected").inc()
        self._rejects.labels(code).inc()

    def executions(self, count: int) -> None:
        self._executions.inc(count)

    def slow_client_dropped(self) -> None:
        self._slow.inc()

    def count_streams(self, count: Callable[[], int]) -> None:
        """Read the open-stream gauge from `count` at every scrape."""
        self._streams.set_function(count)

    def book_rebuilt(self) -> None:
        self._stale.inc()
