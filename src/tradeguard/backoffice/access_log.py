"""The customer's "who accessed my data" log (IAC-4: log all access, shown to the person).

Every profile view, unmask and account change by staff writes one entry in the same
transaction as the access itself and its ledger event: the customer's log can never miss an
access the ledger has, nor show one that did not happen. The staff trading routes write
theirs through `TradingAccountAccessLog`, which the container installs in trading.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.backoffice import repository
from tradeguard.backoffice.common import Actor, BackofficeDeps
from tradeguard.backoffice.domain import (
    ACTION_TEXT,
    FIELD_TEXT,
    REASON_MAX_CHARS,
    STAFF_ACCOUNT_ACTIONS,
    AccessAction,
    FieldKind,
    FieldRef,
)
from tradeguard.backoffice.models import AccessLogEntry
from tradeguard.core.errors import InvalidInput
from tradeguard.identity.devices import plain_text
from tradeguard.trading.common import StaffActor
from tradeguard.trading.domain import StaffAccountAction

CURSOR_PATTERN = re.compile(r"^(\d{1,20})\.([0-9a-f-]{36})$")


@dataclass(frozen=True, slots=True)
class AccessLogItem:
    id: str
    at_ns: int
    staff_role: str
    staff_pseudonym: str
    action: str
    description: str
    field: str | None
    field_description: str | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class AccessLogPage:
    items: list[AccessLogItem]
    next_cursor: str | None


def _item(row: AccessLogEntry) -> AccessLogItem:
    action = AccessAction(row.action)
    kind = row.field.partition(":")[0] if row.field else None
    return AccessLogItem(
        id=row.id,
        at_ns=row.created_ns,
        staff_role=row.actor_role,
        staff_pseudonym=row.actor_pseudonym,
        action=action.value,
        description=ACTION_TEXT[action],
        field=row.field,
        field_description=FIELD_TEXT[FieldKind(kind)] if kind else None,
        reason=row.reason,
    )


def parse_cursor(cursor: str | None) -> tuple[int, str] | None:
    if cursor is None:
        return None
    match = CURSOR_PATTERN.fullmatch(cursor)
    if match is None:
        raise InvalidInput("cursor must be a next_cursor value from a previous page")
    return int(match.group(1)), match.group(2)


class AccessLog:
    def __init__(self, deps: BackofficeDeps) -> None:
        self.deps = deps

    async def record(
        self,
        session: AsyncSession,
        *,
        customer_id: str,
        actor: Actor,
        action: AccessAction,
        field: FieldRef | None = None,
        reason: str | None = None,
    ) -> None:
        repository.add(
            session,
            AccessLogEntry(
                id=self.deps.ids.new_str(),
                customer_id=customer_id,
                actor=actor.label,
                actor_role=actor.role,
                actor_pseudonym=self.deps.pseudonym(actor),
                action=action.value,
                field=field.name if field is not None else None,
                reason=reason,
                created_ns=self.deps.clock.now_ns(),
                request_id=actor.request_id,
            ),
        )

    async def page(
        self, session: AsyncSession, *, customer_id: str, cursor: str | None, limit: int
    ) -> AccessLogPage:
        """One page of a customer's own log, newest first; only ever the caller's own rows."""
        rows = await repository.access_log_page(
            session, customer_id, before=parse_cursor(cursor), limit=limit + 1
        )
        items = [_item(row) for row in rows[:limit]]
        more = len(rows) > limit
        last = rows[limit - 1] if more else None
        return AccessLogPage(
            items=items, next_cursor=f"{last.created_ns}.{last.id}" if last is not None else None
        )


class TradingAccountAccessLog:
    """The customer's log as the staff trading routes write it (trading's `StaffAccessLog`):
    one line per customer, in the transaction of the trading read or change."""

    def __init__(self, access_log: AccessLog) -> None:
        self.access_log = access_log

    async def record(
        self,
        session: AsyncSession,
        *,
        customer_id: str,
        staff: StaffActor,
        action: StaffAccountAction,
        account_id: str | None = None,
        reason: str | None = None,
    ) -> None:
        actor = Actor(
            party=staff.party,
            role=staff.role,
            permissions=frozenset(),
            user_id=staff.user_id if staff.kind == "staff" else None,
            request_id=staff.request_id,
            ip=staff.ip,
        )
        # Trading's reasons are free text written for the ledger; the customer reads them,
        # so they are stored as the plain text the back office's own reasons are.
        shown = plain_text(reason, limit=REASON_MAX_CHARS) if reason else None
        await self.access_log.record(
            session,
            customer_id=customer_id,
            actor=actor,
            action=STAFF_ACCOUNT_ACTIONS[action],
            field=FieldRef(FieldKind.TRADING_ACCOUNT, account_id) if account_id else None,
            reason=shown or None,
        )
