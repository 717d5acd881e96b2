"""Prometheus metrics for the HTTP edge, in a registry owned by one app instance.

Labels use the route template ("/orders/{order_id}"), never the raw path: raw paths would
put identifiers into the metrics and let any client grow the label set without bound.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from tradeguard.access.anomalies import AccessAlertEvent
from tradeguard.access.domain import AccessEvent
from tradeguard.crypto.classes import DataClass
from tradeguard.identity.events import IdentityEvent
from tradeguard.identity.tokens import TokenRefusal
from tradeguard.vault.cards import VaultEvent

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


class ComponentMetrics:
    """Failure state of the components that retry on their own (background workers, the
    request path's database access): implements core.workers.FailureObserver."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._failing = Gauge(
            "tradeguard_component_failing",
            "1 while the component's attempts keep failing, 0 once one succeeds.",
            ("component",),
            registry=registry,
        )
        self._failures = Counter(
            "tradeguard_component_failures",
            "Failed attempts (passes of a worker, requests that found the database down).",
            ("component",),
            registry=registry,
        )
        self._backoff = Gauge(
            "tradeguard_component_backoff_seconds",
            "The delay before the component's next attempt while it is failing.",
            ("component",),
            registry=registry,
        )

    def register(self, component: str) -> None:
        """Show the component as healthy (0) before its first failure."""
        self._failing.labels(component).set(0)
        self._failures.labels(component)
        self._backoff.labels(component).set(0)

    def failure_recorded(self, component: str) -> None:
        self._failures.labels(component).inc()

    def state_changed(self, component: str, *, failing: bool, backoff_seconds: float) -> None:
        self._failing.labels(component).set(1 if failing else 0)
        self._backoff.labels(component).set(backoff_seconds)


class ConnectionMetrics:
    """Connections the server closed before a request could be served, by reason."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._closed = Counter(
            "tradeguard_connections_refused",
            "Connections closed by the server's connection guard: 'header_timeout' (request "
            "head not received in time) or 'client_limit' (too many from one address).",
            ("reason",),
            registry=registry,
        )
        for reason in ("header_timeout", "client_limit"):
            self._closed.labels(reason)

    def refused(self, reason: str) -> None:
        self._closed.labels(reason).inc()


# The ledger events that are security signals (docs/security/monitoring.md): counted by type
# as they are appended, so the alert rules (deploy/prometheus/tradeguard-alerts.yml) see
# sign-in failures, lockouts, refused factors and vault access as they happen. Only these
# types become label values: the label set stays bounded whatever the ledger records.
SECURITY_EVENTS: Final = frozenset(
    {
        IdentityEvent.LOGIN_FAILED,
        IdentityEvent.LOGIN_THROTTLED,
        IdentityEvent.MFA_FAILED,
        IdentityEvent.ACCOUNT_LOCKED,
        IdentityEvent.REFRESH_REUSE_DETECTED,
        IdentityEvent.IP_REFUSED,
        IdentityEvent.FACTOR_CLONE_SUSPECTED,
        IdentityEvent.FACTORS_RESET,
        IdentityEvent.ROLE_CHANGED,
        VaultEvent.TOKEN_DETOKENIZED,
        VaultEvent.TOKEN_DENIED,
        AccessEvent.BREAKGLASS_TAKEN,
        AccessEvent.APPROVAL_DENIED,
        AccessAlertEvent.RAISED,
    }
)


class SecurityMetrics:
    """Security signals: security events by type, refused access tokens by reason, and
    values that failed to decrypt by data class."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._events = Counter(
            "tradeguard_security_events",
            "Security events appended to the audit ledger, by event type.",
            ("event",),
            registry=registry,
        )
        self._tokens_refused = Counter(
            "tradeguard_access_tokens_refused",
            "Access tokens refused, by reason: 'signature' (does not verify under our key), "
            "'unknown_key', 'expired', 'malformed'.",
            ("reason",),
            registry=registry,
        )
        self._decryption_failures = Counter(
            "tradeguard_decryption_failures",
            "Stored values that did not decrypt (tampered, copied to another row, or under a "
            "key this process lacks), by data class.",
            ("data_class",),
            registry=registry,
        )
        # Every series exists from the start at 0, so `increase()` sees the first event and
        # the alert rules' metric names are always exposed.
        for event in SECURITY_EVENTS:
            self._events.labels(str(event))
        for reason in TokenRefusal:
            self._tokens_refused.labels(reason.value)
        for data_class in DataClass:
            self._decryption_failures.labels(data_class.value)

    def ledger_event(self, event_type: str) -> None:
        if event_type in SECURITY_EVENTS:
            self._events.labels(event_type).inc()

    def token_refused(self, refusal: TokenRefusal) -> None:
        self._tokens_refused.labels(refusal.value).inc()

    def decryption_failed(self, data_class: DataClass) -> None:
        self._decryption_failures.labels(data_class.value).inc()
