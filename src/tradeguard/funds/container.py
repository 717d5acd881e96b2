"""Builds the funds services once per process (app, CLI command, test)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tradeguard.config import Settings
from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.crypto.peppers import FUNDS_SANDBOX_PEPPER
from tradeguard.fraud.service import TakeoverDefence
from tradeguard.funds.bank_accounts import BankAccountService
from tradeguard.funds.common import FundsDeps, policy_from
from tradeguard.funds.deposits import DepositService
from tradeguard.funds.processor import SimulatedProcessor
from tradeguard.funds.withdrawals import WithdrawalService
from tradeguard.identity.container import IdentityServices
from tradeguard.trading.accounts import AccountService as TradingAccounts
from tradeguard.vault.cards import CustomerCards


@dataclass(slots=True)
class FundsServices:
    deps: FundsDeps
    sessions: async_sessionmaker[AsyncSession]
    banks: BankAccountService
    deposits: DepositService
    withdrawals: WithdrawalService
    processor: SimulatedProcessor
    # How often the worker asks again about settled deposits in their return window.
    return_check_seconds: int = 3600


def build_funds(
    settings: Settings,
    *,
    identity: IdentityServices,
    accounts: TradingAccounts,
    sessions: async_sessionmaker[AsyncSession],
    takeover: TakeoverDefence | None = None,
    cards: CustomerCards | None = None,
) -> FundsServices:
    processor = SimulatedProcessor(
        secret=lambda: identity.deps.pepper(FUNDS_SANDBOX_PEPPER),
        ach_settle_seconds=settings.funds_ach_settle_seconds,
        wire_settle_seconds=settings.funds_wire_settle_seconds,
        late_return_seconds=settings.funds_sandbox_late_return_seconds,
    )
    deps = FundsDeps(
        clock=identity.deps.clock,
        ids=identity.deps.ids,
        ledger=identity.deps.ledger,
        keyring=identity.deps.keyring,
        trading=accounts,
        users=identity.accounts,
        factors=identity.factors,
        confirmations=identity.confirmations,
        notifier=identity.deps.notifier,
        processor=processor,
        policy=policy_from(settings),
        max_deposit=settings.funds_max_deposit,
        max_uncollected=settings.funds_max_uncollected,
        verify_ns=settings.funds_verify_minutes * 60 * NS_PER_SECOND,
        micro_attempts=settings.funds_micro_deposit_attempts,
        card_hold_ns=settings.funds_card_hold_days * 86_400 * NS_PER_SECOND,
        ach_return_window_ns=settings.funds_ach_return_window_days * 86_400 * NS_PER_SECOND,
        card_dispute_window_ns=settings.funds_card_dispute_window_days * 86_400 * NS_PER_SECOND,
        origin=identity.deps.policy.origin,
        takeover=takeover,
        cards=cards,
    )
    banks = BankAccountService(deps)
    return FundsServices(
        deps=deps,
        sessions=sessions,
        banks=banks,
        deposits=DepositService(deps, banks),
        withdrawals=WithdrawalService(deps, banks),
        processor=processor,
        return_check_seconds=settings.funds_return_check_seconds,
    )
