"""What every funds use case needs: clock, ids, ledger, keyring, the trading core's accounts,
identity's confirmations, the processor, the policy; the funds event types; and the
takeover defence's interface (the fraud package answers it)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.config import Settings
from tradeguard.core.clock import NS_PER_SECOND, Clock, ns_to_iso
from tradeguard.core.errors import Conflict, Forbidden, InvalidInput
from tradeguard.core.ids import IdGenerator
from tradeguard.crypto.keyring import Keyring
from tradeguard.fraud.service import TakeoverDefence
from tradeguard.funds.domain import Refusal, WithdrawalPolicy
from tradeguard.funds.processor import PaymentProcessor
from tradeguard.identity.confirmations import ActionConfirmations
from tradeguard.identity.factors import FactorService
from tradeguard.identity.service import AccountService as IdentityAccounts
from tradeguard.kyc.contracts import Screener
from tradeguard.ledger.domain import LedgerEvent, Party
from tradeguard.ledger.service import Ledger
from tradeguard.notify.service import Notifier
from tradeguard.trading.accounts import AccountService as TradingAccounts
from tradeguard.vault.cards import CustomerCards

HOUR_NS = 3600 * NS_PER_SECOND


class FundsEvent(StrEnum):
    BANK_ACCOUNT_ADDED = "funds:bank_account:added"
    BANK_ACCOUNT_VERIFIED = "funds:bank_account:verified"
    BANK_ACCOUNT_VERIFICATION_FAILED = "funds:bank_account:verification_failed"
    BANK_ACCOUNT_REMOVED = "funds:bank_account:removed"
    # Its bank returned a transfer as closed, unknown or not authorized.
    BANK_ACCOUNT_BLOCKED = "funds:bank_account:blocked"
    # The same bank account confirmed by another user: a beneficial-owner link (MAN-1, FRD-1).
    BANK_ACCOUNT_SHARED = "funds:bank_account:shared"
    # Its holder's name was screened against the sanctions list and must wait for review.
    BANK_ACCOUNT_HELD = "funds:bank_account:held"
    # A wire the customer announced: credited when it arrives.
    DEPOSIT_REQUESTED = "funds:deposit:requested"
    DEPOSIT_CREDITED = "funds:deposit:credited"
    # A card charge the issuer refused: nothing credited.
    DEPOSIT_DECLINED = "funds:deposit:declined"
    DEPOSIT_SETTLED = "funds:deposit:settled"
    DEPOSIT_RETURNED = "funds:deposit:returned"
    WITHDRAWAL_REQUESTED = "funds:withdrawal:requested"
    WITHDRAWAL_REFUSED = "funds:withdrawal:refused"
    WITHDRAWAL_VERIFIED = "funds:withdrawal:verified"
    WITHDRAWAL_REVIEW_OPENED = "funds:withdrawal:review_opened"
    WITHDRAWAL_APPROVED = "funds:withdrawal:approved"
    WITHDRAWAL_SENT = "funds:withdrawal:sent"
    WITHDRAWAL_COMPLETED = "funds:withdrawal:completed"
    WITHDRAWAL_FAILED = "funds:withdrawal:failed"
    WITHDRAWAL_CANCELLED = "funds:withdrawal:cancelled"
    WITHDRAWAL_EXPIRED = "funds:withdrawal:expired"
    # The customer's emailed "this was not me" link (ATO-2).
    WITHDRAWAL_DISOWNED = "funds:withdrawal:disowned"
    # Its row disagreed with its audit trail just before sending (funds/integrity.py): not
    # sent, the reserved cash given back, for staff to investigate.
    WITHDRAWAL_RECORD_MISMATCH = "funds:withdrawal:record_mismatch"


class FundsInputError(InvalidInput):
    """Bad funds input (422): the message says what to change."""


class FundsConflict(Conflict):
    """The request clashes with the current state (409): a repeated key with other values,
    a withdrawal no longer waiting for this step."""


class WithdrawalRefused(Forbidden):
    """A withdrawal rule refused the request (403); `reason` is its stable code."""

    slug = "withdrawal-refused"
    title = "Withdrawal refused"

    def __init__(self, reason: Refusal, detail: str, *, until_ns: int | None = None) -> None:
        extra: dict[str, Any] = {"reason": reason.value}
        if until_ns is not None:
            extra["until"] = ns_to_iso(until_ns)
        super().__init__(detail, **extra)
        self.reason = reason


def policy_from(settings: Settings) -> WithdrawalPolicy:
    return WithdrawalPolicy(
        daily_limit=settings.funds_daily_withdrawal_limit,
        weekly_limit=settings.funds_weekly_withdrawal_limit,
        review_threshold=settings.funds_review_threshold,
        minimum=settings.funds_min_withdrawal,
        new_account_cooling_ns=settings.funds_new_account_cooling_hours * HOUR_NS,
        security_change_cooling_ns=settings.funds_security_change_cooling_hours * HOUR_NS,
        new_destination_hold_ns=settings.funds_new_destination_hold_hours * HOUR_NS,
        timezone=settings.funds_timezone,
    )


@dataclass(slots=True)
class FundsDeps:
    clock: Clock
    ids: IdGenerator
    ledger: Ledger
    keyring: Keyring
    trading: TradingAccounts
    users: IdentityAccounts
    factors: FactorService
    confirmations: ActionConfirmations
    notifier: Notifier
    processor: PaymentProcessor
    policy: WithdrawalPolicy
    max_deposit: Decimal
    max_uncollected: Decimal
    verify_ns: int
    micro_attempts: int
    # Card-funded cash stays in the account this long after the charge settles (chargebacks).
    card_hold_ns: int
    # How long after settling a deposit may still come back: an ACH debit the customer's bank
    # returns as unauthorized, a card charge as a chargeback.
    ach_return_window_ns: int
    card_dispute_window_ns: int
    # The public origin for links in emails (the withdrawal's "this was not me" link).
    origin: str
    takeover: TakeoverDefence | None = None
    # The customer's stored cards (the vault's platform service), for card deposits.
    cards: CustomerCards | None = None
    # Sanctions screening of payees (KYC-2; the kyc package answers it): a bank account's
    # holder is screened when added and on every new list version.
    screener: Screener | None = None

    async def audit(
        self,
        session: AsyncSession,
        type_: str,
        *,
        actor: Party,
        subject: Party | None = None,
        data: dict[str, object] | None = None,
        request_id: str | None = None,
    ) -> None:
        await self.ledger.append(
            session,
            LedgerEvent(
                type=type_, actor=actor, subject=subject, data=data or {}, request_id=request_id
            ),
        )
