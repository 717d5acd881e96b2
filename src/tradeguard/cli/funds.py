"""`tradeguard funds`: money movement from the command line (issue #11).

Run the funds worker's pass once (`process`: expire unconfirmed withdrawals, ask the
processor about deposits and withdrawals that are due), work the review queue of large or
flagged withdrawals (`review list | approve | refuse`: staff only, named with --as and proved
with a console code; two different staff members must approve), and read the sandbox
processor's statement of a bank account's micro-deposits (`sandbox statement`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from tradeguard.access.common import authority, require
from tradeguard.access.domain import Permission
from tradeguard.cli.bootstrap import existing_settings
from tradeguard.cli.common import (
    EXIT_USAGE,
    CodeStdinOption,
    DataDirOption,
    StaffAsOption,
    VerifiedStaff,
    command_name,
    console,
    console_code,
    fail,
    record_denial,
    run_async,
    verify_staff,
)
from tradeguard.core.clock import SystemClock, ns_to_iso
from tradeguard.core.errors import PermissionMissing
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.funds.container import FundsServices, build_funds
from tradeguard.funds.models import Withdrawal
from tradeguard.funds.tasks import run_funds_once
from tradeguard.identity.container import IdentityServices, start_identity
from tradeguard.kyc.sanctions.container import build_sanctions
from tradeguard.trading.container import build_trading

T = TypeVar("T")

app = typer.Typer(
    help="Money movement: the funds worker, the withdrawal review queue, the sandbox.",
    no_args_is_help=True,
)
review_app = typer.Typer(
    help="Withdrawals held for review (WDL-3): two staff members must approve.",
    no_args_is_help=True,
)
sandbox_app = typer.Typer(help="The sandbox payment processor.", no_args_is_help=True)
app.add_typer(review_app, name="review")
app.add_typer(sandbox_app, name="sandbox")

AsOption = StaffAsOption
JsonOption = typer.Option("--json", help="Print JSON.")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _id(value: str, what: str) -> str:
    if not _UUID.fullmatch(value):
        fail(f"{what} must be an id such as 0190c5a0-0000-7000-8000-000000000001", code=EXIT_USAGE)
    return value


def _with_funds(
    data_dir: Path | None,
    work: Callable[[FundsServices, IdentityServices], Awaitable[T]],
) -> T:
    settings = existing_settings(data_dir)

    async def run() -> T:
        engine = create_engine(settings.main_database_url)
        try:
            clock = SystemClock()
            ids = IdGenerator(clock)
            sessions = session_factory(engine)
            identity = await start_identity(settings, clock=clock, ids=ids, sessions=sessions)
            trading = build_trading(
                settings, clock=clock, ids=ids, sessions=sessions, with_venue=False
            )
            funds = build_funds(
                settings, identity=identity, accounts=trading.accounts, sessions=sessions
            )
            # A withdrawal sent from the console is held like one sent by the server's
            # worker when its payee is under sanctions review (KYC-2).
            funds.deps.screener = build_sanctions(
                settings,
                clock=clock,
                ids=ids,
                ledger=identity.deps.ledger,
                keyring=identity.deps.keyring,
                sessions=sessions,
            ).service
            return await work(funds, identity)
        finally:
            await engine.dispose()

    return run_async(run(), database_url=settings.main_database_url)


def _as_reviewer(
    data_dir: Path | None,
    acting_as: str | None,
    code_stdin: bool,
    work: Callable[[FundsServices, str], Awaitable[T]],
) -> T:
    """Run `work` as the named staff member once they proved it with a console code and
    hold funds:review right now (their level and grants, as the API's guard reads them)."""
    if not acting_as:
        fail("name the staff member acting with --as USERNAME", code=EXIT_USAGE)
    code = console_code(acting_as, from_stdin=code_stdin)
    command = command_name("funds", work)

    async def staff_work(funds: FundsServices, identity: IdentityServices) -> T:
        verified: VerifiedStaff = await verify_staff(identity, acting_as, code)
        try:
            async with identity.unit_of_work() as session:
                found = await authority(session, verified.user_id, identity.clock.now_ns())
            if found is None or not found.member.active:
                raise PermissionMissing(
                    "only an active staff member reviews withdrawals",
                    permission=Permission.FUNDS_REVIEW.value,
                )
            require(found, Permission.FUNDS_REVIEW, "reviewing withdrawals")
        except PermissionMissing:
            await record_denial(identity, verified, Permission.FUNDS_REVIEW.value, command)
            raise
        return await work(funds, verified.user_id)

    return _with_funds(data_dir, staff_work)


def _row(w: Withdrawal) -> dict[str, Any]:
    return {
        "id": w.id,
        "user_id": w.user_id,
        "account_id": w.account_id,
        "amount": f"{w.amount:.2f}",
        "currency": w.currency,
        "status": w.status,
        "review_reason": w.review_reason,
        "first_approver": w.first_approver,
        "decided_by": w.decided_by,
        "requested_at": ns_to_iso(w.created_ns),
    }


@app.command("process")
def process_command(data_dir: Annotated[Path | None, DataDirOption] = None) -> None:
    """Run the funds worker's pass once: expire withdrawals whose codes were not confirmed
    in time, and book what the processor says of deposits and withdrawals that are due."""

    async def work(funds: FundsServices, _: IdentityServices) -> tuple[int, int, int]:
        result = await run_funds_once(funds)
        return result.expired, result.deposits, result.withdrawals

    expired, deposits, withdrawals = _with_funds(data_dir, work)
    console.print(
        f"expired {expired} unconfirmed withdrawals; booked {deposits} deposits and "
        f"{withdrawals} withdrawals"
    )


@review_app.command("list")
def review_list(
    as_json: Annotated[bool, JsonOption] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Withdrawals waiting for staff approval, oldest first."""

    async def work(funds: FundsServices, _: IdentityServices) -> list[dict[str, Any]]:
        async with unit_of_work(funds.sessions) as session:
            return [_row(w) for w in await funds.withdrawals.in_review(session)]

    rows = _with_funds(data_dir, work)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        console.print("no withdrawal is waiting for review")
        return
    table = Table("id", "amount", "reason", "first approval", "requested")
    for r in rows:
        table.add_row(
            r["id"],
            f"{r['amount']} {r['currency']}",
            r["review_reason"] or "",
            r["first_approver"] or "-",
            r["requested_at"],
        )
    console.print(table)


@review_app.command("approve")
def review_approve(
    withdrawal_id: Annotated[str, typer.Argument(help="The withdrawal's id.")],
    acting_as: Annotated[str | None, AsOption] = None,
    code_stdin: Annotated[bool, CodeStdinOption] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Approve a withdrawal in review; the second approval (by another staff member) sends
    it to the bank."""
    withdrawal_id = _id(withdrawal_id, "the withdrawal")

    async def approve(funds: FundsServices, staff_id: str) -> dict[str, Any]:
        async with unit_of_work(funds.sessions) as session:
            row = await funds.withdrawals.approve(
                session, staff_id=staff_id, withdrawal_id=withdrawal_id, request_id=None
            )
            return _row(row)

    row = _as_reviewer(data_dir, acting_as, code_stdin, approve)
    step = (
        "sent to the bank"
        if row["status"] == "sent"
        else "approved once; a second staff member's approval sends it"
    )
    console.print(f"withdrawal {row['id']} {step}")


@review_app.command("refuse")
def review_refuse(
    withdrawal_id: Annotated[str, typer.Argument(help="The withdrawal's id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (the customer is told).")],
    acting_as: Annotated[str | None, AsOption] = None,
    code_stdin: Annotated[bool, CodeStdinOption] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Refuse a withdrawal in review; its cash goes back to the account."""
    withdrawal_id = _id(withdrawal_id, "the withdrawal")

    async def refuse(funds: FundsServices, staff_id: str) -> dict[str, Any]:
        async with unit_of_work(funds.sessions) as session:
            row = await funds.withdrawals.refuse(
                session,
                staff_id=staff_id,
                withdrawal_id=withdrawal_id,
                reason=reason,
                request_id=None,
            )
            return _row(row)

    row = _as_reviewer(data_dir, acting_as, code_stdin, refuse)
    console.print(f"withdrawal {row['id']} refused; its cash is back in the account")


@sandbox_app.command("statement")
def sandbox_statement(
    bank_account_id: Annotated[str, typer.Argument(help="The bank account's id.")],
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """The two micro-deposit amounts the sandbox sent to a bank account: what its owner's
    bank statement would show (the sandbox processor only)."""
    bank_account_id = _id(bank_account_id, "the bank account")

    async def work(funds: FundsServices, _: IdentityServices) -> tuple[str, str]:
        async with unit_of_work(funds.sessions) as session:
            if await funds.banks.find(session, bank_account_id) is None:
                fail(f"no bank account {bank_account_id}")
        first, second = funds.processor.statement(bank_account_id)
        return f"{first:.2f}", f"{second:.2f}"

    first, second = _with_funds(data_dir, work)
    console.print(f"micro-deposits to {bank_account_id}: {first} and {second}")
