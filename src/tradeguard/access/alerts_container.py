"""Builds the access alert services from settings, once per process (app, CLI command, test)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tradeguard.access.alerts import AlertDesk
from tradeguard.access.alerts_detector import AnomalyDetector, StaffDirectory
from tradeguard.access.anomalies import Thresholds, WorkingHours
from tradeguard.config import WEEKDAYS, Settings, working_minutes
from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.db.engine import unit_of_work
from tradeguard.identity.container import IdentityServices
from tradeguard.ledger.personal.keys import SubjectKeys

DAY_NS = 86_400 * NS_PER_SECOND


def working_hours_from(settings: Settings) -> WorkingHours:
    minutes = working_minutes(settings.access_working_hours)
    if minutes is None:  # the settings validator already refused it
        raise ValueError("TRADEGUARD_ACCESS_WORKING_HOURS is malformed")
    return WorkingHours(
        zone=ZoneInfo(settings.access_working_timezone),
        start_minute=minutes[0],
        end_minute=minutes[1],
        weekdays=frozenset(WEEKDAYS.index(day) for day in settings.access_working_days),
    )


def thresholds_from(settings: Settings) -> Thresholds:
    return Thresholds(
        max_customers=settings.access_alert_max_customers,
        customers_window_ns=settings.access_alert_customers_window_seconds * NS_PER_SECOND,
        max_denials=settings.access_alert_max_denials,
        denials_window_ns=settings.access_alert_denials_window_seconds * NS_PER_SECOND,
        new_network_lookback_ns=settings.access_alert_new_network_days * DAY_NS,
        hours=working_hours_from(settings),
    )


@dataclass(frozen=True, slots=True)
class AccessAlertServices:
    sessions: async_sessionmaker[AsyncSession]
    desk: AlertDesk
    detector: AnomalyDetector

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[AsyncSession]:
        async with unit_of_work(self.sessions) as session:
            yield session


def _subject_keys(identity: IdentityServices) -> SubjectKeys:
    keys = identity.deps.ledger.subject_keys
    if keys is None:  # identity's container always gives its ledger the subject keys
        raise ValueError("the identity ledger has no subject keys to read addresses with")
    return keys


def build_access_alerts(settings: Settings, *, identity: IdentityServices) -> AccessAlertServices:
    deps = identity.deps
    desk = AlertDesk(
        clock=deps.clock,
        ids=deps.ids,
        ledger=deps.ledger,
        notifier=deps.notifier,
        accounts=identity.accounts,
    )
    detector = AnomalyDetector(
        sessions=identity.sessions,
        clock=deps.clock,
        desk=desk,
        directory=StaffDirectory(identity.accounts, deps.clock),
        limits=thresholds_from(settings),
        keyring=deps.keyring,
        subject_keys=_subject_keys(identity),
    )
    return AccessAlertServices(sessions=identity.sessions, desk=desk, detector=detector)
