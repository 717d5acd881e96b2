"""The double-entry money journal: books, entries, and the movements built from them (pure).

Every movement is one journal transaction whose entries sum to zero per asset and phase, so
money and shares are never created or destroyed, only moved between books:

- cash books (asset = the account currency): `acct:<id>:cash` holds settled cash,
  `acct:<id>:unsettled` trades not yet settled (T+1);
- a position book per symbol (asset = the symbol, amounts in shares): `acct:<id>:pos:<SYM>`;
- firm books are the other side of every movement: `firm:clearing` (cash owed to or by the
  clearing house), `firm:street:<SYM>` (shares from or to the street), `firm:fees`,
  `firm:adjustments` (admin credits and debits), `firm:holds` (the contra of reservations),
  `firm:error` (the firm's error account: the other side of a reversed execution, ATO-3).

Phases: `posted` entries are real movements; `held` entries are reservations (a buy order's
cash, a sell order's shares). A hold moves an amount from the customer book to `firm:holds`
in the held phase, and a release moves it back, so "held" on a customer book is the negated
sum of its held-phase entries and buying power is derived from the posted and held sums.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

ZERO = Decimal(0)


class Phase(StrEnum):
    POSTED = "posted"
    HELD = "held"


class MovementKind(StrEnum):
    HOLD = "hold"
    RELEASE = "release"
    FILL = "fill"
    FEE = "fee"
    SETTLEMENT = "settlement"
    ADJUSTMENT = "adjustment"
    # Money movement (funds/): deposits in, their settlement or return, withdrawals out.
    DEPOSIT = "deposit"
    DEPOSIT_SETTLED = "deposit_settled"
    DEPOSIT_RETURNED = "deposit_returned"
    WITHDRAWAL = "withdrawal"
    WITHDRAWAL_PAID = "withdrawal_paid"
    WITHDRAWAL_RELEASED = "withdrawal_released"
    # A fraudulent execution undone by compensating entries (account recovery, ATO-3).
    REVERSAL = "reversal"


FIRM_CLEARING = "firm:clearing"
FIRM_FEES = "firm:fees"
FIRM_ADJUSTMENTS = "firm:adjustments"
FIRM_HOLDS = "firm:holds"
# The firm's error account: what a reversed execution gave or took is the firm's from then on.
FIRM_ERROR = "firm:error"
# The firm's own bank account: collected deposits arrive there, withdrawals leave from it.
FIRM_BANK = "firm:bank"


def cash_book(account_id: str) -> str:
    return f"acct:{account_id}:cash"


def unsettled_book(account_id: str) -> str:
    return f"acct:{account_id}:unsettled"


def withdrawing_book(account_id: str) -> str:
    """The customer's cash on its way out: taken from cash when a withdrawal is requested, so
    it can neither be spent nor withdrawn twice, and given back if the withdrawal is not paid."""
    return f"acct:{account_id}:withdrawing"


def funding_book(rail: str) -> str:
    """Money in flight on a payment rail (`ach`, `wire`, `card`) between a customer's bank
    and the firm's: a deposit credited before it is collected, a withdrawal sent and not
    yet settled."""
    return f"firm:funding:{rail}"


def position_book(account_id: str, symbol: str) -> str:
    return f"acct:{account_id}:pos:{symbol}"


def street_book(symbol: str) -> str:
    return f"firm:street:{symbol}"


def account_of(book: str) -> str | None:
    """The account id a customer book belongs to (None for firm books)."""
    if not book.startswith("acct:"):
        return None
    return book.split(":", 2)[1]


@dataclass(frozen=True, slots=True)
class Entry:
    book: str
    asset: str
    phase: Phase
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Movement:
    """A journal transaction before it is stored."""

    kind: MovementKind
    memo: str
    entries: tuple[Entry, ...]
    account_id: str | None = None
    order_id: str | None = None
    execution_id: str | None = None


class UnbalancedMovement(ValueError):
    """A movement whose entries do not sum to zero: a bug, never stored."""


def imbalance(entries: tuple[Entry, ...] | list[Entry]) -> dict[tuple[str, Phase], Decimal]:
    """Net amount per (asset, phase); a balanced movement has none."""
    sums: dict[tuple[str, Phase], Decimal] = defaultdict(lambda: ZERO)
    for entry in entries:
        sums[(entry.asset, entry.phase)] += entry.amount
    return {key: value for key, value in sums.items() if value != 0}


def movement(
    kind: MovementKind,
    memo: str,
    entries: list[Entry],
    *,
    account_id: str | None = None,
    order_id: str | None = None,
    execution_id: str | None = None,
) -> Movement:
    """Build a movement, refusing one that does not balance or moves nothing."""
    kept = tuple(e for e in entries if e.amount != 0)
    if not kept:
        raise UnbalancedMovement(f"{kind} movement has no entries")
    if imbalance(kept):
        raise UnbalancedMovement(f"{kind} movement does not balance")
    return Movement(kind, memo, kept, account_id, order_id, execution_id)


def _pair(debit: str, credit: str, asset: str, amount: Decimal, phase: Phase) -> list[Entry]:
    # Sign convention: a positive amount increases the book (credit), negative decreases it.
    return [Entry(debit, asset, phase, -amount), Entry(credit, asset, phase, amount)]


def hold_cash(account_id: str, currency: str, amount: Decimal, order_id: str) -> Movement:
    """Reserve cash for an order (buying power goes down, cash does not move)."""
    return movement(
        MovementKind.HOLD,
        "buying power reserved for an order",
        _pair(cash_book(account_id), FIRM_HOLDS, currency, amount, Phase.HELD),
        account_id=account_id,
        order_id=order_id,
    )


def hold_shares(account_id: str, symbol: str, quantity: int, order_id: str) -> Movement:
    """Reserve shares for a sell order, so two sells can never sell the same shares."""
    return movement(
        MovementKind.HOLD,
        "shares reserved for a sell order",
        _pair(position_book(account_id, symbol), FIRM_HOLDS, symbol, Decimal(quantity), Phase.HELD),
        account_id=account_id,
        order_id=order_id,
    )


def release_entries(
    account_id: str, currency: str, symbol: str, cash: Decimal, shares: int
) -> list[Entry]:
    """Entries that give back part of an order's reservation."""
    entries: list[Entry] = []
    if cash:
        entries += _pair(FIRM_HOLDS, cash_book(account_id), currency, cash, Phase.HELD)
    if shares:
        entries += _pair(
            FIRM_HOLDS, position_book(account_id, symbol), symbol, Decimal(shares), Phase.HELD
        )
    return entries


def release(
    *, account_id: str, currency: str, symbol: str, cash: Decimal, shares: int, order_id: str
) -> Movement:
    return movement(
        MovementKind.RELEASE,
        "reservation released",
        release_entries(account_id, currency, symbol, cash, shares),
        account_id=account_id,
        order_id=order_id,
    )


def fill(
    *,
    account_id: str,
    currency: str,
    symbol: str,
    buy: bool,
    quantity: int,
    notional: Decimal,
    fee: Decimal,
    released_cash: Decimal,
    released_shares: int,
    order_id: str,
    execution_id: str,
) -> Movement:
    """An execution: shares against cash into the unsettled book, its fee, and the release of
    the reservation it used, all in one balanced transaction."""
    shares = Decimal(quantity)
    entries = release_entries(account_id, currency, symbol, released_cash, released_shares)
    if buy:
        entries += _pair(
            unsettled_book(account_id), FIRM_CLEARING, currency, notional, Phase.POSTED
        )
        entries += _pair(
            street_book(symbol), position_book(account_id, symbol), symbol, shares, Phase.POSTED
        )
    else:
        entries += _pair(
            FIRM_CLEARING, unsettled_book(account_id), currency, notional, Phase.POSTED
        )
        entries += _pair(
            position_book(account_id, symbol), street_book(symbol), symbol, shares, Phase.POSTED
        )
    if fee:
        entries += _pair(unsettled_book(account_id), FIRM_FEES, currency, fee, Phase.POSTED)
    return movement(
        MovementKind.FILL,
        f"{'bought' if buy else 'sold'} {quantity} {symbol}",
        entries,
        account_id=account_id,
        order_id=order_id,
        execution_id=execution_id,
    )


def settlement(account_id: str, currency: str, net: Decimal, settlement_date: str) -> Movement:
    """T+1: the net of a settlement date's trades moves from unsettled to settled cash."""
    return movement(
        MovementKind.SETTLEMENT,
        f"trades settling {settlement_date}",
        _pair(unsettled_book(account_id), cash_book(account_id), currency, net, Phase.POSTED),
        account_id=account_id,
    )


def adjustment(account_id: str, currency: str, amount: Decimal, reason: str) -> Movement:
    """An audited admin credit (positive) or debit (negative) of settled cash."""
    return movement(
        MovementKind.ADJUSTMENT,
        reason,
        _pair(FIRM_ADJUSTMENTS, cash_book(account_id), currency, amount, Phase.POSTED),
        account_id=account_id,
    )


def deposit(
    account_id: str, currency: str, amount: Decimal, *, rail: str, deposit_id: str
) -> Movement:
    """A deposit credited to settled cash: usable for trading at once, while the firm's side
    waits on the rail until it is collected (or comes back as a return)."""
    return movement(
        MovementKind.DEPOSIT,
        f"{rail} deposit {deposit_id}",
        _pair(funding_book(rail), cash_book(account_id), currency, amount, Phase.POSTED),
        account_id=account_id,
    )


def deposit_settled(currency: str, amount: Decimal, *, rail: str, deposit_id: str) -> Movement:
    """The deposit was collected: the money on the rail reaches the firm's bank."""
    return movement(
        MovementKind.DEPOSIT_SETTLED,
        f"{rail} deposit {deposit_id} collected",
        _pair(FIRM_BANK, funding_book(rail), currency, amount, Phase.POSTED),
    )


def deposit_returned(
    account_id: str, currency: str, amount: Decimal, *, rail: str, deposit_id: str, code: str
) -> Movement:
    """The bank sent the deposit back: the credit is reversed, even if that leaves the
    account's cash negative (a debit balance the customer owes, docs/funds.md)."""
    return movement(
        MovementKind.DEPOSIT_RETURNED,
        f"{rail} deposit {deposit_id} returned ({code})",
        _pair(cash_book(account_id), funding_book(rail), currency, amount, Phase.POSTED),
        account_id=account_id,
    )


def deposit_returned_after_settlement(
    account_id: str, currency: str, amount: Decimal, *, rail: str, deposit_id: str, code: str
) -> Movement:
    """A deposit already collected came back later (an unauthorized ACH return, a card
    chargeback): the bank takes the money back from the firm's account, and the credit is
    reversed, even if that leaves the account's cash negative."""
    return movement(
        MovementKind.DEPOSIT_RETURNED,
        f"{rail} deposit {deposit_id} returned after settling ({code})",
        _pair(cash_book(account_id), FIRM_BANK, currency, amount, Phase.POSTED),
        account_id=account_id,
    )


def withdrawal(account_id: str, currency: str, amount: Decimal, *, withdrawal_id: str) -> Movement:
    """A withdrawal requested: its cash moves out of reach (the withdrawing book) at once."""
    return movement(
        MovementKind.WITHDRAWAL,
        f"withdrawal {withdrawal_id} requested",
        _pair(cash_book(account_id), withdrawing_book(account_id), currency, amount, Phase.POSTED),
        account_id=account_id,
    )


def withdrawal_paid(
    account_id: str, currency: str, amount: Decimal, *, rail: str, withdrawal_id: str
) -> Movement:
    """The withdrawal settled at the customer's bank: the money has left the firm's bank
    (firm books carry the opposite sign of the customer books they balance)."""
    return movement(
        MovementKind.WITHDRAWAL_PAID,
        f"{rail} withdrawal {withdrawal_id} paid",
        _pair(withdrawing_book(account_id), FIRM_BANK, currency, amount, Phase.POSTED),
        account_id=account_id,
    )


def withdrawal_released(
    account_id: str, currency: str, amount: Decimal, *, withdrawal_id: str, why: str
) -> Movement:
    """A withdrawal refused, expired, cancelled or returned: its cash comes back."""
    return movement(
        MovementKind.WITHDRAWAL_RELEASED,
        f"withdrawal {withdrawal_id} {why}",
        _pair(withdrawing_book(account_id), cash_book(account_id), currency, amount, Phase.POSTED),
        account_id=account_id,
    )


def reversal(
    *,
    account_id: str,
    currency: str,
    symbol: str,
    buy: bool,
    quantity: int,
    notional: Decimal,
    fee: Decimal,
    execution_id: str,
) -> Movement:
    """Undo an execution for the customer by compensating entries (the execution's own
    entries stay as they are): the shares go back, and its cash effect (notional and fee)
    is returned in settled cash; the firm's error account takes the opposite side.

    Settled cash, not unsettled: the original still settles on its date (its cash moves from
    unsettled to settled then), so the account's cash ends exactly as if it had not traded.
    """
    shares = Decimal(quantity)
    cash = cash_book(account_id)
    position = position_book(account_id, symbol)
    if buy:
        # The customer paid notional + fee and received the shares: both are given back.
        entries = _pair(FIRM_ERROR, cash, currency, notional + fee, Phase.POSTED)
        entries += _pair(position, FIRM_ERROR, symbol, shares, Phase.POSTED)
    else:
        # The customer delivered the shares for notional - fee: the shares come back and the
        # proceeds go to the error account.
        entries = _pair(cash, FIRM_ERROR, currency, notional - fee, Phase.POSTED)
        entries += _pair(FIRM_ERROR, position, symbol, shares, Phase.POSTED)
    return movement(
        MovementKind.REVERSAL,
        f"reversal of execution {execution_id}: {'bought' if buy else 'sold'} {quantity} {symbol}",
        entries,
        account_id=account_id,
        execution_id=execution_id,
    )
