"""Prometheus metrics for the HTTP edge, in a registry owned by one app instance.

Labels use the route template ("/orders/{order_id}"), never the raw path: raw paths would
put identifiers into the metrics and let any client grow the label set without bound.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram

UNMATCHED_ROUTE: Final = "<unmatched>"

# Standard methods keep their name; anything else a client invents is folded into OTHER so
# it cannot create new label values.
_KNOWN_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)

_LATENCY_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class HttpMetrics:
    """Request count and latency by method, route template and status."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "tradeguard_http_requests",
            "HTTP requests served, by method, route template and status.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self._latency = Histogram(
            "tradeguard_http_request_duration_seconds",
            "Time from request start to response end, by method, route template and status.",
            ("method", "route", "status"),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

    def observe(self, *, method: str, route: str, status: int, seconds: float) -> None:
        label_method = method if method in _KNOWN_METHODS else "OTHER"
        label_status = str(status)
        self._requests.labels(label_method, route, label_status).inc()
        self._latency.labels(label_method, route, label_status).observe(seconds)
