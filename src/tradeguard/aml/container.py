"""Builds the AML services once per process (app, CLI command, test)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tradeguard.aml import fincen
from tradeguard.aml.consumer import AmlConsumer
from tradeguard.aml.domain import AmlRules
from tradeguard.aml.service import (
    AmlCases,
    AmlDeps,
    AmlFilings,
    AmlMonitor,
    WithdrawalReader,
)
from tradeguard.config import Settings
from tradeguard.identity.container import IdentityServices
from tradeguard.kyc.contracts import CustomerProfiles, FilingSubjects
from tradeguard.trading.accounts import AccountService as TradingAccounts


def rules_from(settings: Settings) -> AmlRules:
    return AmlRules(
        timezone=settings.aml_timezone,
        ctr_threshold=settings.aml_ctr_threshold,
        ctr_filing_days=settings.aml_ctr_filing_days,
        ctr_rails=frozenset(settings.aml_ctr_rails),
        structuring_floor=settings.aml_structuring_floor,
        structuring_count=settings.aml_structuring_count,
        structuring_window_days=settings.aml_structuring_window_days,
        structuring_accounts=settings.aml_structuring_accounts,
        rapid_days=settings.aml_rapid_days,
        rapid_min_amount=settings.aml_rapid_min_amount,
        rapid_out_share=settings.aml_rapid_out_share,
        rapid_trading_share=settings.aml_rapid_trading_share,
        profile_window_days=settings.aml_profile_window_days,
        profile_multiple=settings.aml_profile_multiple,
        default_monthly_funding=settings.aml_default_monthly_funding,
        dormant_days=settings.aml_dormant_days,
        dormant_min_amount=settings.aml_dormant_min_amount,
        trading_window_days=settings.aml_trading_window_days,
        trading_turnover=settings.aml_trading_turnover,
        trading_min_notional=settings.aml_trading_min_notional,
        trading_round_trips=settings.aml_trading_round_trips,
        high_risk_countries=frozenset(settings.aml_high_risk_countries),
        high_risk_min_amount=settings.aml_high_risk_min_amount,
        sar_days=settings.aml_sar_days,
        sar_no_suspect_days=settings.aml_sar_no_suspect_days,
        sar_reminder_days=tuple(settings.aml_sar_reminder_days),
        four_eyes_score=settings.aml_four_eyes_score,
        retention_years=settings.aml_retention_years,
    )


def filer_from(settings: Settings) -> fincen.Filer:
    return fincen.Filer(
        name=settings.aml_filer_name,
        tin=settings.aml_filer_tin,
        address=fincen.Address(
            settings.aml_filer_street or None,
            settings.aml_filer_city or None,
            settings.aml_filer_state or None,
            settings.aml_filer_zip or None,
            settings.aml_filer_country or None,
        ),
        contact_office=settings.aml_filer_contact_office,
        phone=settings.aml_filer_phone,
        transmitter_control_code=settings.aml_filer_tcc,
    )


@dataclass(slots=True)
class AmlServices:
    deps: AmlDeps
    sessions: async_sessionmaker[AsyncSession]
    monitor: AmlMonitor
    cases: AmlCases
    filings: AmlFilings
    consumer: AmlConsumer


def build_aml(
    settings: Settings,
    *,
    identity: IdentityServices,
    accounts: TradingAccounts,
    withdrawals: WithdrawalReader,
    sessions: async_sessionmaker[AsyncSession],
    profiles: CustomerProfiles | None = None,
    subjects: FilingSubjects | None = None,
) -> AmlServices:
    deps = AmlDeps(
        clock=identity.deps.clock,
        ids=identity.deps.ids,
        ledger=identity.deps.ledger,
        keyring=identity.deps.keyring,
        notifier=identity.deps.notifier,
        users=identity.accounts,
        accounts=accounts,
        rules=rules_from(settings),
        filer=filer_from(settings),
        withdrawals=withdrawals,
        profiles=profiles,
        subjects=subjects,
    )
    monitor = AmlMonitor(deps)
    cases = AmlCases(deps)
    return AmlServices(
        deps=deps,
        sessions=sessions,
        monitor=monitor,
        cases=cases,
        filings=AmlFilings(deps, cases),
        consumer=AmlConsumer(sessions=sessions, clock=deps.clock, monitor=monitor),
    )
