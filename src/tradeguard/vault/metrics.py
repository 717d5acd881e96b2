"""Prometheus metrics of `tradeguard vault serve` (PCI-1 network monitoring, PCI-3).

The vault process has a registry of its own, served on a listener of its own (plain HTTP,
loopback by default, never the mutual-TLS card API: vault/serving.py MetricsListener). Every
label takes its values from a fixed set registered at start: the operation, the caller's
vault role, the outcome, the reason a client certificate was refused. No label ever holds a
card number, a token, a party or anything a client sent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from tradeguard.crypto.classes import DataClass
from tradeguard.vault.domain import VaultOperation, VaultRole

# What an operation came to: `allowed` (done), `denied` (the role may not), `not_found` (no
# such token), `invalid` (input refused), `error` (anything else, such as the vault's keys
# not read yet or a value that did not decrypt).
OUTCOMES: Final = ("allowed", "denied", "not_found", "invalid", "error")
# Why a client certificate was refused: `no_certificate` (none sent), `untrusted` (not the
# vault CA's, expired, wrong use), `revoked` (on the CRL: at the handshake, or at the first
# request after the CRL changed), `no_role` (the vault CA's, but naming no vault role).
REFUSAL_REASONS: Final = ("no_certificate", "untrusted", "revoked", "no_role")

_LATENCY_BUCKETS: Final = (
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
)


class VaultMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._operations = Counter(
            "tradeguard_vault_operations",
            "Vault operations (tokenize, detokenize, describe, forget, authorize: a card "
            "prepared for an authorization) by the caller's vault role and outcome.",
            ("operation", "role", "outcome"),
            registry=self.registry,
        )
        self._latency = Histogram(
            "tradeguard_vault_operation_duration_seconds",
            "Time to answer a vault operation, by operation.",
            ("operation",),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._refused = Counter(
            "tradeguard_vault_client_certificates_refused",
            "Connections refused for their client certificate, by reason.",
            ("reason",),
            registry=self.registry,
        )
        self._decryption_failures = Counter(
            "tradeguard_vault_decryption_failures",
            "Stored PANs that did not decrypt (tampered, copied to another row, a key missing).",
            ("data_class",),
            registry=self.registry,
        )
        self._crl_revoked = Gauge(
            "tradeguard_vault_crl_revoked_certificates",
            "Client certificates on the revocation list the vault enforces.",
            registry=self.registry,
        )
        self._crl_next_update = Gauge(
            "tradeguard_vault_crl_next_update_timestamp_seconds",
            "When the revocation list the vault enforces expires (Unix time); sign it again "
            "before (`tradeguard vault certs crl`).",
            registry=self.registry,
        )
        self._crl_reload_failures = Counter(
            "tradeguard_vault_crl_reload_failures",
            "Changed revocation lists the vault refused to load (not signed by its CA, "
            "expired, unreadable); it keeps enforcing the last good one.",
            registry=self.registry,
        )
        self._crl_reload_failures.inc(0)
        for operation in VaultOperation:
            self._latency.labels(operation.value)
            for role in VaultRole:
                for outcome in OUTCOMES:
                    self._operations.labels(operation.value, role.value, outcome)
        for reason in REFUSAL_REASONS:
            self._refused.labels(reason)
        self._decryption_failures.labels(DataClass.CARD_VAULT.value)

    def operation(
        self, operation: VaultOperation, role: VaultRole, outcome: str, seconds: float
    ) -> None:
        label = outcome if outcome in OUTCOMES else "error"
        self._operations.labels(operation.value, role.value, label).inc()
        self._latency.labels(operation.value).observe(seconds)

    def certificate_refused(self, reason: str) -> None:
        if reason in REFUSAL_REASONS:
            self._refused.labels(reason).inc()

    def decryption_failed(self, data_class: DataClass) -> None:
        self._decryption_failures.labels(data_class.value).inc()

    def crl_loaded(self, revoked: int, next_update: datetime | None) -> None:
        self._crl_revoked.set(revoked)
        self._crl_next_update.set(0 if next_update is None else next_update.timestamp())

    def crl_reload_failed(self) -> None:
        self._crl_reload_failures.inc()
