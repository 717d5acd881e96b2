"""Builds the takeover defence from settings, once per process (app, CLI command, test)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tradeguard.config import Settings
from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.core.errors import ConfigurationError
from tradeguard.db.engine import unit_of_work
from tradeguard.fraud.domain import (
    DEFAULT_THRESHOLDS,
    DEFAULT_WEIGHTS,
    HOUR_NS,
    TakeoverPolicy,
    TakeoverResponse,
    TakeoverSignal,
)
from tradeguard.fraud.geo import GeoLocator, OfflineGeoLocator
from tradeguard.fraud.recovery import AccountRecovery, UnwiredApplicants, UnwiredEvidence
from tradeguard.fraud.service import TakeoverDefence
from tradeguard.identity.administration import UserAdministration
from tradeguard.identity.container import IdentityServices
from tradeguard.kyc.contracts import ApplicantDirectory, IdentityEvidenceSource
from tradeguard.trading.container import TradingServices


def policy_from(settings: Settings) -> TakeoverPolicy:
    """The policy table as the settings give it; a wrong name or order stops the start."""
    try:
        weights = dict(DEFAULT_WEIGHTS)
        weights.update({TakeoverSignal(k): v for k, v in settings.takeover_signal_weights.items()})
        thresholds = dict(DEFAULT_THRESHOLDS)
        for name, value in settings.takeover_response_thresholds.items():
            response = TakeoverResponse(name)
            if response is TakeoverResponse.ALLOW:
                raise ValueError("allow is what stays below every threshold; it has none")
            thresholds[response] = value
        return TakeoverPolicy(
            weights=weights,
            thresholds=thresholds,
            max_speed_kmh=settings.takeover_max_speed_kmh,
            min_travel_km=settings.takeover_min_travel_km,
            trading_window_ns=settings.takeover_trading_window_minutes * 60 * NS_PER_SECOND,
            sold_fraction=float(settings.takeover_sold_fraction),
            risky_score=settings.takeover_risky_score,
            security_change_window_ns=settings.takeover_security_change_hours * HOUR_NS,
            withdrawal_lookback_ns=settings.takeover_withdrawal_lookback_hours * HOUR_NS,
            prompt_ttl_ns=settings.takeover_prompt_ttl_hours * HOUR_NS,
        )
    except ValueError as exc:
        raise ConfigurationError(f"takeover policy: {exc}") from exc


@dataclass(frozen=True, slots=True)
class FraudServices:
    sessions: async_sessionmaker[AsyncSession]
    defence: TakeoverDefence
    sweep_interval_seconds: int
    # Account recovery after a takeover (ATO-3).
    recovery: AccountRecovery

    async def warm(self) -> None:
        """Load the offline geolocation database now (off the event loop), not at the first
        sign-in."""
        locator = self.defence.locator
        if isinstance(locator, OfflineGeoLocator):
            await asyncio.to_thread(locator.load)

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[AsyncSession]:
        async with unit_of_work(self.sessions) as session:
            yield session


def build_fraud(
    settings: Settings,
    *,
    identity: IdentityServices,
    trading: TradingServices,
    locator: GeoLocator | None = None,
    applicants: ApplicantDirectory | None = None,
    evidence: IdentityEvidenceSource | None = None,
) -> FraudServices:
    """The takeover defence over identity's services and trading's; `watch_sign_ins` then
    makes identity tell it of every new session. Account recovery re-verifies identity
    through `applicants` (the KYC record) and `evidence` (identity documents), the KYC
    contracts' implementations; without them its identity checks refuse (503)."""
    deps = identity.deps
    defence = TakeoverDefence(
        clock=deps.clock,
        ids=deps.ids,
        ledger=deps.ledger,
        policy=policy_from(settings),
        locator=locator or OfflineGeoLocator(settings.takeover_geoip_data_file),
        auth=identity.auth,
        identity_accounts=identity.accounts,
        notifier=deps.notifier,
        trading_accounts=trading.accounts,
        orders=trading.orders,
        origin=deps.policy.origin,
    )
    recovery = AccountRecovery(
        clock=deps.clock,
        ids=deps.ids,
        ledger=deps.ledger,
        administration=UserAdministration(deps, auth=identity.auth),
        identity_accounts=identity.accounts,
        trading_accounts=trading.accounts,
        reversals=trading.reversals,
        applicants=applicants or UnwiredApplicants(),
        evidence=evidence or UnwiredEvidence(),
        record_attempts=settings.takeover_recovery_record_attempts,
        record_window_ns=settings.takeover_recovery_record_window_days * 86_400 * 1_000_000_000,
    )
    return FraudServices(
        sessions=identity.sessions,
        defence=defence,
        sweep_interval_seconds=settings.takeover_sweep_interval_seconds,
        recovery=recovery,
    )


def watch_sign_ins(identity: IdentityServices, fraud: FraudServices) -> None:
    """Identity's sign-ins go through the takeover defence from now on (ATO-1)."""
    identity.auth.sign_in_observer = fraud.defence.signed_in
