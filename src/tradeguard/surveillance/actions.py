"""Automatic responses to surveillance alerts (MAN-5): the policy table from alert type and
score to actions (notify compliance, cancel the account's resting orders, closing-only,
suspend), applied in the stream's own transaction when an alert is raised, and reversed by
compliance with a reason.

**Exactly once.** An alert is raised once: the stream records it and moves its checkpoint
in one transaction, and a restart replays without recording (surveillance/consumer.py).
The actions are applied in that same transaction, so they commit with the alert or not at
all; a unique key on (alert, account, action) makes a second application impossible even
if a replay ever reached here.

**Trading state.** The account's status changes through trading's own service, as a
staff change would: its `trading:account:status_changed` event, its version (cached risk
views reload), and the orders it may no longer have cancelled (suspended: all;
closing-only: those that would open or add to a position). The next order is refused by
the pre-trade check on the account's status.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.access.domain import Role
from tradeguard.core.clock import Clock
from tradeguard.core.errors import Conflict, InvalidInput, NotFound
from tradeguard.core.ids import IdGenerator
from tradeguard.ledger import service as ledger_service
from tradeguard.ledger.domain import LedgerEvent, Party
from tradeguard.ledger.service import Ledger
from tradeguard.risk.domain import AccountStatus
from tradeguard.surveillance import repository
from tradeguard.surveillance.domain import (
    ActionKind,
    ActionRule,
    ActionStatus,
    AlertType,
    actions_due,
)
from tradeguard.surveillance.events import SurveillanceEvent
from tradeguard.surveillance.models import (
    SurveillanceAction,
    SurveillanceActionRule,
    SurveillanceAlert,
)
from tradeguard.surveillance.repository import ActionFilter
from tradeguard.surveillance.service import DETECTOR_PARTY, clean_reason
from tradeguard.trading.accounts import AccountService
from tradeguard.trading.common import AccountNotFound
from tradeguard.trading.domain import CancelReason
from tradeguard.trading.events import TradingEvent
from tradeguard.trading.orders import OrderService

MAX_POLICY_RULES = 50
# The status each action puts the account in, and the statuses it tightens from.
_STATUS_OF: dict[ActionKind, AccountStatus] = {
    ActionKind.CLOSING_ONLY: AccountStatus.CLOSING_ONLY,
    ActionKind.SUSPEND: AccountStatus.SUSPENDED,
}
_TIGHTENS: dict[ActionKind, frozenset[str]] = {
    ActionKind.CLOSING_ONLY: frozenset({AccountStatus.ACTIVE.value}),
    ActionKind.SUSPEND: frozenset(
        {AccountStatus.ACTIVE.value, AccountStatus.CLOSING_ONLY.value, AccountStatus.PENDING.value}
    ),
}


# Who is told of an alert under a `notify` rule, and the template of that email.
NOTIFIED_ROLES: Final = frozenset({Role.COMPLIANCE})
EMAIL_TEMPLATE: Final = "surveillance_alert"


class StaffContacts(Protocol):
    """Identity's service: the active users holding a role, with their email addresses."""

    async def contacts_with_roles(
        self, session: AsyncSession, roles: frozenset[Role]
    ) -> list[tuple[str, str]]: ...


class MailQueue(Protocol):
    """The notify outbox (notify/service.py Notifier): queued in the caller's transaction."""

    async def enqueue_email(
        self, session: AsyncSession, *, to: str, template: str, subject: str, body: str
    ) -> str: ...


class ActionNotFound(NotFound):
    slug = "action-not-found"
    title = "No such surveillance action"


class ActionNotReversible(Conflict):
    slug = "action-not-reversible"
    title = "This action cannot be reversed now"


@dataclass(slots=True)
class Response:
    """What the policy did for one alert: the action rows, and the orders it cancelled (for
    the venue to drop from its books once the transaction committed)."""

    actions: list[SurveillanceAction] = field(default_factory=list)
    cancelled: list[Any] = field(default_factory=list)


def _reason_for(alert: SurveillanceAlert, kind: ActionKind) -> str:
    return (
        f"surveillance alert {alert.id} ({alert.alert_type}, score {alert.score}): "
        f"automatic {kind.value}"
    )


class ActionDesk:
    """The action policy, its application to raised alerts, and reversals; never commits."""

    def __init__(
        self,
        *,
        clock: Clock,
        ids: IdGenerator,
        ledger: Ledger,
        accounts: AccountService,
        orders: OrderService,
        contacts: StaffContacts | None = None,
        mail: MailQueue | None = None,
    ) -> None:
        """`contacts` and `mail` send a `notify` rule's email to compliance; without them
        (a process with no outbox) the action is recorded and says that nobody was mailed."""
        self._clock = clock
        self._ids = ids
        self._ledger = ledger
        self._accounts = accounts
        self._orders = orders
        self._contacts = contacts
        self._mail = mail

    # The policy ----------------------------------------------------------------------------

    async def policy(self, session: AsyncSession) -> list[ActionRule]:
        return [
            ActionRule(AlertType(r.alert_type), r.min_score, ActionKind(r.action))
            for r in await repository.action_rules(session)
        ]

    async def set_policy(
        self,
        session: AsyncSession,
        *,
        rules: Sequence[ActionRule],
        reason: str,
        actor: Party,
        request_id: str | None = None,
    ) -> list[ActionRule]:
        """Replace the whole policy (audited with what it was and what it is)."""
        text = clean_reason(reason)
        if len(rules) > MAX_POLICY_RULES:
            raise InvalidInput(f"a policy has at most {MAX_POLICY_RULES} rules")
        seen: set[tuple[str, str]] = set()
        for rule in rules:
            if not 0 <= rule.min_score <= 100:
                raise InvalidInput("min_score is 0-100")
            key = (rule.alert_type.value, rule.action.value)
            if key in seen:
                raise InvalidInput(
                    f"{rule.alert_type.value} has two rules for {rule.action.value}: keep one"
                )
            seen.add(key)
        before = await self.policy(session)
        await repository.clear_action_rules(session)
        now = self._clock.now_ns()
        for rule in rules:
            repository.add(
                session,
                SurveillanceActionRule(
                    id=self._ids.new_str(),
                    alert_type=rule.alert_type.value,
                    min_score=rule.min_score,
                    action=rule.action.value,
                    created_by=f"{actor.kind}:{actor.id}"[:120],
                    created_ns=now,
                ),
            )
        await session.flush()
        await self._ledger.append(
            session,
            LedgerEvent(
                type=SurveillanceEvent.POLICY_CHANGED,
                actor=actor,
                data={
                    "before": [_rule_json(r) for r in before],
                    "after": [_rule_json(r) for r in rules],
                    "reason": text,
                },
                request_id=request_id,
            ),
        )
        return await self.policy(session)

    # Applying it ---------------------------------------------------------------------------

    async def respond(self, session: AsyncSession, alert: SurveillanceAlert) -> Response:
        """Apply what the policy asks for a newly raised alert, to every account it names."""
        response = Response()
        rules = await self.policy(session)
        due = actions_due(rules, alert.alert_type, alert.score)
        if not due:
            return response
        done = {
            (a.account_id, a.action) for a in await repository.actions_of_alert(session, alert.id)
        }
        thresholds = {r.action: r.min_score for r in rules if r.alert_type == alert.alert_type}
        # Compliance is mailed once per alert, with the first account's notify action.
        mailed = any(action == ActionKind.NOTIFY.value for _, action in done)
        for account_id in sorted(set(alert.accounts)):
            for kind in due:
                if (account_id, kind.value) in done:
                    continue
                if kind is ActionKind.NOTIFY:
                    response.actions.append(
                        await self._notify(session, alert, account_id, thresholds[kind], mailed)
                    )
                    mailed = True
                    continue
                superseded = kind is ActionKind.CLOSING_ONLY and ActionKind.SUSPEND in due
                row = await self._apply(
                    session,
                    alert,
                    account_id,
                    kind,
                    thresholds[kind],
                    superseded=superseded,
                    cancelled=response.cancelled,
                )
                response.actions.append(row)
        return response

    async def mail_compliance(self, session: AsyncSession, *, subject: str, body: str) -> int:
        """Queue an email to every compliance user (the verification's alarm); how many.
        Without a mail outbox in this process, nobody (0)."""
        if self._contacts is None or self._mail is None:
            return 0
        contacts = await self._contacts.contacts_with_roles(session, NOTIFIED_ROLES)
        for _, email in contacts:
            await self._mail.enqueue_email(
                session, to=email, template=EMAIL_TEMPLATE, subject=subject, body=body
            )
        return len(contacts)

    async def _notify(
        self,
        session: AsyncSession,
        alert: SurveillanceAlert,
        account_id: str,
        min_score: int,
        mailed: bool,
    ) -> SurveillanceAction:
        """Queue the alert's email to every compliance user (once per alert), in the
        stream's transaction: it is sent if and only if the alert commits."""
        if mailed:
            detail: dict[str, Any] = {
                "emailed": 0,
                "why": "compliance was mailed once for this alert",
            }
        elif self._contacts is None or self._mail is None:
            detail = {"emailed": 0, "why": "no mail outbox in this process"}
        else:
            contacts = await self._contacts.contacts_with_roles(session, NOTIFIED_ROLES)
            for _, email in contacts:
                await self._mail.enqueue_email(
                    session,
                    to=email,
                    template=EMAIL_TEMPLATE,
                    # The subject is stored in plaintext: the model and the score only.
                    subject=f"tradeguard surveillance alert: {alert.alert_type} "
                    f"(score {alert.score})",
                    body=_email_body(alert),
                )
            detail = {"emailed": len(contacts)}
        return await self._record(
            session,
            alert,
            account_id,
            ActionKind.NOTIFY,
            min_score=min_score,
            status=ActionStatus.APPLIED,
            detail=detail,
        )

    async def _apply(
        self,
        session: AsyncSession,
        alert: SurveillanceAlert,
        account_id: str,
        kind: ActionKind,
        min_score: int,
        *,
        superseded: bool,
        cancelled: list[Any],
    ) -> SurveillanceAction:
        detail: dict[str, Any] = {}
        status = ActionStatus.APPLIED
        reason = _reason_for(alert, kind)
        try:
            account = await self._accounts.get(session, account_id, lock=True)
        except AccountNotFound:
            account = None
        if account is None:
            status, detail = ActionStatus.SKIPPED, {"why": "no such account"}
        elif superseded:
            status, detail = ActionStatus.SKIPPED, {"why": "superseded by suspend"}
        elif kind in _STATUS_OF:
            target = _STATUS_OF[kind]
            if account.status not in _TIGHTENS[kind]:
                status = ActionStatus.SKIPPED
                detail = {"why": f"the account is {account.status}", "from": account.status}
            else:
                detail = {"from": account.status, "to": target.value}
                await self._accounts.set_status(
                    session,
                    account_id=account_id,
                    status=target,
                    trading_state=None,
                    reason=reason,
                    actor=DETECTOR_PARTY,
                )
                # The status change this action made: a reversal undoes it only while it is
                # still the account's latest (see `reverse`).
                detail["status_event_id"] = await self._accounts.last_status_change(
                    session, account_id
                )
                orders = await self._orders.cancel_open(
                    session,
                    account_id=account_id,
                    # Closing-only keeps orders that reduce a position: customers may get out.
                    opening_only=kind is ActionKind.CLOSING_ONLY,
                    reason=CancelReason.ACCOUNT_STATUS,
                    actor=DETECTOR_PARTY,
                )
                cancelled.extend(orders)
                detail["cancelled_order_ids"] = [o.id for o in orders]
        elif kind is ActionKind.CANCEL_ORDERS:
            orders = await self._orders.cancel_open(
                session,
                account_id=account_id,
                opening_only=False,
                reason=CancelReason.OPERATOR,
                actor=DETECTOR_PARTY,
            )
            cancelled.extend(orders)
            detail = {"cancelled_order_ids": [o.id for o in orders]}
        return await self._record(
            session, alert, account_id, kind, min_score=min_score, status=status, detail=detail
        )

    async def _record(
        self,
        session: AsyncSession,
        alert: SurveillanceAlert,
        account_id: str,
        kind: ActionKind,
        *,
        min_score: int,
        status: ActionStatus,
        detail: dict[str, Any],
    ) -> SurveillanceAction:
        """The action's row and its ledger event (applied or skipped)."""
        row = SurveillanceAction(
            id=self._ids.new_str(),
            alert_id=alert.id,
            account_id=account_id,
            action=kind.value,
            status=status.value,
            rule={"alert_type": alert.alert_type, "min_score": min_score, "score": alert.score},
            detail=detail,
            applied_ns=self._clock.now_ns(),
            reversed_by=None,
            reversed_ns=None,
            reverse_reason=None,
        )
        repository.add(session, row)
        await self._ledger.append(
            session,
            LedgerEvent(
                type=(
                    SurveillanceEvent.ACTION_APPLIED
                    if status is ActionStatus.APPLIED
                    else SurveillanceEvent.ACTION_SKIPPED
                ),
                actor=DETECTOR_PARTY,
                subject=Party("account", account_id),
                data={
                    "action_id": row.id,
                    "action": kind.value,
                    "alert_id": alert.id,
                    "account_id": account_id,
                    "rule": dict(row.rule),
                    "detail": detail,
                },
            ),
        )
        return row

    # Reversing it --------------------------------------------------------------------------

    async def reverse(
        self,
        session: AsyncSession,
        *,
        action_id: str,
        reason: str,
        actor: Party,
        request_id: str | None = None,
    ) -> SurveillanceAction:
        """Undo an applied action: the account's status goes back to what it was (orders
        cancelled stay cancelled; the customer may place them again)."""
        text = clean_reason(reason)
        row = await repository.action(session, action_id, lock=True)
        if row is None:
            raise ActionNotFound("no such surveillance action")
        if row.status != ActionStatus.APPLIED:
            raise ActionNotReversible(f"the action is {row.status}: nothing to reverse")
        kind = ActionKind(row.action)
        restored: str | None = None
        if kind in _STATUS_OF:
            account = await self._accounts.get(session, row.account_id, lock=True)
            if account.status != row.detail["to"] or await self._changed_since(session, row):
                # Somebody changed the account since (even if they changed it back): their
                # decision stands, and is not silently undone by reversing an older one.
                raise ActionNotReversible(
                    f"the account's status changed since the action (it is {account.status}); "
                    "change it through the trading accounts route"
                )
            restored = await self._status_before(session, row)
            await self._accounts.set_status(
                session,
                account_id=row.account_id,
                status=AccountStatus(restored),
                trading_state=None,
                reason=f"reversal of surveillance action {row.id}: {text}",
                actor=actor,
                request_id=request_id,
            )
        row.status = ActionStatus.REVERSED.value
        row.reversed_by = f"{actor.kind}:{actor.id}"[:120]
        row.reversed_ns = self._clock.now_ns()
        row.reverse_reason = text
        await self._ledger.append(
            session,
            LedgerEvent(
                type=SurveillanceEvent.ACTION_REVERSED,
                actor=actor,
                subject=Party("account", row.account_id),
                data={
                    "action_id": row.id,
                    "action": row.action,
                    "alert_id": row.alert_id,
                    "account_id": row.account_id,
                    "restored_status": restored,
                    "reason": text,
                },
                request_id=request_id,
            ),
        )
        return row

    async def _status_before(self, session: AsyncSession, row: SurveillanceAction) -> str:
        """The status the action's own status change left, from that change's ledger event
        (its id is recorded with the action), never from the action's editable row: a row
        whose `from` or `to` disagrees with the event is refused, not trusted."""
        made = row.detail.get("status_event_id")
        documents = await ledger_service.documents_about(
            session,
            subject_id=row.account_id,
            event_types=[TradingEvent.ACCOUNT_STATUS_CHANGED],
        )
        if made is not None:
            event = next((d for d in documents if d.get("id") == made), None)
        else:
            # An action recorded before the marker: no status change followed it
            # (`_changed_since`), so the account's latest is the action's own.
            event = documents[-1] if documents else None
        data = event.get("data") if event is not None else None
        if not isinstance(data, dict) or not isinstance(data.get("from"), str):
            raise ActionNotReversible(
                "the action's status change is not in the ledger: change the account's "
                "status through the trading accounts route"
            )
        if row.detail.get("from") != data["from"] or row.detail.get("to") != data.get("to"):
            raise ActionNotReversible(
                "the action's record disagrees with the ledger (run `tradeguard surveillance "
                "verify`): change the account's status through the trading accounts route"
            )
        return str(data["from"])

    async def _changed_since(self, session: AsyncSession, row: SurveillanceAction) -> bool:
        """Whether any status change of the account followed the action's own."""
        latest = await self._accounts.last_status_change(session, row.account_id)
        made = row.detail.get("status_event_id")
        if made is not None:
            return bool(latest != made)
        # An action recorded before the marker: any status change after it counts.
        changed_ns = await self._accounts.last_status_change_ns(session, row.account_id)
        return changed_ns is not None and changed_ns > row.applied_ns

    # Reading -------------------------------------------------------------------------------

    async def search(
        self, session: AsyncSession, where: ActionFilter
    ) -> Sequence[SurveillanceAction]:
        return await repository.actions(session, where)

    async def get(self, session: AsyncSession, action_id: str) -> SurveillanceAction:
        row = await repository.action(session, action_id)
        if row is None:
            raise ActionNotFound("no such surveillance action")
        return row


def _rule_json(rule: ActionRule) -> dict[str, Any]:
    return {
        "alert_type": rule.alert_type.value,
        "min_score": rule.min_score,
        "action": rule.action.value,
    }


def _email_body(alert: SurveillanceAlert) -> str:
    return (
        "A market-surveillance alert was raised.\n\n"
        f"Alert:     {alert.id}\n"
        f"Model:     {alert.alert_type} ({alert.detector})\n"
        f"Score:     {alert.score}\n"
        f"Symbol:    {alert.symbol}\n"
        f"Accounts:  {len(alert.accounts)}\n\n"
        f"Review it with `tradeguard surveillance alerts {alert.id}` or "
        f"GET /api/v1/surveillance/alerts/{alert.id}, and open a case if it needs one.\n"
    )
