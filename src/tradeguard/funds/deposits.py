"""Deposits: ACH pulls credited at once for trading and collected later (or returned), wires
credited when they arrive. Every movement is a balanced journal transaction in the trading
core's money journal, in the same database transaction as the deposit's row and its ledger
event.

An ACH deposit is usable for trading as soon as it is credited, but it is not withdrawable
until it is collected: a pull can come back (R01 insufficient funds, R10 unauthorized...).
A return reverses the credit even when the money was already spent on shares: the account's
cash then goes negative, a debit balance the customer owes. The account is set to REDUCING
(closing trades only) and told by email; `withdrawable_cash` is then zero, so nothing can
leave (docs/funds.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tradeguard.core.errors import NotFound, ServiceUnavailable, TooManyRequests
from tradeguard.db.engine import unit_of_work
from tradeguard.funds import repository
from tradeguard.funds.bank_accounts import BankAccountService
from tradeguard.funds.common import FundsConflict, FundsDeps, FundsEvent, FundsInputError
from tradeguard.funds.domain import (
    ACH_RETURN_CODES,
    BLOCKING_RETURNS,
    DAY_NS,
    UNAUTHORIZED_RETURNS,
    ZERO,
    BankAccountStatus,
    DepositStatus,
    FundsError,
    Rail,
    parse_amount,
)
from tradeguard.funds.models import Deposit
from tradeguard.funds.processor import CardCharge, Declined, Transfer, TransferState
from tradeguard.ledger.domain import Party
from tradeguard.risk.domain import AccountStatus, TradingState
from tradeguard.trading import journal
from tradeguard.trading.models import TradingAccount
from tradeguard.vault.cards import CardCaller, StoredCard
from tradeguard.vault.domain import AuthorizationCard

MIN_DEPOSIT = Decimal(1)
MAX_DECLINES_PER_DAY = 5
FUNDS_SYSTEM = Party("system", "funds")
# Accounts that may receive money: a closing-only account may still pay off what it owes.
RECEIVING = frozenset({AccountStatus.ACTIVE.value, AccountStatus.CLOSING_ONLY.value})


@dataclass(frozen=True, slots=True)
class _CardRequest:
    user_id: str
    account_id: str
    card_id: str
    amount: Decimal
    key: str


class DepositService:
    def __init__(self, deps: FundsDeps, banks: BankAccountService) -> None:
        self.deps = deps
        self.banks = banks

    async def deposit(
        self,
        session: AsyncSession,
        *,
        user_id: str,
        account_id: str,
        bank_account_id: str,
        rail: str,
        amount: Decimal,
        idempotency_key: str,
        actor: Party,
        request_id: str | None = None,
    ) -> tuple[Deposit, bool]:
        """Start a deposit; (row, created). A retried key returns the first one."""
        deps, now = self.deps, self.deps.clock.now_ns()
        try:
            how = Rail(rail)
            amount = parse_amount(amount, minimum=MIN_DEPOSIT, maximum=deps.max_deposit)
        except FundsError as exc:
            raise FundsInputError(str(exc)) from None
        except ValueError:
            raise FundsInputError("rail must be ach or wire") from None
        if how is Rail.CARD:
            raise FundsInputError("rail must be ach or wire (card deposits are not offered)")
        await repository.lock_customer(session, user_id, now)
        earlier = await repository.deposit_by_key(session, user_id, idempotency_key)
        if earlier is not None:
            same = (
                earlier.account_id == account_id
                and earlier.bank_account_id == bank_account_id
                and earlier.rail == how.value
                and earlier.amount == amount
            )
            if not same:
                raise FundsConflict("this idempotency key was used for another deposit")
            return earlier, False
        account = await deps.trading.owned(session, account_id, user_id)
        if account.status not in RECEIVING:
            raise FundsConflict(f"the account is {account.status} and cannot receive money")
        bank = await self.banks.owned(session, user_id, bank_account_id)
        if bank.status != BankAccountStatus.VERIFIED.value:
            raise FundsConflict("confirm the bank account's micro-deposits before using it")
        if how is Rail.ACH:
            uncollected = await repository.pending_deposits_of_user(session, user_id)
            if uncollected + amount > deps.max_uncollected:
                raise FundsConflict(
                    f"deposits waiting to be collected would exceed {deps.max_uncollected}; "
                    "wait for earlier ones to settle, or send a wire"
                )
        deposit_id = deps.ids.new_str()
        submitted = await deps.processor.debit(
            Transfer(
                transfer_id=deposit_id,
                rail=how,
                amount=amount,
                routing_number=bank.routing_number,
                account_number=self.banks.account_number(bank),
            ),
            now_ns=now,
        )
        row = Deposit(
            id=deposit_id,
            user_id=user_id,
            account_id=account.id,
            bank_account_id=bank.id,
            rail=how.value,
            amount=amount,
            currency=account.currency,
            status=DepositStatus.PENDING.value,
            idempotency_key=idempotency_key,
            processor_ref=submitted.reference,
            created_ns=now,
            settles_ns=submitted.settles_ns,
        )
        repository.add(session, row)
        if how is Rail.ACH:
            # Credited now, for trading; withdrawable once collected (withdrawable_cash).
            locked = await deps.trading.get(session, account.id, lock=True)
            await deps.trading.post_money_movement(
                session,
                locked,
                journal.deposit(
                    locked.id, locked.currency, amount, rail=how.value, deposit_id=deposit_id
                ),
            )
        await deps.audit(
            session,
            FundsEvent.DEPOSIT_CREDITED if how is Rail.ACH else FundsEvent.DEPOSIT_REQUESTED,
            actor=actor,
            subject=Party("account", account.id),
            data={
                "deposit_id": deposit_id,
                "rail": how.value,
                "amount": str(amount),
                "currency": account.currency,
                "bank_account_id": bank.id,
                "credited": how is Rail.ACH,
            },
            request_id=request_id,
        )
        return row, True

    async def card_deposit(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        user_id: str,
        account_id: str,
        card_id: str,
        cvv: str,
        amount: Decimal,
        idempotency_key: str,
        actor: Party,
        request_id: str | None = None,
    ) -> tuple[Deposit, bool]:
        """Charge one of the customer's stored cards through the vault (PCI-2): the vault
        hands the payment service the card and the security code for this one call; the
        code is never stored. Approved: credited at once, collected at settlement, like ACH.
        Declined: recorded as failed with the processor's code; nothing is credited.

        Three steps, each its own transaction, because the vault records each use of a card
        in a transaction of its own: the checks; the vault's authorization; then, under the
        customer's lock with the checks (the day's declines too) repeated, the charge and
        its record: parallel charges of one customer happen one after the other. (On SQLite a
        transaction holds the database's one write lock from its start, so the vault's
        record could not commit inside ours.)"""
        deps = self.deps
        try:
            amount = parse_amount(amount, minimum=MIN_DEPOSIT, maximum=deps.max_deposit)
        except FundsError as exc:
            raise FundsInputError(str(exc)) from None
        cards = deps.cards
        if cards is None:
            raise ServiceUnavailable("card deposits need the card vault, which is not set up")
        async with unit_of_work(sessions) as session:
            await self._check_declines(session, user_id)
        request = _CardRequest(user_id, account_id, card_id, amount, idempotency_key)
        async with unit_of_work(sessions) as session:
            earlier = await self._card_checks(session, request)
        if isinstance(earlier, Deposit):
            return earlier, False
        prepared = await cards.authorization_card(
            caller=CardCaller.payment_service(), token=earlier.token, cvv=cvv, request_id=request_id
        )
        async with unit_of_work(sessions) as session:
            await repository.lock_customer(session, user_id, deps.clock.now_ns())
            again = await self._card_checks(session, request)
            if isinstance(again, Deposit):
                return again, False
            # Counted again under the lock, right before the charge: parallel guesses wait
            # here one after the other, so no more than MAX_DECLINES_PER_DAY ever happen.
            await self._check_declines(session, user_id)
            row = await self._charge(
                session,
                request=request,
                card=again,
                prepared=prepared,
                actor=actor,
                request_id=request_id,
            )
        return row, True

    async def _check_declines(self, session: AsyncSession, user_id: str) -> None:
        """Card testing: guessing a stolen card's security code one decline at a time."""
        declined = await repository.declined_cards_since(
            session, user_id, self.deps.clock.now_ns() - DAY_NS
        )
        if declined >= MAX_DECLINES_PER_DAY:
            raise TooManyRequests(
                f"{declined} card charges were declined in the last 24 hours; use a bank "
                "transfer, or try again tomorrow",
                retry_after_seconds=DAY_NS / 1e9,
            )

    async def _card_checks(
        self, session: AsyncSession, request: _CardRequest
    ) -> Deposit | StoredCard:
        """The earlier deposit of this idempotency key, or the card once every check passed."""
        deps, now = self.deps, self.deps.clock.now_ns()
        earlier = await repository.deposit_by_key(session, request.user_id, request.key)
        if earlier is not None:
            same = (
                earlier.account_id == request.account_id
                and earlier.card_id == request.card_id
                and earlier.amount == request.amount
            )
            if not same:
                raise FundsConflict("this idempotency key was used for another deposit")
            return earlier
        account = await deps.trading.owned(session, request.account_id, request.user_id)
        if account.status not in RECEIVING:
            raise FundsConflict(f"the account is {account.status} and cannot receive money")
        if deps.cards is None:
            raise ServiceUnavailable("card deposits need the card vault, which is not set up")
        card = next(
            (
                c
                for c in await deps.cards.cards_of(session, user_id=request.user_id)
                if c.id == request.card_id
            ),
            None,
        )
        if card is None:
            raise NotFound("no such card")
        if card.expiry.expired_at(now):
            raise FundsConflict("this card has expired; add the new card first")
        uncollected = await repository.pending_deposits_of_user(session, request.user_id)
        if uncollected + request.amount > deps.max_uncollected:
            raise FundsConflict(
                f"deposits waiting to be collected would exceed {deps.max_uncollected}; "
                "wait for earlier ones to settle, or send a wire"
            )
        return card

    async def _charge(
        self,
        session: AsyncSession,
        *,
        request: _CardRequest,
        card: StoredCard,
        prepared: AuthorizationCard,
        actor: Party,
        request_id: str | None,
    ) -> Deposit:
        deps, now = self.deps, self.deps.clock.now_ns()
        account = await deps.trading.get(session, request.account_id, lock=True)
        deposit_id = deps.ids.new_str()
        result = await deps.processor.charge_card(
            CardCharge(
                transfer_id=deposit_id,
                amount=request.amount,
                pan=prepared.card.pan,
                expiry_month=prepared.card.expiry.month,
                expiry_year=prepared.card.expiry.year,
                cvv=prepared.secret.value,
            ),
            now_ns=now,
        )
        row = Deposit(
            id=deposit_id,
            user_id=request.user_id,
            account_id=account.id,
            card_id=card.id,
            rail=Rail.CARD.value,
            amount=request.amount,
            currency=account.currency,
            idempotency_key=request.key,
            created_ns=now,
        )
        data: dict[str, object] = {
            "deposit_id": deposit_id,
            "rail": Rail.CARD.value,
            "amount": str(request.amount),
            "currency": account.currency,
            "card_id": card.id,
            "last4": card.last4,
        }
        if isinstance(result, Declined):
            row.status = DepositStatus.FAILED.value
            row.decline_code = result.code
            row.settles_ns = now
            repository.add(session, row)
            await deps.audit(
                session,
                FundsEvent.DEPOSIT_DECLINED,
                actor=actor,
                subject=Party("account", account.id),
                data=data | {"decline_code": result.code},
                request_id=request_id,
            )
            return row
        row.status = DepositStatus.PENDING.value
        row.processor_ref = result.reference
        row.settles_ns = result.settles_ns
        repository.add(session, row)
        await deps.trading.post_money_movement(
            session,
            account,
            journal.deposit(
                account.id,
                account.currency,
                request.amount,
                rail=Rail.CARD.value,
                deposit_id=deposit_id,
            ),
        )
        await deps.audit(
            session,
            FundsEvent.DEPOSIT_CREDITED,
            actor=actor,
            subject=Party("account", account.id),
            data=data | {"credited": True},
            request_id=request_id,
        )
        return row

    async def settle(self, session: AsyncSession, deposit_id: str) -> str | None:
        """Ask the processor about one pending deposit and book its outcome; the new status,
        or None while it is still pending."""
        deps, now = self.deps, self.deps.clock.now_ns()
        row = await repository.deposit(session, deposit_id, lock=True)
        if row is None or row.status != DepositStatus.PENDING.value or row.processor_ref is None:
            return None
        outcome = await deps.processor.outcome(row.processor_ref, now_ns=now)
        if outcome.state is TransferState.PENDING:
            return None
        account = await deps.trading.get(session, row.account_id, lock=True)
        subject = Party("account", account.id)
        if outcome.state is TransferState.SETTLED:
            if row.rail == Rail.WIRE.value:
                # A wire is credited when it arrives.
                await deps.trading.post_money_movement(
                    session,
                    account,
                    journal.deposit(
                        account.id, row.currency, row.amount, rail=row.rail, deposit_id=row.id
                    ),
                )
            await deps.trading.post_money_movement(
                session,
                None,
                journal.deposit_settled(row.currency, row.amount, rail=row.rail, deposit_id=row.id),
            )
            row.status = DepositStatus.SETTLED.value
            row.settled_ns = now
            await deps.audit(
                session,
                FundsEvent.DEPOSIT_SETTLED,
                actor=FUNDS_SYSTEM,
                subject=subject,
                data={"deposit_id": row.id, "rail": row.rail, "amount": str(row.amount)},
            )
            return row.status
        code = outcome.code or "R00"
        if row.rail != Rail.WIRE.value:  # ACH and card were credited when made
            await deps.trading.post_money_movement(
                session,
                account,
                journal.deposit_returned(
                    account.id,
                    row.currency,
                    row.amount,
                    rail=row.rail,
                    deposit_id=row.id,
                    code=code,
                ),
            )
        return await self._returned(session, row, account, code, after_settlement=False)

    async def watch_settled(self, session: AsyncSession, deposit_id: str) -> str | None:
        """Ask the processor again about a deposit collected within its return window (an
        ACH debit may come back as unauthorized for 60 days after settling, a card charge
        as a chargeback for 120): a late return takes the money back from the firm's bank
        and reverses the credit. The new status, or None when nothing changed."""
        deps, now = self.deps, self.deps.clock.now_ns()
        row = await repository.deposit(session, deposit_id, lock=True)
        if row is None or row.status != DepositStatus.SETTLED.value or row.processor_ref is None:
            return None
        if row.rail == Rail.WIRE.value:
            return None  # a wire that arrived is final
        outcome = await deps.processor.outcome(row.processor_ref, now_ns=now)
        if outcome.state is not TransferState.RETURNED:
            return None
        code = outcome.code or "R00"
        account = await deps.trading.get(session, row.account_id, lock=True)
        await deps.trading.post_money_movement(
            session,
            account,
            journal.deposit_returned_after_settlement(
                account.id, row.currency, row.amount, rail=row.rail, deposit_id=row.id, code=code
            ),
        )
        return await self._returned(session, row, account, code, after_settlement=True)

    async def _returned(
        self,
        session: AsyncSession,
        row: Deposit,
        account: TradingAccount,
        code: str,
        *,
        after_settlement: bool,
    ) -> str:
        """What follows a return once its money is booked back: the bank account blocked or
        the profile's withdrawals frozen by the code, a debit balance restricting the
        account to closing trades, the event, and the customer told."""
        deps, now = self.deps, self.deps.clock.now_ns()
        subject = Party("account", account.id)
        row.status = DepositStatus.RETURNED.value
        row.returned_ns = now
        row.return_code = code
        if code in BLOCKING_RETURNS and row.bank_account_id is not None:
            await self.banks.block(session, row.bank_account_id, code=code, request_id=None)
        if code in UNAUTHORIZED_RETURNS and deps.takeover is not None:
            # The bank's customer says they never allowed this debit: whoever added their
            # bank account here may not be them (ATO-2).
            await deps.takeover.freeze_withdrawals(
                session, user_id=row.user_id, reason=f"ach_return_{code.lower()}"
            )
        balances = await deps.trading.balances(session, account)
        # Settled cash less purchases not yet settled (they are owed already).
        owed = balances.cash_settled + min(balances.cash_unsettled, ZERO)
        debit_balance = owed < 0
        if debit_balance and account.trading_state == TradingState.ACTIVE.value:
            await deps.trading.set_status(
                session,
                account_id=account.id,
                status=None,
                trading_state=TradingState.REDUCING,
                reason=f"deposit returned ({code}) left a debit balance",
                actor=FUNDS_SYSTEM,
            )
        await deps.audit(
            session,
            FundsEvent.DEPOSIT_RETURNED,
            actor=FUNDS_SYSTEM,
            subject=subject,
            data={
                "deposit_id": row.id,
                "rail": row.rail,
                "amount": str(row.amount),
                "return_code": code,
                "reason": ACH_RETURN_CODES.get(code, "returned"),
                "unauthorized": code in UNAUTHORIZED_RETURNS,
                "debit_balance": str(owed) if debit_balance else None,
                "after_settlement": after_settlement,
            },
        )
        user = await deps.users.user(session, row.user_id)
        if user is not None:
            await deps.notifier.enqueue_email(
                session,
                to=user.email,
                template="deposit_returned",
                subject="A deposit to your tradeguard account was returned",
                body=(
                    f"Your bank returned a deposit of {row.amount} {row.currency} "
                    f"({code}: {ACH_RETURN_CODES.get(code, 'returned')}). The credit has been "
                    "reversed."
                    + (
                        " Your account now owes money: only closing trades are allowed until "
                        "the balance is paid."
                        if debit_balance
                        else ""
                    )
                ),
            )
        return row.status

    async def due(self, session: AsyncSession, limit: int = 200) -> Sequence[str]:
        return await repository.deposits_due(session, self.deps.clock.now_ns(), limit)

    async def in_return_window(
        self, session: AsyncSession, *, after_id: str | None, limit: int = 500
    ) -> Sequence[str]:
        """Settled ACH and card deposits still inside their return window, a page at a
        time (ids after `after_id`)."""
        now = self.deps.clock.now_ns()
        return await repository.settled_deposits_since(
            session,
            ach_since_ns=now - self.deps.ach_return_window_ns,
            card_since_ns=now - self.deps.card_dispute_window_ns,
            after_id=after_id,
            limit=limit,
        )

    async def of_user(
        self, session: AsyncSession, user_id: str, limit: int = 100
    ) -> Sequence[Deposit]:
        return await repository.deposits_of(session, user_id, limit)

    async def get(self, session: AsyncSession, user_id: str, deposit_id: str) -> Deposit:
        row = await repository.deposit(session, deposit_id, user_id=user_id)
        if row is None:
            raise NotFound("no such deposit")
        return row
