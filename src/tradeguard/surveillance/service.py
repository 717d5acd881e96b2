"""Surveillance use cases: record a finding as an alert (or fold it into the alert it
continues), read alerts, and keep the beneficial-owner links compliance records.

Every change is a ledger event in the caller's transaction; services never commit.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.core.clock import Clock
from tradeguard.core.errors import Conflict, InvalidInput, NotFound
from tradeguard.core.ids import IdGenerator
from tradeguard.ledger.domain import LedgerEvent, Party
from tradeguard.ledger.service import Ledger
from tradeguard.surveillance import repository
from tradeguard.surveillance.domain import AlertStatus, Finding, folds_into
from tradeguard.surveillance.events import SurveillanceEvent
from tradeguard.surveillance.models import SurveillanceAlert, SurveillanceLink
from tradeguard.surveillance.repository import AlertFilter
from tradeguard.trading.accounts import AccountService

DETECTOR_PARTY = Party("system", "surveillance")
# An alert keeps the ids of its latest orders and executions, at most this many of each.
MAX_ALERT_IDS = 200
MAX_SUMMARY_CHARS = 400
MIN_REASON_CHARS = 3
MAX_REASON_CHARS = 1000
BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


class AlertNotFound(NotFound):
    slug = "alert-not-found"
    title = "No such alert"


class LinkNotFound(NotFound):
    slug = "link-not-found"
    title = "No such link"


class LinkExists(Conflict):
    slug = "link-exists"
    title = "These accounts are already linked"


def _merged(old: Sequence[str], new: Sequence[str]) -> list[str]:
    """Old ids then new ones, each once, the latest `MAX_ALERT_IDS` kept."""
    seen = dict.fromkeys([*old, *new])
    return list(seen)[-MAX_ALERT_IDS:]


def clean_reason(reason: str) -> str:
    """A link's reason: required, trimmed, bounded, printable text."""
    text = reason.strip()
    if len(text) < MIN_REASON_CHARS:
        raise InvalidInput(f"reason must say why (at least {MIN_REASON_CHARS} characters)")
    if len(text) > MAX_REASON_CHARS:
        raise InvalidInput(f"reason is longer than {MAX_REASON_CHARS} characters")
    # Control characters could rewrite a reviewer's terminal (the CLI prints reasons), and
    # bidirectional overrides could make a reason read differently from what it says.
    if any(
        (unicodedata.category(ch) == "Cc" and ch not in "\n\t") or ch in BIDI_CONTROLS
        for ch in text
    ):
        raise InvalidInput("reason must be printable text")
    return text


class AlertStore:
    """Raises and folds surveillance alerts, and reads them; never commits."""

    def __init__(
        self, *, clock: Clock, ids: IdGenerator, ledger: Ledger, fold_window_ns: int
    ) -> None:
        self._clock = clock
        self._ids = ids
        self._ledger = ledger
        self._fold_window = fold_window_ns

    async def record(self, session: AsyncSession, finding: Finding) -> SurveillanceAlert | None:
        """Raise an alert for a finding, or fold it into the alert of the same type, owner
        and symbol it continues. Returns the new alert, or None when it was folded."""
        now = self._clock.now_ns()
        live = await repository.latest_alert(
            session,
            alert_type=finding.alert_type.value,
            owner=finding.owner,
            symbol=finding.symbol,
        )
        if live is not None and folds_into(live.latest_trigger_ns, finding, self._fold_window):
            await self._extend(session, live, finding, now)
            return None
        row = SurveillanceAlert(
            id=self._ids.new_str(),
            alert_type=finding.alert_type.value,
            detector=finding.detector.value,
            symbol=finding.symbol,
            owner=finding.owner,
            accounts=list(finding.accounts),
            score=finding.score,
            status=AlertStatus.OPEN.value,
            summary=finding.summary[:MAX_SUMMARY_CHARS],
            first_trigger_seq=finding.trigger_seq,
            first_trigger_ns=finding.trigger_ns,
            latest_trigger_seq=finding.trigger_seq,
            latest_trigger_ns=finding.trigger_ns,
            window_start_ns=finding.window_start_ns,
            window_end_ns=finding.window_end_ns,
            occurrences=1,
            order_ids=list(finding.order_ids)[-MAX_ALERT_IDS:],
            execution_ids=list(finding.execution_ids)[-MAX_ALERT_IDS:],
            evidence=dict(finding.evidence),
            latency_ns=max(0, now - finding.trigger_ns),
            created_ns=now,
            updated_ns=now,
        )
        repository.add(session, row)
        await self._ledger.append(
            session,
            LedgerEvent(
                type=SurveillanceEvent.ALERT_RAISED,
                actor=DETECTOR_PARTY,
                subject=Party("account", finding.accounts[0]) if finding.accounts else None,
                data={
                    "alert_id": row.id,
                    "alert_type": row.alert_type,
                    "detector": row.detector,
                    "symbol": row.symbol,
                    "owner": row.owner,
                    "accounts": list(row.accounts),
                    "score": row.score,
                    "trigger_seq": finding.trigger_seq,
                    "order_ids": list(row.order_ids),
                    "execution_ids": list(row.execution_ids),
                    "summary": row.summary,
                },
            ),
        )
        return row

    async def _extend(
        self, session: AsyncSession, row: SurveillanceAlert, finding: Finding, now: int
    ) -> None:
        row.latest_trigger_seq = finding.trigger_seq
        row.latest_trigger_ns = finding.trigger_ns
        row.window_start_ns = min(row.window_start_ns, finding.window_start_ns)
        row.window_end_ns = max(row.window_end_ns, finding.window_end_ns)
        row.occurrences += 1
        row.score = max(row.score, finding.score)
        row.summary = finding.summary[:MAX_SUMMARY_CHARS]
        row.accounts = sorted(set(row.accounts) | set(finding.accounts))
        row.order_ids = _merged(row.order_ids, finding.order_ids)
        row.execution_ids = _merged(row.execution_ids, finding.execution_ids)
        row.evidence = dict(finding.evidence)
        row.updated_ns = now
        await self._ledger.append(
            session,
            LedgerEvent(
                type=SurveillanceEvent.ALERT_EXTENDED,
                actor=DETECTOR_PARTY,
                subject=Party("account", finding.accounts[0]) if finding.accounts else None,
                data={
                    "alert_id": row.id,
                    "alert_type": row.alert_type,
                    "trigger_seq": finding.trigger_seq,
                    "occurrences": row.occurrences,
                    "order_ids": list(finding.order_ids)[-MAX_ALERT_IDS:],
                    "execution_ids": list(finding.execution_ids)[-MAX_ALERT_IDS:],
                },
            ),
        )

    async def search(
        self, session: AsyncSession, where: AlertFilter
    ) -> Sequence[SurveillanceAlert]:
        return await repository.alerts(session, where)

    async def get(self, session: AsyncSession, alert_id: str) -> SurveillanceAlert:
        row = await repository.alert(session, alert_id)
        if row is None:
            raise AlertNotFound("no such alert")
        return row


class OwnerLinks:
    """The beneficial-owner links compliance records between accounts; never commits."""

    def __init__(
        self, *, clock: Clock, ids: IdGenerator, ledger: Ledger, accounts: AccountService
    ) -> None:
        self._clock = clock
        self._ids = ids
        self._ledger = ledger
        self._accounts = accounts

    async def add(
        self,
        session: AsyncSession,
        *,
        account_a: str,
        account_b: str,
        reason: str,
        actor: Party,
        request_id: str | None = None,
    ) -> SurveillanceLink:
        text = clean_reason(reason)
        if account_a == account_b:
            raise InvalidInput("an account is already linked to itself; name two accounts")
        first, second = sorted((account_a, account_b))
        known = await self._accounts.owners_of(session, [first, second])
        if len(known) != 2:
            raise InvalidInput("both accounts must exist")
        if await repository.link(session, first, second) is not None:
            raise LinkExists("these accounts are already linked")
        row = SurveillanceLink(
            id=self._ids.new_str(),
            account_a=first,
            account_b=second,
            reason=text,
            created_by=f"{actor.kind}:{actor.id}"[:120],
            created_ns=self._clock.now_ns(),
        )
        repository.add(session, row)
        await self._audit(
            session, SurveillanceEvent.LINK_ADDED, row, actor=actor, request_id=request_id
        )
        return row

    async def remove(
        self,
        session: AsyncSession,
        *,
        link_id: str,
        reason: str,
        actor: Party,
        request_id: str | None = None,
    ) -> SurveillanceLink:
        text = clean_reason(reason)
        row = await repository.link_by_id(session, link_id)
        if row is None:
            raise LinkNotFound("no such link")
        await repository.remove_link(session, row.id)
        await self._audit(
            session,
            SurveillanceEvent.LINK_REMOVED,
            row,
            actor=actor,
            request_id=request_id,
            extra={"reason": text, "link_reason": row.reason},
        )
        return row

    async def all(self, session: AsyncSession) -> Sequence[SurveillanceLink]:
        return await repository.links(session)

    async def pairs(self, session: AsyncSession) -> list[tuple[str, str]]:
        return await repository.link_pairs(session)

    async def _audit(
        self,
        session: AsyncSession,
        event_type: SurveillanceEvent,
        row: SurveillanceLink,
        *,
        actor: Party,
        request_id: str | None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        await self._ledger.append(
            session,
            LedgerEvent(
                type=event_type,
                actor=actor,
                subject=Party("account", row.account_a),
                data={
                    "link_id": row.id,
                    "account_id": row.account_a,
                    "linked_account_id": row.account_b,
                    "reason": row.reason,
                    **(extra or {}),
                },
                request_id=request_id,
            ),
        )
