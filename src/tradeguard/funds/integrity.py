"""Before money leaves: the withdrawal's row must agree with its audit trail.

A withdrawal row is only a cache of what happened; what happened is in the ledger, appended
in the same transaction as each step. Someone who can write to the database but not forge
a whole trail (an operator, an injected statement, a restored old backup) could edit the
row: raise its amount, point it at another bank account, mark it verified or approved. So
just before a withdrawal is sent, its row is compared with its events, and any
disagreement stops it (`tradeguard funds` docs: "Record checks before sending").

A forged event would have to be inserted too, and the ledger is append-only, hash-chained
and signed: such a forgery stays in the trail for good, with its actor, where `tradeguard
audit verify` and the auditors see it. This check makes a quiet edit impossible, not a loud
one.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

REQUESTED = "funds:withdrawal:requested"
VERIFIED = "funds:withdrawal:verified"
REVIEW_OPENED = "funds:withdrawal:review_opened"
APPROVED = "funds:withdrawal:approved"
WITHDRAWAL_EVENTS = (REQUESTED, VERIFIED, REVIEW_OPENED, APPROVED)

BANK_VERIFIED = "funds:bank_account:verified"
BANK_REMOVED = "funds:bank_account:removed"
BANK_BLOCKED = "funds:bank_account:blocked"
BANK_EVENTS = (BANK_VERIFIED, BANK_REMOVED, BANK_BLOCKED)


@dataclass(frozen=True, slots=True)
class WithdrawalRecord:
    """The fields of a withdrawal row that decide where money goes and how much."""

    withdrawal_id: str
    user_id: str
    account_id: str
    bank_account_id: str
    amount: Decimal


def _actor(document: Mapping[str, Any]) -> tuple[str, str]:
    actor = document.get("actor") or {}
    return str(actor.get("kind", "")), str(actor.get("id", ""))


def _amount(value: object) -> Decimal | None:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def requested_amount(documents: Sequence[Mapping[str, Any]], withdrawal_id: str) -> Decimal | None:
    """The amount the customer asked for, by the trail (None: no request event)."""
    for document in documents:
        data = document.get("data") or {}
        if document.get("type") == REQUESTED and data.get("withdrawal_id") == withdrawal_id:
            return _amount(data.get("amount"))
    return None


def withdrawal_disagreements(
    record: WithdrawalRecord,
    withdrawal_documents: Sequence[Mapping[str, Any]],
    bank_documents: Sequence[Mapping[str, Any]],
) -> list[str]:
    """What in the row the trail does not back, each a short phrase (empty: all agree).

    `withdrawal_documents`: the events about the withdrawal's account of the types in
    WITHDRAWAL_EVENTS; `bank_documents`: the events about its owner of the types in
    BANK_EVENTS; both oldest first.
    """
    mine = [
        d
        for d in withdrawal_documents
        if (d.get("data") or {}).get("withdrawal_id") == record.withdrawal_id
    ]
    problems: list[str] = []
    requests = [d for d in mine if d.get("type") == REQUESTED]
    if len(requests) != 1:
        problems.append(f"{len(requests)} request events, not one")
    else:
        request = requests[0]
        data = request.get("data") or {}
        if _actor(request) != ("user", record.user_id):
            problems.append("requested by someone else")
        if (request.get("subject") or {}).get("id") != record.account_id:
            problems.append("the account differs from the request")
        if _amount(data.get("amount")) != record.amount:
            problems.append("the amount differs from the request")
        if data.get("bank_account_id") != record.bank_account_id:
            problems.append("the destination differs from the request")
    if not any(d.get("type") == VERIFIED and _actor(d) == ("user", record.user_id) for d in mine):
        problems.append("no verification by its owner (email and SMS codes)")
    if any(d.get("type") == REVIEW_OPENED for d in mine):
        approvers = {
            _actor(d)
            for d in mine
            if d.get("type") == APPROVED and _actor(d) != ("user", record.user_id)
        }
        if len(approvers) < 2:
            problems.append("held for review without two different approvers")
    standing = None
    for document in bank_documents:
        data = document.get("data") or {}
        if data.get("bank_account_id") == record.bank_account_id:
            standing = document.get("type")
    if standing != BANK_VERIFIED:
        problems.append("the destination is not a confirmed bank account by the trail")
    return problems
