"""Surveillance use cases: record a finding as an alert (or fold it into the alert it
continues), read alerts, and keep the beneficial-owner links: compliance's, those derived
from sign-ins (surveillance/linking.py) and those the funds package feeds.

Every change is a ledger event in the caller's transaction; services never commit.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.core.clock import Clock
from tradeguard.core.errors import Conflict, InvalidInput, NotFound
from tradeguard.core.ids import IdGenerator
from tradeguard.ledger.domain import LedgerEvent, Party
from tradeguard.ledger.service import Ledger
from tradeguard.surveillance import repository
from tradeguard.surveillance.domain import (
    AlertCommand,
    AlertStatus,
    Finding,
    alert_transition,
    folds_into,
)
from tradeguard.surveillance.events import SurveillanceEvent
from tradeguard.surveillance.linkage import DerivedLink, LinkKind, LinkStatus
from tradeguard.surveillance.models import SurveillanceAlert, SurveillanceLink
from tradeguard.surveillance.owners import OwnerLink
from tradeguard.surveillance.repository import AlertFilter
from tradeguard.surveillance.trades import EXECUTIONS_KEY, ORDERS_KEY, merge_details
from tradeguard.trading.accounts import AccountService

DETECTOR_PARTY = Party("system", "surveillance")
# Who records bank-account links unless the caller names itself.
FUNDS_PARTY = Party("system", "funds")
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


class AlertStatusRefused(Conflict):
    slug = "alert-status-refused"
    title = "The alert cannot do that in its current state"


_ALERT_EVENT = {
    AlertCommand.DISMISS: SurveillanceEvent.ALERT_DISMISSED,
    AlertCommand.ESCALATE: SurveillanceEvent.ALERT_ESCALATED,
    AlertCommand.REOPEN: SurveillanceEvent.ALERT_REOPENED,
}


class LinkNotFound(NotFound):
    slug = "link-not-found"
    title = "No such link"


class LinkExists(Conflict):
    slug = "link-exists"
    title = "These accounts are already linked"


class LinkIsDerived(Conflict):
    slug = "link-is-derived"
    title = "A derived link is dismissed, not removed"


class LinkIsManual(Conflict):
    slug = "link-is-manual"
    title = "A manual link is removed, not dismissed"


class LinkDismissed(Conflict):
    slug = "link-dismissed"
    title = "This link is already dismissed"


def evidence_digest(evidence: Mapping[str, Any]) -> str:
    """SHA-256 of the evidence as canonical JSON: each alert event records the digest of the
    evidence it left, so a verification (surveillance/verify.py) sees an edited row."""
    text = json.dumps(evidence, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


# The alert row's fields a `raised` / `extended` event does not carry itself: their digest
# (`row_digest`) is, so a verification sees an edited score, summary, account list, window,
# latency or creation time.
ROW_DIGEST_FIELDS = (
    "detector",
    "score",
    "summary",
    "accounts",
    "first_trigger_ns",
    "latest_trigger_ns",
    "window_start_ns",
    "window_end_ns",
    "latency_ns",
    "created_ns",
)


def alert_row_digest(row: SurveillanceAlert) -> str:
    """SHA-256 of the alert row's decisive fields (`ROW_DIGEST_FIELDS`) as canonical JSON."""
    return evidence_digest({name: getattr(row, name) for name in ROW_DIGEST_FIELDS})


def merged_ids(old: Sequence[str], new: Sequence[str]) -> list[str]:
    return _merged(old, new)


def _merged(old: Sequence[str], new: Sequence[str]) -> list[str]:
    """Old ids then new ones, each once, the latest `MAX_ALERT_IDS` kept."""
    seen = dict.fromkeys([*old, *new])
    return list(seen)[-MAX_ALERT_IDS:]


def clean_reason(reason: str, *, field: str = "reason") -> str:
    """A reason (or the text named `field` in errors): required, trimmed, bounded, printable."""
    text = reason.strip()
    if len(text) < MIN_REASON_CHARS:
        why = "must say why" if field == "reason" else "needs"
        raise InvalidInput(f"{field} {why} (at least {MIN_REASON_CHARS} characters)")
    if len(text) > MAX_REASON_CHARS:
        raise InvalidInput(f"{field} is longer than {MAX_REASON_CHARS} characters")
    # Control characters could rewrite a reviewer's terminal (the CLI prints reasons), and
    # bidirectional overrides could make a reason read differently from what it says.
    if any(
        (unicodedata.category(ch) == "Cc" and ch not in "\n\t") or ch in BIDI_CONTROLS
        for ch in text
    ):
        raise InvalidInput(f"{field} must be printable text")
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
        # A continuation folds into the live alert, never into one a closed case decided
        # (false positive or reported alike): repeat offending after the decision is a new
        # alert, which the action policy and a new case then see. The alert's row lock (above)
        # and the close's lock on its case's alerts (cases.py) order the two; the decision is
        # made once, when the finding is recorded, so a restart's replay cannot change it.
        if live is not None and finding.trigger_seq <= live.latest_trigger_seq:
            # Recorded already: a finding released again after a restart (the engine's tick
            # released it before; surveillance/engine.py). Findings of one type, owner and
            # symbol are found in the order of their triggers, so an older or equal trigger
            # is never new.
            return None
        if (
            live is not None
            and folds_into(live.latest_trigger_ns, finding, self._fold_window)
            # A dismissed alert was decided like one in a closed case: it never grows.
            and live.status != AlertStatus.DISMISSED.value
            and not await repository.in_closed_case(session, live.id)
        ):
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
            status=AlertStatus.NEW.value,
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
                    "evidence_digest": evidence_digest(row.evidence),
                    "row_digest": alert_row_digest(row),
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
        evidence = dict(finding.evidence)
        # The trades of every finding folded in, not only the latest's.
        for key, id_key in ((ORDERS_KEY, "order_id"), (EXECUTIONS_KEY, "execution_id")):
            if key in evidence or key in row.evidence:
                evidence[key] = merge_details(
                    row.evidence.get(key) or [], evidence.get(key) or [], id_key
                )
        row.evidence = evidence
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
                    "evidence_digest": evidence_digest(row.evidence),
                    "row_digest": alert_row_digest(row),
                },
            ),
        )

    async def change_status(
        self,
        session: AsyncSession,
        *,
        alert_id: str,
        command: AlertCommand,
        reason: str,
        actor: Party,
        request_id: str | None = None,
    ) -> SurveillanceAlert:
        """Dismiss, escalate or reopen an alert outside a case (a reason is required and
        audited): a `surveillance:alert:<dismissed|escalated|reopened>` ledger event."""
        text = clean_reason(reason)
        found = await repository.alerts_by_ids(session, [alert_id], lock=True)
        row = found.get(alert_id)
        if row is None:
            raise AlertNotFound("no such alert")
        before = AlertStatus(row.status)
        after = alert_transition(before, command)
        if not isinstance(after, AlertStatus):
            raise AlertStatusRefused(after)
        now = self._clock.now_ns()
        row.status = after.value
        row.updated_ns = now
        await self._ledger.append(
            session,
            LedgerEvent(
                type=_ALERT_EVENT[command],
                actor=actor,
                subject=Party("account", row.accounts[0]) if row.accounts else None,
                data={
                    "alert_id": row.id,
                    "from": before.value,
                    "status": after.value,
                    "reason": text,
                },
                request_id=request_id,
            ),
        )
        return row

    async def search(
        self, session: AsyncSession, where: AlertFilter
    ) -> Sequence[SurveillanceAlert]:
        return await repository.alerts(session, where)

    async def get(self, session: AsyncSession, alert_id: str) -> SurveillanceAlert:
        row = await repository.alert(session, alert_id)
        if row is None:
            raise AlertNotFound("no such alert")
        return row


@dataclass(frozen=True, slots=True)
class BankAccountLink:
    """Two accounts that paid in from, or out to, one bank account (the funds package finds
    these; `OwnerLinks.record_bank_account_links` records them).

    `evidence` says what was shared, when and how often, e.g. `{"bank_account_key": <a keyed
    hash of the account's routing and number>, "bank_account": "****6789", "first_at":
    "2026-01-05T15:00:00Z", "last_at": ..., "transfers": 4}`: flat JSON values, never the
    bank account number itself (a run of nine or more digits is refused).
    """

    account_a: str
    account_b: str
    evidence: Mapping[str, Any]


MAX_EVIDENCE_KEYS = 20
MAX_EVIDENCE_TEXT = 200
# Nine digits or more: a bank account, routing or card number, which evidence never carries.
_LONG_NUMBER = re.compile(r"\d{9,}")


def clean_evidence(evidence: Mapping[str, Any]) -> dict[str, Any]:
    """Link evidence from another package: a small flat mapping of printable values."""
    if len(evidence) > MAX_EVIDENCE_KEYS:
        raise InvalidInput(f"link evidence has at most {MAX_EVIDENCE_KEYS} entries")
    cleaned: dict[str, Any] = {}
    for key, value in evidence.items():
        if not isinstance(key, str) or not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", key):
            raise InvalidInput("link evidence keys are short snake_case names")
        if isinstance(value, bool) or value is None or isinstance(value, int | float):
            cleaned[key] = value
            continue
        if not isinstance(value, str):
            raise InvalidInput(f"link evidence {key} must be text, a number or a flag")
        if len(value) > MAX_EVIDENCE_TEXT or any(
            unicodedata.category(ch) == "Cc" or ch in BIDI_CONTROLS for ch in value
        ):
            raise InvalidInput(f"link evidence {key} must be short printable text")
        if _LONG_NUMBER.search(value.replace(" ", "").replace("-", "")):
            raise InvalidInput(
                f"link evidence {key} looks like an account number: give a keyed hash or a "
                "masked form"
            )
        cleaned[key] = value
    return cleaned


def _derived_reason(link: DerivedLink) -> str:
    e = link.evidence
    if link.kind is LinkKind.DEVICE:
        return (
            f"shared device: {e.get('devices')} devices of the two users have one fingerprint "
            f"({e.get('sign_ins')} sign-ins)"
        )
    return (
        f"shared network {e.get('network')} /{e.get('prefix_length')}: signed in within "
        f"{e.get('window_seconds')}s of each other on {e.get('occurrences')} occasions"
    )


def owner_link(row: SurveillanceLink) -> OwnerLink:
    return OwnerLink(
        id=row.id,
        kind=row.kind,
        account_a=row.account_a,
        account_b=row.account_b,
        user_a=row.user_a,
        user_b=row.user_b,
        evidence=dict(row.evidence or {}),
    )


class OwnerLinks:
    """Beneficial-owner links: recorded by compliance (`manual`), derived from sign-ins
    (`device`, `network`) or fed by the funds package (`bank_account`); never commits.

    A manual link is removed when it was wrong; a derived one is dismissed instead, and stays
    dismissed: the next derivation finds the pair linked and leaves it.
    """

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
        first, second = await self._account_pair(session, account_a, account_b)
        owners = await self._accounts.owners_of(session, [first, second])
        if owners[first] == owners[second]:
            raise InvalidInput(
                "these accounts already share an owner (one user holds both): a link adds nothing"
            )
        if await repository.account_link(session, LinkKind.MANUAL, first, second) is not None:
            raise LinkExists("these accounts are already linked")
        return await self._record_new(
            session,
            LinkKind.MANUAL,
            reason=text,
            actor=actor,
            request_id=request_id,
            account_a=first,
            account_b=second,
        )

    async def _account_pair(
        self, session: AsyncSession, account_a: str, account_b: str
    ) -> tuple[str, str]:
        if account_a == account_b:
            raise InvalidInput("an account is already linked to itself; name two accounts")
        first, second = sorted((account_a, account_b))
        known = await self._accounts.owners_of(session, [first, second])
        if len(known) != 2:
            raise InvalidInput("both accounts must exist")
        return first, second

    async def _record_new(
        self,
        session: AsyncSession,
        kind: LinkKind,
        *,
        reason: str,
        actor: Party,
        request_id: str | None = None,
        evidence: Mapping[str, Any] | None = None,
        account_a: str | None = None,
        account_b: str | None = None,
        user_a: str | None = None,
        user_b: str | None = None,
    ) -> SurveillanceLink:
        row = SurveillanceLink(
            id=self._ids.new_str(),
            kind=kind.value,
            account_a=account_a,
            account_b=account_b,
            user_a=user_a,
            user_b=user_b,
            reason=reason,
            evidence=dict(evidence or {}),
            status=LinkStatus.ACTIVE.value,
            created_by=f"{actor.kind}:{actor.id}"[:120],
            created_ns=self._clock.now_ns(),
        )
        repository.add(session, row)
        return await self._audit(
            session, SurveillanceEvent.LINK_ADDED, row, actor=actor, request_id=request_id
        )

    async def record_derived(
        self, session: AsyncSession, links: Sequence[DerivedLink]
    ) -> list[SurveillanceLink]:
        """Record the derived links not recorded before (a dismissed one stays dismissed),
        each with its ledger event."""
        known: dict[LinkKind, set[tuple[str, str]]] = {}
        created: list[SurveillanceLink] = []
        for link in links:
            pairs = known.get(link.kind)
            if pairs is None:
                pairs = known[link.kind] = await repository.linked_pairs(session, link.kind)
            pair = (link.user_a, link.user_b)
            if pair in pairs or link.user_a == link.user_b:
                continue
            pairs.add(pair)
            row = await self._record_new(
                session,
                link.kind,
                reason=_derived_reason(link),
                actor=DETECTOR_PARTY,
                evidence=link.evidence,
                user_a=link.user_a,
                user_b=link.user_b,
            )
            created.append(row)
        return created

    async def record_bank_account_links(
        self,
        session: AsyncSession,
        links: Sequence[BankAccountLink],
        *,
        actor: Party = FUNDS_PARTY,
    ) -> list[SurveillanceLink]:
        """Record that these pairs of accounts share a bank account (the funds package's
        entry point; see `BankAccountLink`). Pairs linked so before, dismissed ones included,
        are left as they are; a pair naming one account twice or an unknown account, or
        evidence that is not clean, refuses the whole call and records nothing."""
        prepared: list[tuple[str, str, dict[str, Any]]] = []
        for link in links:
            first, second = await self._account_pair(session, link.account_a, link.account_b)
            prepared.append((first, second, clean_evidence(link.evidence)))
        pairs = await repository.linked_pairs(session, LinkKind.BANK_ACCOUNT)
        created: list[SurveillanceLink] = []
        for first, second, evidence in prepared:
            if (first, second) in pairs:
                continue
            pairs.add((first, second))
            row = await self._record_new(
                session,
                LinkKind.BANK_ACCOUNT,
                reason="shared bank account: both accounts moved funds with one bank account",
                actor=actor,
                evidence=evidence,
                account_a=first,
                account_b=second,
            )
            created.append(row)
        return created

    async def remove(
        self,
        session: AsyncSession,
        *,
        link_id: str,
        reason: str,
        actor: Party,
        request_id: str | None = None,
    ) -> SurveillanceLink:
        """Remove a manual link that was wrong (audited)."""
        text, row = clean_reason(reason), await self._locked(session, link_id)
        if row.kind != LinkKind.MANUAL:
            # Removed, it would be derived again at the next pass: dismissal is what stays.
            raise LinkIsDerived(f"a {row.kind} link is dismissed, not removed")
        await repository.remove_link(session, row.id)
        return await self._audit(
            session,
            SurveillanceEvent.LINK_REMOVED,
            row,
            actor=actor,
            request_id=request_id,
            extra={"reason": text, "link_reason": row.reason},
        )

    async def _locked(self, session: AsyncSession, link_id: str) -> SurveillanceLink:
        row = await repository.link_by_id(session, link_id, lock=True)
        if row is None:
            raise LinkNotFound("no such link")
        return row

    async def dismiss(
        self,
        session: AsyncSession,
        *,
        link_id: str,
        reason: str,
        actor: Party,
        request_id: str | None = None,
    ) -> SurveillanceLink:
        """Dismiss a derived link as a false positive (audited): it joins nothing from the
        stream's next pass and is never derived again."""
        text, row = clean_reason(reason), await self._locked(session, link_id)
        if row.kind == LinkKind.MANUAL:
            raise LinkIsManual("a manual link is removed (unlink), not dismissed")
        if row.status == LinkStatus.DISMISSED:
            raise LinkDismissed("this link is already dismissed")
        row.status = LinkStatus.DISMISSED.value
        row.dismissed_by = f"{actor.kind}:{actor.id}"[:120]
        row.dismissed_ns = self._clock.now_ns()
        row.dismiss_reason = text
        return await self._audit(
            session,
            SurveillanceEvent.LINK_DISMISSED,
            row,
            actor=actor,
            request_id=request_id,
            extra={"reason": text},
        )

    async def all(
        self,
        session: AsyncSession,
        *,
        kind: str | None = None,
        status: str | None = None,
        before_id: str | None = None,
        limit: int | None = None,
    ) -> Sequence[SurveillanceLink]:
        """Links, newest first, by kind and status; a page of `limit` before `before_id`."""
        return await repository.links(
            session, kind=kind, status=status, before_id=before_id, limit=limit
        )

    async def live(self, session: AsyncSession) -> list[OwnerLink]:
        """The active links, as the detectors resolve owners with them."""
        rows = await repository.links(session, status=LinkStatus.ACTIVE.value)
        return [owner_link(row) for row in rows]

    async def signature(self, session: AsyncSession) -> tuple[int, int, str | None]:
        """A value that changes whenever the live links may have (see the repository)."""
        return await repository.links_signature(session)

    async def _audit(
        self,
        session: AsyncSession,
        event_type: SurveillanceEvent,
        row: SurveillanceLink,
        *,
        actor: Party,
        request_id: str | None,
        extra: dict[str, Any] | None = None,
    ) -> SurveillanceLink:
        """Append the link's ledger event; returns the link."""
        if row.user_a is not None:
            subject = Party("user", row.user_a)
            pair = {"user_id": row.user_a, "linked_user_id": row.user_b}
        else:
            subject = Party("account", str(row.account_a))
            pair = {"account_id": row.account_a, "linked_account_id": row.account_b}
        await self._ledger.append(
            session,
            LedgerEvent(
                type=event_type,
                actor=actor,
                subject=subject,
                data={
                    "link_id": row.id,
                    "kind": row.kind,
                    **pair,
                    "reason": row.reason,
                    "evidence": dict(row.evidence or {}),
                    **(extra or {}),
                },
                request_id=request_id,
            ),
        )
        return row
