"""A customer's bank accounts: added with a validated routing number, the account number
encrypted with a blind index, ownership proved by two micro-deposits (the NACHA way of
verifying a new ACH destination), removable; every step audited."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.core.clock import ns_to_iso
from tradeguard.core.errors import NotFound, TooManyRequests
from tradeguard.crypto.classes import DataClass
from tradeguard.crypto.columns import blind_index, blind_index_candidates, keyring_field
from tradeguard.crypto.keyring import Keyring
from tradeguard.funds import repository
from tradeguard.funds.common import FundsConflict, FundsDeps, FundsEvent, FundsInputError
from tradeguard.funds.domain import (
    DAY_NS,
    BankAccountStatus,
    BankAccountType,
    FundsError,
    Rail,
    indexed_account_number,
    normalized_account_number,
    padded_forms,
    valid_routing_number,
)
from tradeguard.funds.models import BankAccount
from tradeguard.funds.processor import Transfer
from tradeguard.identity.sessions import SessionState
from tradeguard.kyc.contracts import ScreeningDecision, ScreeningSubject, SubjectKind
from tradeguard.ledger.domain import Party

MAX_BANK_ACCOUNTS = 5
# Bank accounts a customer may add in a rolling day: each brings three micro-deposit
# guesses, so removing and re-adding one must not become unlimited guessing.
MAX_ADDED_PER_DAY = 3
MAX_HOLDER_NAME_CHARS = 140
SANCTIONS_BLOCK_CODE = "SANCTIONS"


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


def shown_digits(number: str) -> str:
    """The digits shown of an account number: the last four, or of a short number (4 to 6
    digits, where four would be most or all of it) the last two."""
    return number[-4:] if len(number) > 6 else number[-2:]


def _index_input(routing: str, account_number: str) -> str:
    # Leading zeros dropped (crypto/catalogue.py reindexes with the same input).
    return f"{routing}:{indexed_account_number(account_number)}"


def _index_forms(keyring: Keyring, routing: str, account_number: str) -> frozenset[bytes]:
    """Every stored index the account can have: its index under each live index version,
    and (rows indexed before leading zeros were dropped, until a `bank_details` index
    rotation and `tradeguard keys reindex` recompute them) the index of each way it could
    have been typed with leading zeros."""
    forms = set(
        blind_index_candidates(
            keyring, DataClass.BANK_DETAILS, _index_input(routing, account_number), str
        )
    )
    for typed in padded_forms(account_number):
        forms.update(
            blind_index_candidates(keyring, DataClass.BANK_DETAILS, f"{routing}:{typed}", str)
        )
    return frozenset(forms)


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
        holder_name: str | None = None,
        request_id: str | None = None,
    ) -> BankAccount:
        """Add a bank account. Its holder's name (required from customers; the API asks for
        it) is screened against the sanctions list as a payee (KYC-2): a block stops the
        account at once (no micro-deposits), a possible match holds its withdrawals until a
        reviewer clears it."""
        deps, now = self.deps, self.deps.clock.now_ns()
        holder = None if holder_name is None else " ".join(holder_name.split())
        if holder is not None and (
            not 2 <= len(holder) <= MAX_HOLDER_NAME_CHARS or not any(c.isalpha() for c in holder)
        ):
            raise FundsInputError(
                f"holder_name is the account holder's name as the bank knows it (2 to "
                f"{MAX_HOLDER_NAME_CHARS} characters)"
            )
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
        added = await repository.bank_accounts_added_since(session, user_id, now - DAY_NS)
        if added >= MAX_ADDED_PER_DAY:
            raise TooManyRequests(
                f"{added} bank accounts were added in the last 24 hours; try again tomorrow",
                retry_after_seconds=DAY_NS / 1e9,
            )
        index = blind_index(
            deps.keyring, DataClass.BANK_DETAILS, _index_input(routing, number), str
        )
        # Every live index version's form: during a rotation older rows still hold the
        # previous one (crypto/index_format.py); and the forms of rows indexed with their
        # leading zeros.
        forms = _index_forms(deps.keyring, routing, number)
        mine = await repository.bank_accounts_of(session, user_id)
        if any(row.account_index in forms for row in mine):
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
            last4=shown_digits(number),
            holder_name_enc=(
                None if holder is None else keyring_field(deps.keyring, holder, record_id=row_id)
            ),
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
        decision = await self._screen_payee(session, row, holder, actor, request_id)
        if decision is not ScreeningDecision.BLOCK:
            await deps.processor.send_micro_deposits(bank_account_id=row_id, transfer=transfer)
        return row

    async def _screen_payee(
        self,
        session: AsyncSession,
        row: BankAccount,
        holder: str | None,
        actor: Party,
        request_id: str | None,
    ) -> ScreeningDecision:
        screener = self.deps.screener
        if screener is None or holder is None:
            return ScreeningDecision.CLEAR
        outcome = await screener.screen(
            session,
            ScreeningSubject(SubjectKind.PAYEE, row.id, holder, row.user_id),
            reason="bank_account_added",
            actor=actor,
            request_id=request_id,
        )
        if outcome.decision is ScreeningDecision.BLOCK:
            row.status = BankAccountStatus.BLOCKED.value
            await self.deps.audit(
                session,
                FundsEvent.BANK_ACCOUNT_BLOCKED,
                actor=Party("system", "funds"),
                subject=Party("user", row.user_id),
                data={
                    "bank_account_id": row.id,
                    "last4": row.last4,
                    "return_code": SANCTIONS_BLOCK_CODE,
                },
                request_id=request_id,
            )
        elif outcome.decision is ScreeningDecision.REVIEW:
            await self.deps.audit(
                session,
                FundsEvent.BANK_ACCOUNT_HELD,
                actor=Party("system", "funds"),
                subject=Party("user", row.user_id),
                data={"bank_account_id": row.id, "hits": [h.hit_id for h in outcome.hits]},
                request_id=request_id,
            )
        return outcome.decision

    async def payee_clear(self, session: AsyncSession, bank: BankAccount) -> bool:
        """Whether the bank account's holder stands clear of the sanctions list: no open or
        confirmed hit (a hit raised by a re-screen holds it too)."""
        screener = self.deps.screener
        if screener is None:
            return True
        outcome = await screener.standing(session, SubjectKind.PAYEE, bank.id)
        return outcome.decision is ScreeningDecision.CLEAR

    def holder_name(self, row: BankAccount) -> str | None:
        """The holder's name in clear, for screening only (never shown, never logged)."""
        sealed = row.holder_name_enc
        if sealed is None:
            return None
        return sealed.reveal(self.deps.keyring, record_id=row.id)  # type: ignore[union-attr]

    async def payees(self, session: AsyncSession) -> AsyncIterator[ScreeningSubject]:
        """Every live bank account with a holder's name, as a payee to re-screen (the
        `SubjectSource` of payees; kyc/contracts.py)."""
        for row in await repository.payee_bank_accounts(session):
            name = self.holder_name(row)
            if name:
                yield ScreeningSubject(SubjectKind.PAYEE, row.id, name, row.user_id)

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
        forms = _index_forms(self.deps.keyring, row.routing_number, self.account_number(row))
        others = sorted(
            {
                other.user_id
                for other in await repository.bank_accounts_by_index(session, forms)
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

    async def block(
        self, session: AsyncSession, bank_account_id: str, *, code: str, request_id: str | None
    ) -> None:
        """Never use this bank account again: its bank returned a transfer as closed,
        unknown or not authorized (the owner re-adds a working one)."""
        row = await repository.bank_account(session, bank_account_id, lock=True)
        if row is None or row.status in (
            BankAccountStatus.BLOCKED.value,
            BankAccountStatus.REMOVED.value,
        ):
            return
        row.status = BankAccountStatus.BLOCKED.value
        await self.deps.audit(
            session,
            FundsEvent.BANK_ACCOUNT_BLOCKED,
            actor=Party("system", "funds"),
            subject=Party("user", row.user_id),
            data={"bank_account_id": row.id, "last4": row.last4, "return_code": code},
            request_id=request_id,
        )

    async def require_fresh_factor(
        self, session: AsyncSession, user_id: str, state: SessionState
    ) -> None:
        """Adding, confirming or removing a bank account is a security change: it needs a
        second factor as fresh as a withdrawal does."""
        user = await self.deps.users.user(session, user_id)
        if user is None:
            raise NotFound("no such user")
        await self.deps.factors.require_fresh_factor(session, user=user, state=state)

    async def find(self, session: AsyncSession, bank_account_id: str) -> BankAccount | None:
        """Any customer's bank account by id (operator tools)."""
        return await repository.bank_account(session, bank_account_id)

    def account_number(self, row: BankAccount) -> str:
        """The full number, for the processor only (never shown, never logged)."""
        sealed = row.account_number_enc
        return sealed.reveal(self.deps.keyring, record_id=row.id)  # type: ignore[union-attr]

    async def last_change_ns(self, session: AsyncSession, user_id: str) -> int | None:
        return await repository.last_bank_change_ns(session, user_id)

    async def shared(self, session: AsyncSession) -> list[tuple[str, str, int, str]]:
        """Users who confirmed the same bank account: for beneficial-owner links. While a
        `bank_details` reindex is under way, pairs stored under different index versions
        show once it finishes (the event at confirmation already named them)."""
        return await repository.shared_bank_accounts(session)

    async def shared_account_links(
        self, session: AsyncSession
    ) -> list[tuple[str, str, dict[str, Any]]]:
        """The same pairs as trading accounts, for surveillance's beneficial-owner links:
        (an account of one user, an account of the other, evidence). Any account of a user
        names their owner; the evidence has the last four digits and the date, never the
        number."""
        found: list[tuple[str, str, dict[str, Any]]] = []
        for user_a, user_b, since_ns, last4 in await self.shared(session):
            first = await self.deps.trading.list_for(session, user_a)
            second = await self.deps.trading.list_for(session, user_b)
            if not first or not second:
                continue
            evidence = {
                "bank_account": f"***{last4}",
                "confirmed_by_both_on": ns_to_iso(since_ns)[:10],
            }
            found.append((min(a.id for a in first), min(b.id for b in second), evidence))
        return found


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


class PayeeSubjects:
    """Bank account holders as sanctions screening subjects (kyc/contracts.py
    `SubjectSource`): what the re-screening on a new list version goes through."""

    def __init__(self, banks: BankAccountService) -> None:
        self.banks = banks

    def subjects(self, session: AsyncSession) -> AsyncIterator[ScreeningSubject]:
        return self.banks.payees(session)
