"""A customer's bank accounts: added with a validated routing number, the account number
encrypted with a blind index, ownership proved by two micro-deposits (the NACHA way of
verifying a new ACH destination), removable; every step audited."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.core.errors import NotFound
from tradeguard.crypto.classes import DataClass
from tradeguard.crypto.columns import blind_index, keyring_field
from tradeguard.funds import repository
from tradeguard.funds.common import FundsConflict, FundsDeps, FundsEvent, FundsInputError
from tradeguard.funds.domain import (
    BankAccountStatus,
    BankAccountType,
    FundsError,
    Rail,
    normalized_account_number,
    valid_routing_number,
)
from tradeguard.funds.models import BankAccount
from tradeguard.funds.processor import Transfer
from tradeguard.ledger.domain import Party

MAX_BANK_ACCOUNTS = 5


@dataclass(frozen=True, slots=True)
class BankAccountView:
    id: str
    nickname: str
    routing_number: str
    account_type: str
    last4: str
    status: str
    created_ns: int
    verified_ns: int | None
    micro_attempts_left: int


def view_of(row: BankAccount) -> BankAccountView:
    return BankAccountView(
        id=row.id,
        nickname=row.nickname,
        routing_number=row.routing_number,
        account_type=row.account_type,
        last4=row.last4,
        status=row.status,
        created_ns=row.created_ns,
        verified_ns=row.verified_ns,
        micro_attempts_left=row.micro_attempts_left,
    )


def _index_input(routing: str, account_number: str) -> str:
    return f"{routing}:{account_number}"


class BankAccountService:
    def __init__(self, deps: FundsDeps) -> None:
        self.deps = deps

    async def add(
        self,
        session: AsyncSession,
        *,
        user_id: str,
        routing_number: str,
        account_number: str,
        account_type: str,
        nickname: str,
        actor: Party,
        request_id: str | None = None,
    ) -> BankAccount:
        deps, now = self.deps, self.deps.clock.now_ns()
        routing = routing_number.strip()
        if not valid_routing_number(routing):
            raise FundsInputError("routing_number is not a valid ABA routing number")
        try:
            number = normalized_account_number(account_number)
            kind = BankAccountType(account_type)
        except FundsError as exc:
            raise FundsInputError(str(exc)) from None
        except ValueError:
            raise FundsInputError("account_type must be checking or savings") from None
        label = " ".join(nickname.split())
        if not 1 <= len(label) <= 60:
            raise FundsInputError("nickname must be 1 to 60 characters")
        await repository.lock_customer(session, user_id, now)
        index = blind_index(
            deps.keyring, DataClass.BANK_DETAILS, _index_input(routing, number), str
        )
        mine = await repository.bank_accounts_of(session, user_id)
        if any(row.account_index == index for row in mine):
            raise FundsConflict("this bank account is already on your profile")
        if len(mine) >= MAX_BANK_ACCOUNTS:
            raise FundsConflict(
                f"at most {MAX_BANK_ACCOUNTS} bank accounts; remove one before adding another"
            )
        row_id = deps.ids.new_str()
        row = BankAccount(
            id=row_id,
            user_id=user_id,
            nickname=label,
            routing_number=routing,
            account_type=kind.value,
            account_number_enc=keyring_field(deps.keyring, number, record_id=row_id),
            account_index=index,
            last4=number[-4:],
            status=BankAccountStatus.PENDING.value,
            micro_attempts_left=deps.micro_attempts,
            created_ns=now,
        )
        transfer = Transfer(
            transfer_id=row_id,
            rail=Rail.ACH,
            amount=Decimal("0.02"),
            routing_number=routing,
            account_number=number,
        )
        repository.add(session, row)
        await deps.processor.send_micro_deposits(bank_account_id=row_id, transfer=transfer)
        await deps.audit(
            session,
            FundsEvent.BANK_ACCOUNT_ADDED,
            actor=actor,
            subject=Party("user", user_id),
            data={
                "bank_account_id": row_id,
                "routing_number": routing,
                "last4": row.last4,
                "account_type": kind.value,
            },
            request_id=request_id,
        )
        return row

    async def verify(
        self,
        session: AsyncSession,
        *,
        user_id: str,
        bank_account_id: str,
        amounts: Sequence[str],
        actor: Party,
        request_id: str | None = None,
    ) -> BankAccount:
        """Check the two micro-deposit amounts; a few wrong answers fail the account."""
        deps, now = self.deps, self.deps.clock.now_ns()
        parsed = _amounts(amounts)
        row = await repository.bank_account(session, bank_account_id, user_id=user_id, lock=True)
        if row is None or row.status == BankAccountStatus.REMOVED.value:
            raise NotFound("no such bank account")
        if row.status != BankAccountStatus.PENDING.value or row.micro_attempts_left <= 0:
            raise FundsConflict(f"this bank account is {row.status}, not waiting to be verified")
        if await deps.processor.check_micro_deposits(bank_account_id=row.id, amounts=parsed):
            row.status = BankAccountStatus.VERIFIED.value
            row.verified_ns = now
            await deps.audit(
                session,
                FundsEvent.BANK_ACCOUNT_VERIFIED,
                actor=actor,
                subject=Party("user", user_id),
                data={"bank_account_id": row.id, "last4": row.last4},
                request_id=request_id,
            )
            await self._note_shared(session, row, request_id)
            return row
        row.micro_attempts_left -= 1
        if row.micro_attempts_left <= 0:
            row.status = BankAccountStatus.FAILED.value
        await deps.audit(
            session,
            FundsEvent.BANK_ACCOUNT_VERIFICATION_FAILED,
            actor=actor,
            subject=Party("user", user_id),
            data={
                "bank_account_id": row.id,
                "attempts_left": row.micro_attempts_left,
                "failed": row.status == BankAccountStatus.FAILED.value,
            },
            request_id=request_id,
        )
        return row

    async def _note_shared(
        self, session: AsyncSession, row: BankAccount, request_id: str | None
    ) -> None:
        """A bank account confirmed by two users links them (one beneficial owner, or a
        mule): recorded for surveillance and fraud, never shown to either customer."""
        others = sorted(
            {
                other.user_id
                for other in await repository.bank_accounts_by_index(session, row.account_index)
                if other.user_id != row.user_id and other.verified_ns is not None
            }
        )
        if others:
            await self.deps.audit(
                session,
                FundsEvent.BANK_ACCOUNT_SHARED,
                actor=Party("system", "funds"),
                subject=Party("user", row.user_id),
                data={"bank_account_id": row.id, "shared_with": others},
                request_id=request_id,
            )

    async def remove(
        self,
        session: AsyncSession,
        *,
        user_id: str,
        bank_account_id: str,
        actor: Party,
        request_id: str | None = None,
    ) -> None:
        row = await repository.bank_account(session, bank_account_id, user_id=user_id, lock=True)
        if row is None or row.status == BankAccountStatus.REMOVED.value:
            raise NotFound("no such bank account")
        row.status = BankAccountStatus.REMOVED.value
        row.removed_ns = self.deps.clock.now_ns()
        await self.deps.audit(
            session,
            FundsEvent.BANK_ACCOUNT_REMOVED,
            actor=actor,
            subject=Party("user", user_id),
            data={"bank_account_id": row.id, "last4": row.last4},
            request_id=request_id,
        )

    async def of_user(self, session: AsyncSession, user_id: str) -> Sequence[BankAccount]:
        return await repository.bank_accounts_of(session, user_id)

    async def owned(self, session: AsyncSession, user_id: str, bank_account_id: str) -> BankAccount:
        row = await repository.bank_account(session, bank_account_id, user_id=user_id)
        if row is None or row.status == BankAccountStatus.REMOVED.value:
            raise NotFound("no such bank account")
        return row

    async def find(self, session: AsyncSession, bank_account_id: str) -> BankAccount | None:
        """Any customer's bank account by id (operator tools)."""
        return await repository.bank_account(session, bank_account_id)

    def account_number(self, row: BankAccount) -> str:
        """The full number, for the processor only (never shown, never logged)."""
        sealed = row.account_number_enc
        return sealed.reveal(self.deps.keyring, record_id=row.id)  # type: ignore[union-attr]

    async def last_change_ns(self, session: AsyncSession, user_id: str) -> int | None:
        return await repository.last_bank_change_ns(session, user_id)

    async def shared(self, session: AsyncSession) -> list[tuple[str, str, int]]:
        """Users who confirmed the same bank account: for beneficial-owner links."""
        return await repository.shared_bank_accounts(session)


def _amounts(values: Sequence[str]) -> tuple[Decimal, Decimal]:
    if len(values) != 2:
        raise FundsInputError('give the two micro-deposit amounts, e.g. ["0.32", "0.45"]')
    parsed: list[Decimal] = []
    for value in values:
        try:
            amount = Decimal(value.strip())
        except (InvalidOperation, AttributeError):
            raise FundsInputError("each amount is dollars such as 0.32") from None
        if not amount.is_finite() or not Decimal("0.01") <= amount <= Decimal("0.99"):
            raise FundsInputError("each amount is between 0.01 and 0.99")
        if amount != amount.quantize(Decimal("0.01")):
            raise FundsInputError("each amount has at most 2 decimal places")
        parsed.append(amount)
    return parsed[0], parsed[1]
