"""Reconciliation: proves the derived balances match the journal, and the journal matches the
executions and the open orders (`tradeguard trading reconcile`).

Checks, each naming what disagrees:
1. every journal transaction balances to zero per asset and phase;
2. every customer book's running balance equals the sum of its entries;
3. positions equal the signed sum of executions (less the reversed ones, ATO-3), and the
   position books;
4. cash and shares held equal what the open orders still reserve (closed orders hold nothing);
5. each order's filled quantity, notional and fees equal its executions;
6. unsettled cash equals the cash effect of the unsettled executions, and settled cash equals
   the adjustments and money movements (deposits, their returns, withdrawals and the ones
   given back, reversals of executions) plus the settled executions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.core.orders import Side
from tradeguard.ledger.domain import Party
from tradeguard.trading import journal, repository
from tradeguard.trading.common import TradingDeps
from tradeguard.trading.domain import cash_effect
from tradeguard.trading.events import TradingEvent
from tradeguard.trading.models import Execution

ZERO = Decimal(0)
MAX_LISTED = 50


@dataclass(slots=True)
class ReconcileReport:
    transactions: int = 0
    books: int = 0
    positions: int = 0
    orders: int = 0
    executions: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, problem: str) -> None:
        if len(self.problems) < MAX_LISTED:
            self.problems.append(problem)
        elif len(self.problems) == MAX_LISTED:
            self.problems.append("... more problems not listed")

    def as_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "transactions": self.transactions,
            "books": self.books,
            "positions": self.positions,
            "orders": self.orders,
            "executions": self.executions,
            "problems": self.problems,
        }


class Reconciler:
    def __init__(self, deps: TradingDeps) -> None:
        self.deps = deps

    async def run(self, session: AsyncSession, *, actor: Party) -> ReconcileReport:
        report = ReconcileReport()
        await self._transactions_balance(session, report)
        entries = await self._books(session, report)
        executions = await repository.all_executions(session)
        report.executions = len(executions)
        await self._positions(session, report, entries, executions)
        await self._holds_and_fills(session, report, entries, executions)
        await self._cash(session, report, entries, executions)
        await self.deps.audit(
            session,
            TradingEvent.RECONCILED,
            actor=actor,
            data={
                "ok": report.ok,
                "transactions": report.transactions,
                "books": report.books,
                "problems": len(report.problems),
            },
        )
        return report

    async def _transactions_balance(self, session: AsyncSession, report: ReconcileReport) -> None:
        sums: dict[tuple[str, str, str], Decimal] = defaultdict(lambda: ZERO)
        txns: set[str] = set()
        for txn_id, asset, phase, amount in await repository.entry_sums_by_transaction(session):
            sums[(txn_id, asset, phase)] += amount
            txns.add(txn_id)
        report.transactions = len(txns)
        for (txn_id, asset, phase), total in sorted(sums.items()):
            if total != 0:
                report.add(
                    f"journal transaction {txn_id} does not balance: {asset} {phase} {total}"
                )

    async def _books(
        self, session: AsyncSession, report: ReconcileReport
    ) -> dict[tuple[str, str, str], Decimal]:
        summed: dict[tuple[str, str, str], Decimal] = defaultdict(lambda: ZERO)
        for book, asset, phase, amount in await repository.customer_entries(session):
            summed[(book, asset, phase)] += amount
        stored = {
            (b.book, b.asset, b.phase): b.amount for b in await repository.all_balances(session)
        }
        report.books = len(set(summed) | set(stored))
        for key in sorted(set(summed) | set(stored)):
            if summed.get(key, ZERO) != stored.get(key, ZERO):
                report.add(
                    f"book {key[0]} {key[1]} {key[2]}: balance {stored.get(key, ZERO)} "
                    f"but its entries sum to {summed.get(key, ZERO)}"
                )
        return summed

    async def _positions(
        self,
        session: AsyncSession,
        report: ReconcileReport,
        entries: dict[tuple[str, str, str], Decimal],
        executions: Sequence[Execution],
    ) -> None:
        from_executions: dict[tuple[str, str], int] = defaultdict(int)
        # A reversed execution still happened (its entries stay), but its shares came back
        # by a compensating entry: the position no longer counts it.
        reversed_ids = await repository.reversed_execution_ids(session)
        for e in executions:
            if e.id in reversed_ids:
                continue
            from_executions[(e.account_id, e.symbol)] += (
                e.quantity if e.side == Side.BUY else -e.quantity
            )
        positions = {
            (p.account_id, p.symbol): p.quantity for p in await repository.all_positions(session)
        }
        report.positions = len(positions)
        for key in sorted(set(positions) | set(from_executions)):
            account_id, symbol = key
            book = entries.get((journal.position_book(account_id, symbol), symbol, "posted"), ZERO)
            values = {positions.get(key, 0), from_executions.get(key, 0), int(book)}
            if len(values) != 1:
                report.add(
                    f"position {account_id} {symbol}: table {positions.get(key, 0)}, "
                    f"executions {from_executions.get(key, 0)}, journal {book}"
                )

    async def _holds_and_fills(
        self,
        session: AsyncSession,
        report: ReconcileReport,
        entries: dict[tuple[str, str, str], Decimal],
        executions: Sequence[Execution],
    ) -> None:
        await self._holds(session, report, entries)
        await self._fills(session, report, executions)

    async def _holds(
        self,
        session: AsyncSession,
        report: ReconcileReport,
        entries: dict[tuple[str, str, str], Decimal],
    ) -> None:
        """Held cash and shares equal what the open orders still reserve, book by book."""
        open_orders = await repository.all_open_orders(session)
        report.orders = len(open_orders)
        expected: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
        for order in open_orders:
            currency_key = (journal.cash_book(order.account_id), "")
            expected[currency_key] += order.hold_cash
            expected[(journal.position_book(order.account_id, order.symbol), order.symbol)] += (
                order.hold_shares
            )
        journaled: dict[tuple[str, str], Decimal] = {}
        for (book, asset, phase), amount in entries.items():
            if phase == "held":
                key = (book, "" if book.endswith(":cash") else asset)
                journaled[key] = -amount
        for key in sorted(set(expected) | set(journaled)):
            if expected.get(key, ZERO) != journaled.get(key, ZERO):
                report.add(
                    f"{key[0]}: held {journaled.get(key, ZERO)}, but open orders reserve "
                    f"{expected.get(key, ZERO)}"
                )

    async def _fills(
        self, session: AsyncSession, report: ReconcileReport, executions: Sequence[Execution]
    ) -> None:
        """Each order's filled quantity, notional and fees equal its executions."""
        per_order: dict[str, list[Decimal]] = defaultdict(lambda: [ZERO, ZERO, ZERO])
        for e in executions:
            sums = per_order[e.order_id]
            sums[0] += e.quantity
            sums[1] += e.notional
            sums[2] += e.fee
        for order_id, (quantity, notional, fees) in per_order.items():
            filled = await repository.order(session, order_id)
            if filled is None:
                report.add(f"executions refer to a missing order {order_id}")
                continue
            if (filled.filled_quantity, filled.filled_notional, filled.fees) != (
                int(quantity),
                notional,
                fees,
            ):
                report.add(
                    f"order {order_id}: filled {filled.filled_quantity}/{filled.filled_notional}"
                    f"/{filled.fees} but executions say {quantity}/{notional}/{fees}"
                )

    async def _cash(
        self,
        session: AsyncSession,
        report: ReconcileReport,
        entries: dict[tuple[str, str, str], Decimal],
        executions: Sequence[Execution],
    ) -> None:
        unsettled: dict[str, Decimal] = defaultdict(lambda: ZERO)
        settled: dict[str, Decimal] = defaultdict(lambda: ZERO)
        for e in executions:
            (unsettled if e.settled_ns is None else settled)[e.account_id] += cash_effect(
                e.side, e.notional, e.fee
            )
        adjustments: dict[str, Decimal] = defaultdict(lambda: ZERO)
        for book, amount in await repository.adjustment_entries(session):
            account_id = journal.account_of(book)
            # Only the cash book: a withdrawal also moves money into the withdrawing book.
            if account_id is not None and book == journal.cash_book(account_id):
                adjustments[account_id] += amount
        accounts = {a.id: a for a in await repository.all_accounts(session, limit=1_000_000)}
        for account_id, account in sorted(accounts.items()):
            currency = account.currency
            book_unsettled = entries.get(
                (journal.unsettled_book(account_id), currency, "posted"), ZERO
            )
            if book_unsettled != unsettled.get(account_id, ZERO):
                report.add(
                    f"account {account_id}: unsettled cash {book_unsettled}, unsettled executions "
                    f"{unsettled.get(account_id, ZERO)}"
                )
            book_cash = entries.get((journal.cash_book(account_id), currency, "posted"), ZERO)
            expected = adjustments.get(account_id, ZERO) + settled.get(account_id, ZERO)
            if book_cash != expected:
                report.add(
                    f"account {account_id}: settled cash {book_cash}, adjustments plus settled "
                    f"executions {expected}"
                )
