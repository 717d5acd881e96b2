"""Withdrawals (ACCT-2, WDL-1..4, ATO-1): only to the owner's confirmed bank account, after a
fresh second factor and both an emailed and a texted code, within the daily and weekly
limits, outside the cooling periods; large or flagged ones wait for two staff members.

The cash moves to the account's withdrawing book in the same transaction that creates the
request, under the customer's funds lock: it can be neither spent nor requested twice, and
two parallel requests are checked against the limits one after the other. A refused,
expired, cancelled or failed withdrawal gives the cash back with a balanced movement.

A rule that refuses a request returns a `Refused` result rather than raising, so that the
refusal's ledger event commits (the request's edge raises after the commit).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.core.clock import ns_to_iso
from tradeguard.core.errors import NotFound
from tradeguard.funds import integrity, repository
from tradeguard.funds.bank_accounts import BankAccountService
from tradeguard.funds.common import (
    FundsConflict,
    FundsDeps,
    FundsEvent,
    FundsInputError,
    WithdrawalRefused,
)
from tradeguard.funds.domain import (
    BLOCKING_RETURNS,
    WEEK_NS,
    ZERO,
    BankAccountStatus,
    FundsError,
    LimitUse,
    Rail,
    Refusal,
    WithdrawalStatus,
    cooling_refusal,
    day_window,
    limit_refusal,
    limit_use,
    needs_review,
    parse_amount,
    withdrawable_cash,
)
from tradeguard.funds.models import BankAccount, Withdrawal
from tradeguard.funds.processor import Transfer, TransferState
from tradeguard.identity.common import RequestInfo, hash_secret_token, new_secret_token
from tradeguard.identity.confirmations import ConfirmationSent
from tradeguard.identity.models import User
from tradeguard.identity.sessions import SessionState
from tradeguard.ledger import service as ledger_service
from tradeguard.ledger.domain import Party
from tradeguard.risk.buying_power import available_funds
from tradeguard.risk.domain import AccountStatus
from tradeguard.trading import journal
from tradeguard.trading.models import TradingAccount

logger = logging.getLogger("tradeguard.funds.withdrawals")

WITHDRAWAL_PURPOSE = "withdrawal"
FUNDS_SYSTEM = Party("system", "funds")
PAYING = frozenset({AccountStatus.ACTIVE.value, AccountStatus.CLOSING_ONLY.value})
REFUSE_PATH = "/refuse-withdrawal"
COOLING_DETAIL = {
    Refusal.NEW_ACCOUNT: "no withdrawals in an account's first day",
    Refusal.SECURITY_CHANGE: (
        "no withdrawals for a while after a change to your password, email, phone, "
        "sign-in methods or bank accounts"
    ),
    Refusal.NEW_DESTINATION: "a newly confirmed bank account receives nothing yet",
}


@dataclass(frozen=True, slots=True)
class Requested:
    withdrawal: Withdrawal
    created: bool
    codes: ConfirmationSent | None


@dataclass(frozen=True, slots=True)
class _Flagged:
    """A destination that passed every rule, with the takeover signals that send the
    withdrawal to review."""

    bank: BankAccount
    reason: str


@dataclass(frozen=True, slots=True)
class Refused:
    error: WithdrawalRefused


@dataclass(frozen=True, slots=True)
class LimitsView:
    daily_limit: Decimal
    weekly_limit: Decimal
    day_used: Decimal
    week_used: Decimal
    day_left: Decimal
    week_left: Decimal
    day_resets_ns: int
    timezone: str


class WithdrawalService:
    def __init__(self, deps: FundsDeps, banks: BankAccountService) -> None:
        self.deps = deps
        self.banks = banks

    # The customer's request ---------------------------------------------------------------

    async def request(
        self,
        session: AsyncSession,
        *,
        user_id: str,
        state: SessionState,
        account_id: str,
        bank_account_id: str,
        amount: Decimal,
        idempotency_key: str,
        request: RequestInfo,
    ) -> Requested | Refused:
        deps, policy, now = self.deps, self.deps.policy, self.deps.clock.now_ns()
        try:
            amount = parse_amount(amount, minimum=policy.minimum, maximum=policy.daily_limit)
        except FundsError as exc:
            raise FundsInputError(str(exc)) from None
        user = await deps.users.user(session, user_id)
        if user is None:
            raise NotFound("no such user")
        await deps.factors.require_fresh_factor(session, user=user, state=state)
        await repository.lock_customer(session, user_id, now)
        earlier = await repository.withdrawal_by_key(session, user_id, idempotency_key)
        if earlier is not None:
            same = (
                earlier.account_id == account_id
                and earlier.bank_account_id == bank_account_id
                and earlier.amount == amount
            )
            if not same:
                raise FundsConflict("this idempotency key was used for another withdrawal")
            return Requested(earlier, False, None)
        account = await deps.trading.owned(session, account_id, user_id, lock=True)
        checked = await self._check(
            session,
            user=user,
            account=account,
            bank_account_id=bank_account_id,
            amount=amount,
            request=request,
        )
        if isinstance(checked, WithdrawalRefused):
            data: dict[str, object] = {
                "reason": checked.reason.value,
                "amount": str(amount),
                "bank_account_id": bank_account_id,
            }
            if "until" in checked.extensions:
                data["until"] = checked.extensions["until"]
            await deps.audit(
                session,
                FundsEvent.WITHDRAWAL_REFUSED,
                actor=Party("user", user_id),
                subject=Party("account", account.id),
                data=data,
                request_id=request.request_id,
            )
            return Refused(checked)
        flag = checked.reason if isinstance(checked, _Flagged) else None
        bank = checked.bank if isinstance(checked, _Flagged) else checked
        return await self._create(
            session,
            account=account,
            bank=bank,
            flag=flag,
            amount=amount,
            idempotency_key=idempotency_key,
            state=state,
            request=request,
            user=user,
        )

    async def _destination(
        self, session: AsyncSession, user_id: str, bank_account_id: str
    ) -> BankAccount | WithdrawalRefused:
        """The customer's confirmed bank account whose holder stands clear of the sanctions
        list (KYC-2), or the refusal."""
        bank = await repository.bank_account(session, bank_account_id, user_id=user_id)
        if bank is None or bank.status != BankAccountStatus.VERIFIED.value:
            return WithdrawalRefused(
                Refusal.DESTINATION_NOT_VERIFIED,
                "withdraw only to one of your bank accounts whose micro-deposits you confirmed",
            )
        if not await self.banks.payee_clear(session, bank):
            return WithdrawalRefused(
                Refusal.PAYEE_SCREENING,
                "this bank account's holder is being checked against the sanctions list: "
                "nothing can be sent to it until that review ends; contact support",
            )
        return bank

    async def _check(
        self,
        session: AsyncSession,
        *,
        user: User,
        account: TradingAccount,
        bank_account_id: str,
        amount: Decimal,
        request: RequestInfo,
    ) -> BankAccount | _Flagged | WithdrawalRefused:
        """Every rule, in order; the destination when all pass (flagged for review when a
        takeover signal weighs on it), else the first refusal."""
        deps, policy, takeover = self.deps, self.deps.policy, self.deps.takeover
        now = deps.clock.now_ns()
        if takeover is not None and await takeover.withdrawals_frozen(session, user.id):
            return WithdrawalRefused(
                Refusal.FROZEN, "withdrawals are frozen on this profile; contact support"
            )
        if account.status not in PAYING:
            return WithdrawalRefused(
                Refusal.ACCOUNT_NOT_ACTIVE, f"the account is {account.status}: nothing may leave it"
            )
        bank = await self._destination(session, user.id, bank_account_id)
        if isinstance(bank, WithdrawalRefused):
            return bank
        if not await deps.confirmations.can_confirm(session, user):
            return WithdrawalRefused(
                Refusal.NO_SMS_FACTOR,
                "a withdrawal is confirmed by a code by email and one by text message: verify "
                "your email and add a phone (SMS sign-in method) first",
            )
        flag: str | None = None
        if takeover is not None:
            # Before the cooling periods and limits, so that an attempt they would refuse
            # still counts (ATO-1: a security change followed by a withdrawal request; a
            # risky sign-in; unusual trading). A review-worthy risk freezes withdrawals now
            # (committed with the refusal) and opens a review; a lesser one sends this
            # withdrawal to review.
            decision = await takeover.withdrawal_requested(
                session, user_id=user.id, amount=amount, request=request
            )
            if not decision.allowed:
                return WithdrawalRefused(
                    Refusal.FROZEN,
                    "withdrawals are frozen on this profile while our security team reviews "
                    "recent activity; contact support",
                )
            if decision.signals:
                flag = f"takeover signals: {', '.join(decision.signals)}"
        verified_ns = bank.verified_ns or now
        changes = [await self.banks.last_change_ns(session, user.id), user.password_changed_ns]
        if takeover is not None:
            changes.append(await takeover.last_security_change_ns(session, user.id))
        cooling = cooling_refusal(
            policy,
            now_ns=now,
            opened_ns=max(user.created_ns, account.created_ns),
            # The destination's own confirmation is its hold below, not a security change.
            last_security_change_ns=max(
                (v for v in changes if v is not None and v != verified_ns), default=None
            ),
            destination_verified_ns=verified_ns,
        )
        if cooling is not None:
            return WithdrawalRefused(
                cooling.refusal,
                f"{COOLING_DETAIL[cooling.refusal]}; try again after {ns_to_iso(cooling.until_ns)}",
                until_ns=cooling.until_ns,
            )
        use = await self._use(session, user.id, now)
        over = limit_refusal(policy, use, amount)
        if over is not None:
            window = "today" if over is Refusal.DAILY_LIMIT else "in the last 7 days"
            left = use.day_left if over is Refusal.DAILY_LIMIT else use.week_left
            return WithdrawalRefused(
                over, f"this would exceed your withdrawal limit {window}; at most {left} more"
            )
        refused = await self._money_refusal(session, user=user, account=account, amount=amount)
        if refused is not None:
            return refused
        return _Flagged(bank, flag) if flag else bank

    async def _money_refusal(
        self, session: AsyncSession, *, user: User, account: TradingAccount, amount: Decimal
    ) -> WithdrawalRefused | None:
        """No debit balance in any of the customer's accounts, and enough cash that may
        leave this one."""
        deps = self.deps
        for other in await deps.trading.list_for(session, user.id):
            owed = await deps.trading.balances(session, other)
            if owed.cash_settled + min(owed.cash_unsettled, ZERO) < 0:
                return WithdrawalRefused(
                    Refusal.DEBIT_BALANCE,
                    "an account of yours owes money (a deposit came back): pay it before "
                    "withdrawing from any account",
                )
        view = await deps.trading.view(session, account)
        balances = view.balances
        available = withdrawable_cash(
            settled=balances.cash_settled,
            unsettled=balances.cash_unsettled,
            held=balances.cash_held,
            uncollected=await repository.uncollected(
                session,
                account.id,
                card_settled_since_ns=deps.clock.now_ns() - deps.card_hold_ns,
            ),
        )
        # A margin account keeps its initial margin (Reg T 50%) on the positions it holds,
        # shorts included: only the equity above it may leave.
        available = max(ZERO, min(available, available_funds(view.state, view.limits)))
        if amount > available:
            return WithdrawalRefused(
                Refusal.INSUFFICIENT_FUNDS,
                f"at most {available} may be withdrawn now (deposits not yet collected, "
                "unsettled sales and open orders do not count)",
            )
        return None

    async def _use(self, session: AsyncSession, user_id: str, now: int) -> LimitUse:
        policy = self.deps.policy
        day_start, _ = day_window(now, policy.zone)
        counted = await repository.counted_withdrawals(
            session, user_id, since_ns=min(day_start, now - WEEK_NS + 1)
        )
        return limit_use(policy, counted, now)

    async def limits(self, session: AsyncSession, user_id: str) -> LimitsView:
        policy = self.deps.policy
        use = await self._use(session, user_id, self.deps.clock.now_ns())
        return LimitsView(
            daily_limit=policy.daily_limit,
            weekly_limit=policy.weekly_limit,
            day_used=use.day_used,
            week_used=use.week_used,
            day_left=use.day_left,
            week_left=use.week_left,
            day_resets_ns=use.day_resets_ns,
            timezone=policy.timezone,
        )

    async def _create(
        self,
        session: AsyncSession,
        *,
        account: TradingAccount,
        bank: BankAccount,
        amount: Decimal,
        idempotency_key: str,
        state: SessionState,
        request: RequestInfo,
        user: User,
        flag: str | None,
    ) -> Requested:
        deps, now = self.deps, self.deps.clock.now_ns()
        withdrawal_id = deps.ids.new_str()
        token, token_hash = new_secret_token()
        row = Withdrawal(
            id=withdrawal_id,
            user_id=account.user_id,
            account_id=account.id,
            bank_account_id=bank.id,
            rail=Rail.ACH.value,
            amount=amount,
            currency=account.currency,
            status=WithdrawalStatus.AWAITING_VERIFICATION.value,
            idempotency_key=idempotency_key,
            refuse_token_hash=token_hash,
            verify_deadline_ns=now + deps.verify_ns,
            created_ns=now,
            updated_ns=now,
            review_reason=flag[:120] if flag else None,
        )
        repository.add(session, row)
        await deps.trading.post_money_movement(
            session,
            account,
            journal.withdrawal(account.id, account.currency, amount, withdrawal_id=withdrawal_id),
        )
        await deps.audit(
            session,
            FundsEvent.WITHDRAWAL_REQUESTED,
            actor=Party("user", account.user_id),
            subject=Party("account", account.id),
            data={
                "withdrawal_id": withdrawal_id,
                "amount": str(amount),
                "currency": account.currency,
                "bank_account_id": bank.id,
                "flagged": row.review_reason is not None,
            },
            request_id=request.request_id,
        )
        codes = await deps.confirmations.send(
            session,
            user=user,
            state=state,
            purpose=WITHDRAWAL_PURPOSE,
            reference=withdrawal_id,
            what="a withdrawal",
            request=request,
        )
        await deps.notifier.enqueue_email(
            session,
            to=user.email,
            template="withdrawal_requested",
            subject="A withdrawal from your tradeguard account was requested",
            body=(
                f"A withdrawal of {amount} {account.currency} to your bank account ending "
                f"{bank.last4} was requested. If this was not you, refuse it now (no sign-in "
                f"needed): {deps.origin}{REFUSE_PATH}?token={token}\n"
                "Then change your password."
            ),
        )
        return Requested(row, True, codes)

    async def confirm(
        self,
        session: AsyncSession,
        *,
        user_id: str,
        state: SessionState,
        withdrawal_id: str,
        email_code: str,
        sms_code: str,
        request: RequestInfo,
    ) -> Withdrawal | None:
        """Both codes right: the withdrawal goes to review or to the bank. None: wrong codes
        (the failure is recorded and must commit)."""
        deps, now = self.deps, self.deps.clock.now_ns()
        user = await deps.users.user(session, user_id)
        if user is None:
            raise NotFound("no such withdrawal")
        await repository.lock_customer(session, user_id, now)
        row = await repository.withdrawal(session, withdrawal_id, user_id=user_id, lock=True)
        if row is None:
            raise NotFound("no such withdrawal")
        if row.status != WithdrawalStatus.AWAITING_VERIFICATION.value:
            raise FundsConflict(f"this withdrawal is {row.status}, not waiting for its codes")
        if row.verify_deadline_ns <= now:
            await self._release(
                session, row, WithdrawalStatus.EXPIRED, FundsEvent.WITHDRAWAL_EXPIRED
            )
            return row
        ok = await deps.confirmations.confirm(
            session,
            user=user,
            state=state,
            purpose=WITHDRAWAL_PURPOSE,
            reference=row.id,
            email_code=email_code,
            sms_code=sms_code,
            request=request,
        )
        if not ok:
            return None
        row.verified_ns = now
        row.updated_ns = now
        await deps.audit(
            session,
            FundsEvent.WITHDRAWAL_VERIFIED,
            actor=Party("user", user_id),
            subject=Party("account", row.account_id),
            data={"withdrawal_id": row.id},
            request_id=request.request_id,
        )
        # WDL-3 by the day's total, not each request alone: three of 9,999.99 are reviewed.
        today = await self._use(session, user_id, now)
        if needs_review(deps.policy, today.day_used, flagged=row.review_reason is not None):
            if row.review_reason is None:
                row.review_reason = f"withdrawals of at least {deps.policy.review_threshold} today"
            row.status = WithdrawalStatus.IN_REVIEW.value
            await deps.audit(
                session,
                FundsEvent.WITHDRAWAL_REVIEW_OPENED,
                actor=FUNDS_SYSTEM,
                subject=Party("account", row.account_id),
                data={"withdrawal_id": row.id, "reason": row.review_reason},
                request_id=request.request_id,
            )
            return row
        await self._send(session, row, request_id=request.request_id)
        return row

    async def resend_codes(
        self,
        session: AsyncSession,
        *,
        user_id: str,
        state: SessionState,
        withdrawal_id: str,
        request: RequestInfo,
    ) -> ConfirmationSent:
        """A new pair of codes (each lasts 5 minutes; the withdrawal waits longer). The text
        message counts against the user's and the number's SMS quotas."""
        deps, now = self.deps, self.deps.clock.now_ns()
        row = await repository.withdrawal(session, withdrawal_id, user_id=user_id, lock=True)
        user = await deps.users.user(session, user_id)
        if row is None or user is None:
            raise NotFound("no such withdrawal")
        if (
            row.status != WithdrawalStatus.AWAITING_VERIFICATION.value
            or row.verify_deadline_ns <= now
        ):
            raise FundsConflict(f"this withdrawal is {row.status}, not waiting for its codes")
        return await deps.confirmations.send(
            session,
            user=user,
            state=state,
            purpose=WITHDRAWAL_PURPOSE,
            reference=row.id,
            what="a withdrawal",
            request=request,
        )

    async def cancel(
        self, session: AsyncSession, *, user_id: str, withdrawal_id: str, request_id: str | None
    ) -> Withdrawal:
        await repository.lock_customer(session, user_id, self.deps.clock.now_ns())
        row = await repository.withdrawal(session, withdrawal_id, user_id=user_id, lock=True)
        if row is None:
            raise NotFound("no such withdrawal")
        if row.status not in (
            WithdrawalStatus.AWAITING_VERIFICATION.value,
            WithdrawalStatus.IN_REVIEW.value,
        ):
            raise FundsConflict(f"this withdrawal is {row.status} and can no longer be cancelled")
        await self._release(
            session,
            row,
            WithdrawalStatus.CANCELLED,
            FundsEvent.WITHDRAWAL_CANCELLED,
            actor=Party("user", user_id),
            request_id=request_id,
        )
        return row

    async def disown(
        self, session: AsyncSession, *, token: str, request: RequestInfo
    ) -> Withdrawal:
        """The emailed "this was not me" link: refuses the withdrawal without a sign-in.
        Single use; the takeover defence hears of it (it may freeze the profile)."""
        row = await repository.withdrawal_by_refuse_token(session, hash_secret_token(token))
        if row is None:
            raise NotFound("this link is not valid (it may have been used already)")
        row.refuse_token_hash = None
        if row.status in (
            WithdrawalStatus.AWAITING_VERIFICATION.value,
            WithdrawalStatus.IN_REVIEW.value,
        ):
            await self._release(
                session,
                row,
                WithdrawalStatus.REFUSED,
                FundsEvent.WITHDRAWAL_DISOWNED,
                actor=Party("user", row.user_id),
                request_id=request.request_id,
                why="refused by its owner's link",
            )
        else:
            await self.deps.audit(
                session,
                FundsEvent.WITHDRAWAL_DISOWNED,
                actor=Party("user", row.user_id),
                subject=Party("account", row.account_id),
                data={"withdrawal_id": row.id, "status": row.status, "too_late": True},
                request_id=request.request_id,
            )
        if self.deps.takeover is not None:
            await self.deps.takeover.withdrawal_disowned(
                session, user_id=row.user_id, withdrawal_id=row.id, request=request
            )
        return row

    # Staff review (WDL-3, four-eyes) --------------------------------------------------------

    async def approve(
        self, session: AsyncSession, *, staff_id: str, withdrawal_id: str, request_id: str | None
    ) -> Withdrawal:
        row = await repository.withdrawal(session, withdrawal_id, lock=True)
        if row is None:
            raise NotFound("no such withdrawal")
        if row.status != WithdrawalStatus.IN_REVIEW.value:
            raise FundsConflict(f"this withdrawal is {row.status}, not in review")
        if staff_id == row.user_id:
            raise FundsConflict("nobody reviews their own withdrawal")
        if row.first_approver == staff_id:
            raise FundsConflict("a second, different staff member must approve it (four-eyes)")
        stage = "first" if row.first_approver is None else "second"
        await self.deps.audit(
            session,
            FundsEvent.WITHDRAWAL_APPROVED,
            actor=Party("user", staff_id),
            subject=Party("account", row.account_id),
            data={"withdrawal_id": row.id, "approval": stage},
            request_id=request_id,
        )
        row.updated_ns = self.deps.clock.now_ns()
        if row.first_approver is None:
            row.first_approver = staff_id
            return row
        row.decided_by = staff_id
        await self._send(session, row, request_id=request_id)
        return row

    async def refuse(
        self,
        session: AsyncSession,
        *,
        staff_id: str,
        withdrawal_id: str,
        reason: str,
        request_id: str | None,
    ) -> Withdrawal:
        reason = " ".join(reason.split())
        if not 3 <= len(reason) <= 200:
            raise FundsInputError("a refusal needs a reason of 3 to 200 characters")
        row = await repository.withdrawal(session, withdrawal_id, lock=True)
        if row is None:
            raise NotFound("no such withdrawal")
        if row.status != WithdrawalStatus.IN_REVIEW.value:
            raise FundsConflict(f"this withdrawal is {row.status}, not in review")
        if staff_id == row.user_id:
            raise FundsConflict("nobody reviews their own withdrawal")
        row.decided_by = staff_id
        await self._release(
            session,
            row,
            WithdrawalStatus.REFUSED,
            FundsEvent.WITHDRAWAL_REFUSED,
            actor=Party("user", staff_id),
            request_id=request_id,
            why=f"refused in review: {reason}",
        )
        user = await self.deps.users.user(session, row.user_id)
        if user is not None:
            await self.deps.notifier.enqueue_email(
                session,
                to=user.email,
                template="withdrawal_refused",
                subject="Your tradeguard withdrawal was refused",
                body=(
                    f"Your withdrawal of {row.amount} {row.currency} was refused after review; "
                    "the cash is back in your account. Contact support for details."
                ),
            )
        return row

    async def in_review(self, session: AsyncSession, limit: int = 100) -> Sequence[Withdrawal]:
        return await repository.withdrawals_in(session, [WithdrawalStatus.IN_REVIEW], limit)

    # Processing ----------------------------------------------------------------------------

    async def _send(
        self, session: AsyncSession, row: Withdrawal, *, request_id: str | None
    ) -> None:
        deps, now = self.deps, self.deps.clock.now_ns()
        account = await deps.trading.get(session, row.account_id, lock=True)
        if account.status not in PAYING:
            # Suspended (or closed) since it was requested: nothing leaves.
            await self._release(
                session,
                row,
                WithdrawalStatus.REFUSED,
                FundsEvent.WITHDRAWAL_REFUSED,
                why=f"the account is {account.status}",
                request_id=request_id,
            )
            return
        if deps.takeover is not None and await deps.takeover.withdrawals_frozen(
            session, row.user_id
        ):
            await self._release(
                session,
                row,
                WithdrawalStatus.REFUSED,
                FundsEvent.WITHDRAWAL_REFUSED,
                why="withdrawals are frozen on this profile",
                request_id=request_id,
            )
            return
        if await self._record_refused(session, row, request_id=request_id):
            return
        bank = await repository.bank_account(session, row.bank_account_id)
        if bank is None or bank.status != BankAccountStatus.VERIFIED.value:
            await self._release(
                session,
                row,
                WithdrawalStatus.FAILED,
                FundsEvent.WITHDRAWAL_FAILED,
                why="destination removed",
                request_id=request_id,
            )
            row.failure_code = "DESTINATION_REMOVED"
            return
        if not await self.banks.payee_clear(session, bank):
            # A re-screen on a new list version raised a hit after the request: nothing
            # goes to a payee under sanctions review (KYC-2).
            await self._release(
                session,
                row,
                WithdrawalStatus.REFUSED,
                FundsEvent.WITHDRAWAL_REFUSED,
                why="the bank account's holder is under sanctions review",
                request_id=request_id,
            )
            return
        submitted = await deps.processor.credit(
            Transfer(
                transfer_id=row.id,
                rail=Rail(row.rail),
                amount=row.amount,
                routing_number=bank.routing_number,
                account_number=self.banks.account_number(bank),
            ),
            now_ns=now,
        )
        row.processor_ref = submitted.reference
        row.settles_ns = submitted.settles_ns
        row.status = WithdrawalStatus.SENT.value
        row.updated_ns = now
        await deps.audit(
            session,
            FundsEvent.WITHDRAWAL_SENT,
            actor=FUNDS_SYSTEM,
            subject=Party("account", row.account_id),
            data={"withdrawal_id": row.id, "settles": ns_to_iso(submitted.settles_ns)},
            request_id=request_id,
        )

    async def _record_refused(
        self, session: AsyncSession, row: Withdrawal, *, request_id: str | None
    ) -> bool:
        """Whether the row disagrees with its audit trail (funds/integrity.py): then nothing
        is sent, the cash the customer really reserved goes back, and the disagreement is
        recorded for staff to investigate."""
        record = integrity.WithdrawalRecord(
            withdrawal_id=row.id,
            user_id=row.user_id,
            account_id=row.account_id,
            bank_account_id=row.bank_account_id,
            amount=row.amount,
        )
        trail = await ledger_service.documents_about(
            session, subject_id=row.account_id, event_types=integrity.WITHDRAWAL_EVENTS
        )
        banks = await ledger_service.documents_about(
            session, subject_id=row.user_id, event_types=integrity.BANK_EVENTS
        )
        problems = integrity.withdrawal_disagreements(record, trail, banks)
        if not problems:
            return False
        logger.error(
            "withdrawal %s not sent: its row disagrees with its audit trail (%s)",
            row.id,
            "; ".join(problems),
        )
        reserved = integrity.requested_amount(trail, row.id)
        if reserved is not None:
            account = await self.deps.trading.get(session, row.account_id, lock=True)
            await self.deps.trading.post_money_movement(
                session,
                account,
                journal.withdrawal_released(
                    account.id,
                    row.currency,
                    reserved,
                    withdrawal_id=row.id,
                    why=WithdrawalStatus.FAILED.value,
                ),
            )
        row.status = WithdrawalStatus.FAILED.value
        row.failure_code = "RECORD_MISMATCH"
        row.updated_ns = self.deps.clock.now_ns()
        await self.deps.audit(
            session,
            FundsEvent.WITHDRAWAL_RECORD_MISMATCH,
            actor=FUNDS_SYSTEM,
            subject=Party("account", row.account_id),
            data={
                "withdrawal_id": row.id,
                "problems": problems,
                "released": str(reserved) if reserved is not None else None,
            },
            request_id=request_id,
        )
        return True

    async def _release(
        self,
        session: AsyncSession,
        row: Withdrawal,
        status: WithdrawalStatus,
        event: FundsEvent,
        *,
        actor: Party = FUNDS_SYSTEM,
        request_id: str | None = None,
        why: str | None = None,
    ) -> None:
        deps = self.deps
        account = await deps.trading.get(session, row.account_id, lock=True)
        await deps.trading.post_money_movement(
            session,
            account,
            journal.withdrawal_released(
                account.id, row.currency, row.amount, withdrawal_id=row.id, why=status.value
            ),
        )
        row.status = status.value
        row.updated_ns = deps.clock.now_ns()
        data: dict[str, object] = {"withdrawal_id": row.id, "amount": str(row.amount)}
        if why:
            data["why"] = why
        await deps.audit(
            session,
            event,
            actor=actor,
            subject=Party("account", row.account_id),
            data=data,
            request_id=request_id,
        )

    async def expire(self, session: AsyncSession, withdrawal_id: str) -> bool:
        row = await repository.withdrawal(session, withdrawal_id, lock=True)
        now = self.deps.clock.now_ns()
        if (
            row is None
            or row.status != WithdrawalStatus.AWAITING_VERIFICATION.value
            or row.verify_deadline_ns > now
        ):
            return False
        await self._release(session, row, WithdrawalStatus.EXPIRED, FundsEvent.WITHDRAWAL_EXPIRED)
        return True

    async def settle(self, session: AsyncSession, withdrawal_id: str) -> str | None:
        deps, now = self.deps, self.deps.clock.now_ns()
        row = await repository.withdrawal(session, withdrawal_id, lock=True)
        if row is None or row.status != WithdrawalStatus.SENT.value or row.processor_ref is None:
            return None
        outcome = await deps.processor.outcome(row.processor_ref, now_ns=now)
        if outcome.state is TransferState.PENDING:
            return None
        if outcome.state is TransferState.RETURNED:
            row.failure_code = outcome.code
            if outcome.code in BLOCKING_RETURNS:
                await self.banks.block(
                    session, row.bank_account_id, code=outcome.code or "", request_id=None
                )
            await self._release(
                session,
                row,
                WithdrawalStatus.FAILED,
                FundsEvent.WITHDRAWAL_FAILED,
                why=f"returned by the bank ({outcome.code})",
            )
            return row.status
        account = await deps.trading.get(session, row.account_id, lock=True)
        await deps.trading.post_money_movement(
            session,
            account,
            journal.withdrawal_paid(
                account.id, row.currency, row.amount, rail=row.rail, withdrawal_id=row.id
            ),
        )
        row.status = WithdrawalStatus.COMPLETED.value
        row.completed_ns = now
        row.updated_ns = now
        row.refuse_token_hash = None
        await deps.audit(
            session,
            FundsEvent.WITHDRAWAL_COMPLETED,
            actor=FUNDS_SYSTEM,
            subject=Party("account", row.account_id),
            data={"withdrawal_id": row.id, "amount": str(row.amount)},
        )
        return row.status

    async def expired_due(self, session: AsyncSession, limit: int = 200) -> Sequence[str]:
        return await repository.unverified_due(session, self.deps.clock.now_ns(), limit)

    async def sent_due(self, session: AsyncSession, limit: int = 200) -> Sequence[str]:
        return await repository.sent_due(session, self.deps.clock.now_ns(), limit)

    async def of_user(
        self, session: AsyncSession, user_id: str, limit: int = 100
    ) -> Sequence[Withdrawal]:
        return await repository.withdrawals_of(session, user_id, limit)

    async def get(self, session: AsyncSession, user_id: str, withdrawal_id: str) -> Withdrawal:
        row = await repository.withdrawal(session, withdrawal_id, user_id=user_id)
        if row is None:
            raise NotFound("no such withdrawal")
        return row

    async def staff_get(self, session: AsyncSession, withdrawal_id: str) -> Withdrawal:
        row = await repository.withdrawal(session, withdrawal_id)
        if row is None:
            raise NotFound("no such withdrawal")
        return row
