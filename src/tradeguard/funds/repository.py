"""Every query of the funds domain."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from decimal import Decimal

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.funds.domain import (
    COUNTED_STATUSES,
    BankAccountStatus,
    CountedWithdrawal,
    DepositStatus,
    Rail,
    WithdrawalStatus,
)
from tradeguard.funds.models import BankAccount, Deposit, FundsCustomer, Withdrawal


def add(session: AsyncSession, row: object) -> None:
    session.add(row)


async def lock_customer(session: AsyncSession, user_id: str, now_ns: int) -> None:
    """Take the customer's funds lock for the rest of the transaction: an UPDATE holds the
    row lock on PostgreSQL and the database's write lock on SQLite, so two withdrawals of
    one customer check their limits one after the other, never side by side. The row is
    made on first use; a parallel first use finds it made (no conflict error)."""
    insert = postgres_insert if _is_postgres(session) else sqlite_insert
    await session.execute(
        insert(FundsCustomer)
        .values(user_id=user_id, version=0, created_ns=now_ns)
        .on_conflict_do_nothing(index_elements=["user_id"])
    )
    await session.execute(
        update(FundsCustomer)
        .where(FundsCustomer.user_id == user_id)
        .values(version=FundsCustomer.version + 1)
    )


def _is_postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


# Bank accounts -------------------------------------------------------------------------------


async def bank_account(
    session: AsyncSession, bank_account_id: str, *, user_id: str | None = None, lock: bool = False
) -> BankAccount | None:
    query = select(BankAccount).where(BankAccount.id == bank_account_id)
    if user_id is not None:
        query = query.where(BankAccount.user_id == user_id)
    if lock:
        query = query.with_for_update()
    return (await session.scalars(query)).first()


async def payee_bank_accounts(session: AsyncSession) -> Sequence[BankAccount]:
    """Bank accounts not removed whose holder's name is on file (payees to screen)."""
    result = await session.execute(
        select(BankAccount)
        .where(
            BankAccount.holder_name_enc.is_not(None),
            BankAccount.status != BankAccountStatus.REMOVED.value,
        )
        .order_by(BankAccount.created_ns, BankAccount.id)
    )
    return result.scalars().all()


async def bank_accounts_of(session: AsyncSession, user_id: str) -> Sequence[BankAccount]:
    return (
        await session.scalars(
            select(BankAccount)
            .where(
                BankAccount.user_id == user_id,
                BankAccount.status != BankAccountStatus.REMOVED.value,
            )
            .order_by(BankAccount.created_ns, BankAccount.id)
        )
    ).all()


async def bank_accounts_by_index(
    session: AsyncSession, forms: Collection[bytes]
) -> Sequence[BankAccount]:
    """Bank accounts whose index is any of `forms` (one value under each live version)."""
    return (
        await session.scalars(select(BankAccount).where(BankAccount.account_index.in_(forms)))
    ).all()


async def last_bank_change_ns(session: AsyncSession, user_id: str) -> int | None:
    """When a bank account of the user was last confirmed or removed (ATO-1)."""
    verified = await session.scalar(
        select(func.max(BankAccount.verified_ns)).where(BankAccount.user_id == user_id)
    )
    removed = await session.scalar(
        select(func.max(BankAccount.removed_ns)).where(BankAccount.user_id == user_id)
    )
    found = [value for value in (verified, removed) if value is not None]
    return max(found) if found else None


async def shared_bank_accounts(session: AsyncSession) -> list[tuple[str, str, int, str]]:
    """Pairs of users who confirmed the same bank account: (user_a, user_b, since_ns,
    last4)."""
    a, b = BankAccount.__table__.alias("a"), BankAccount.__table__.alias("b")
    rows = await session.execute(
        select(a.c.user_id, b.c.user_id, a.c.verified_ns, b.c.verified_ns, a.c.last4)
        .select_from(a.join(b, a.c.account_index == b.c.account_index))
        .where(
            a.c.user_id < b.c.user_id,
            a.c.verified_ns.is_not(None),
            b.c.verified_ns.is_not(None),
        )
    )
    return [(row[0], row[1], max(int(row[2]), int(row[3])), row[4]) for row in rows]


# Deposits ------------------------------------------------------------------------------------


async def deposit(
    session: AsyncSession, deposit_id: str, *, user_id: str | None = None, lock: bool = False
) -> Deposit | None:
    query = select(Deposit).where(Deposit.id == deposit_id)
    if user_id is not None:
        query = query.where(Deposit.user_id == user_id)
    if lock:
        query = query.with_for_update()
    return (await session.scalars(query)).first()


async def deposit_by_key(session: AsyncSession, user_id: str, key: str) -> Deposit | None:
    return (
        await session.scalars(
            select(Deposit).where(Deposit.user_id == user_id, Deposit.idempotency_key == key)
        )
    ).first()


async def deposits_of(session: AsyncSession, user_id: str, limit: int) -> Sequence[Deposit]:
    return (
        await session.scalars(
            select(Deposit)
            .where(Deposit.user_id == user_id)
            .order_by(Deposit.created_ns.desc(), Deposit.id)
            .limit(limit)
        )
    ).all()


async def uncollected(
    session: AsyncSession, account_id: str, *, card_settled_since_ns: int
) -> Decimal:
    """Money credited to the account that may not leave yet: deposits not yet collected,
    and card deposits collected after `card_settled_since_ns` (a chargeback can still take
    them back)."""
    amounts = await session.scalars(
        select(Deposit.amount).where(
            Deposit.account_id == account_id,
            (Deposit.status == DepositStatus.PENDING.value)
            | (
                (Deposit.rail == "card")
                & (Deposit.status == DepositStatus.SETTLED.value)
                & (Deposit.settled_ns > card_settled_since_ns)
            ),
        )
    )
    return sum(amounts, Decimal(0))


async def pending_deposits_of_user(session: AsyncSession, user_id: str) -> Decimal:
    amounts = await session.scalars(
        select(Deposit.amount).where(
            Deposit.user_id == user_id, Deposit.status == DepositStatus.PENDING.value
        )
    )
    return sum(amounts, Decimal(0))


async def deposits_due(session: AsyncSession, now_ns: int, limit: int) -> Sequence[str]:
    return (
        await session.scalars(
            select(Deposit.id)
            .where(Deposit.status == DepositStatus.PENDING.value, Deposit.settles_ns <= now_ns)
            .order_by(Deposit.settles_ns, Deposit.id)
            .limit(limit)
        )
    ).all()


async def settled_deposits_since(
    session: AsyncSession,
    *,
    ach_since_ns: int,
    card_since_ns: int,
    after_id: str | None,
    limit: int,
) -> Sequence[str]:
    """Ids of settled ACH deposits settled at or after `ach_since_ns` and card deposits at or
    after `card_since_ns`, in id order after `after_id`."""
    query = select(Deposit.id).where(
        Deposit.status == DepositStatus.SETTLED.value,
        or_(
            and_(Deposit.rail == Rail.ACH.value, Deposit.settled_ns >= ach_since_ns),
            and_(Deposit.rail == Rail.CARD.value, Deposit.settled_ns >= card_since_ns),
        ),
    )
    if after_id is not None:
        query = query.where(Deposit.id > after_id)
    return (await session.scalars(query.order_by(Deposit.id).limit(limit))).all()


# Withdrawals ---------------------------------------------------------------------------------


async def withdrawal(
    session: AsyncSession, withdrawal_id: str, *, user_id: str | None = None, lock: bool = False
) -> Withdrawal | None:
    query = select(Withdrawal).where(Withdrawal.id == withdrawal_id)
    if user_id is not None:
        query = query.where(Withdrawal.user_id == user_id)
    if lock:
        query = query.with_for_update()
    return (await session.scalars(query)).first()


async def withdrawal_by_key(session: AsyncSession, user_id: str, key: str) -> Withdrawal | None:
    return (
        await session.scalars(
            select(Withdrawal).where(
                Withdrawal.user_id == user_id, Withdrawal.idempotency_key == key
            )
        )
    ).first()


async def withdrawal_by_refuse_token(session: AsyncSession, token_hash: bytes) -> Withdrawal | None:
    return (
        await session.scalars(
            select(Withdrawal).where(Withdrawal.refuse_token_hash == token_hash).with_for_update()
        )
    ).first()


async def withdrawals_of(session: AsyncSession, user_id: str, limit: int) -> Sequence[Withdrawal]:
    return (
        await session.scalars(
            select(Withdrawal)
            .where(Withdrawal.user_id == user_id)
            .order_by(Withdrawal.created_ns.desc(), Withdrawal.id)
            .limit(limit)
        )
    ).all()


async def withdrawals_in(
    session: AsyncSession, statuses: Sequence[WithdrawalStatus], limit: int
) -> Sequence[Withdrawal]:
    return (
        await session.scalars(
            select(Withdrawal)
            .where(Withdrawal.status.in_([s.value for s in statuses]))
            .order_by(Withdrawal.updated_ns, Withdrawal.id)
            .limit(limit)
        )
    ).all()


async def counted_withdrawals(
    session: AsyncSession, user_id: str, since_ns: int
) -> list[CountedWithdrawal]:
    rows = await session.execute(
        select(Withdrawal.amount, Withdrawal.created_ns).where(
            Withdrawal.user_id == user_id,
            Withdrawal.created_ns >= since_ns,
            Withdrawal.status.in_([s.value for s in COUNTED_STATUSES]),
        )
    )
    return [CountedWithdrawal(row[0], int(row[1])) for row in rows]


async def unverified_due(session: AsyncSession, now_ns: int, limit: int) -> Sequence[str]:
    return (
        await session.scalars(
            select(Withdrawal.id)
            .where(
                Withdrawal.status == WithdrawalStatus.AWAITING_VERIFICATION.value,
                Withdrawal.verify_deadline_ns <= now_ns,
            )
            .limit(limit)
        )
    ).all()


async def sent_due(session: AsyncSession, now_ns: int, limit: int) -> Sequence[str]:
    return (
        await session.scalars(
            select(Withdrawal.id)
            .where(
                Withdrawal.status == WithdrawalStatus.SENT.value,
                Withdrawal.settles_ns <= now_ns,
            )
            .order_by(Withdrawal.settles_ns, Withdrawal.id)
            .limit(limit)
        )
    ).all()


async def bank_accounts_added_since(session: AsyncSession, user_id: str, since_ns: int) -> int:
    return int(
        await session.scalar(
            select(func.count())
            .select_from(BankAccount)
            .where(BankAccount.user_id == user_id, BankAccount.created_ns >= since_ns)
        )
        or 0
    )


async def declined_cards_since(session: AsyncSession, user_id: str, since_ns: int) -> int:
    return int(
        await session.scalar(
            select(func.count())
            .select_from(Deposit)
            .where(
                Deposit.user_id == user_id,
                Deposit.decline_code.is_not(None),
                Deposit.created_ns >= since_ns,
            )
        )
        or 0
    )
