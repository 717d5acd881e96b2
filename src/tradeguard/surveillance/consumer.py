"""The surveillance stream: tails the ledger by sequence number behind a stored checkpoint
and feeds every order, cancel and execution to the detectors.

One pass is one transaction: lock the checkpoint, read the next batch of chained events,
resolve the accounts' beneficial owners, feed the market events to the engine, record the
alerts (each with its ledger event), move the checkpoint and store the engine's resume
point. Alerts and checkpoint commit together, so a crash mid-pass loses and repeats
nothing: the pass runs again from the old checkpoint.

The engine's state lives in memory. Whenever it is not known to match the checkpoint (at
start, after a failed pass, or when a consumer in another process moved the checkpoint),
it is rebuilt before the pass: a fresh engine starts at the stored resume point and is fed
again the market events from there up to the checkpoint, its findings discarded (they were
recorded when first found). Because the engine's state depends only on those events
(surveillance/engine.py), the rebuilt engine is in exactly the state the old one had, and
a restart raises exactly the alerts an uninterrupted run would have, none twice.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tradeguard.core.clock import Clock
from tradeguard.db.engine import read_only, unit_of_work
from tradeguard.ledger.service import (
    SequencedEvent,
    chained_after,
    events_after,
    events_of_types,
)
from tradeguard.surveillance import repository
from tradeguard.surveillance.actions import ActionDesk
from tradeguard.surveillance.domain import Finding, SurveillanceParameters
from tradeguard.surveillance.engine import SurveillanceEngine
from tradeguard.surveillance.events import (
    MARKET_EVENT_TYPES,
    Fill,
    MarketEvent,
    event_account,
    parse_market_event,
)
from tradeguard.surveillance.metrics import SurveillanceMetrics
from tradeguard.surveillance.models import SurveillanceCheckpoint
from tradeguard.surveillance.owners import BeneficialOwners, OwnerLink
from tradeguard.surveillance.sar import mask_account_number
from tradeguard.surveillance.service import AlertStore, OwnerLinks
from tradeguard.surveillance.trades import (
    UNKNOWN,
    counterparty_accounts,
    mask_counterparties,
    resolve_counterparties,
    unresolved_matches,
)
from tradeguard.trading.accounts import AccountService
from tradeguard.trading.common import AccountNotFound

log = logging.getLogger(__name__)

CONSUMER_NAME = "surveillance"
DEFAULT_BATCH = 2000
# Account owners never change; the cache is only bounded so a long-running worker over a
# very large customer base does not grow without end.
MAX_CACHED_OWNERS = 1_000_000
_MARKET_TYPES = frozenset(MARKET_EVENT_TYPES)
# Ledger events read past a batch's end for the other side of a match it cut.
LOOK_AHEAD = 16


@dataclass(frozen=True, slots=True)
class PassResult:
    events: int
    market_events: int
    alerts: int
    folded: int
    # Trading events that did not parse (malformed): skipped, counted, logged by seq.
    skipped: int = 0
    # Whether the engine was rebuilt from the ledger before this pass.
    rebuilt: bool = False
    # Automatic actions the policy applied (or skipped) to the new alerts' accounts.
    actions: int = 0


@dataclass(slots=True)
class _Recorded:
    raised: int = 0
    folded: int = 0
    acted: int = 0
    cancelled: list[Any] = field(default_factory=list)
    # (detector, trigger time) of each alert raised: observed once committed.
    committing: list[tuple[str, int]] = field(default_factory=list)


class OwnerDirectory:
    """Beneficial owners of accounts: their users (through trading's service, cached) and
    the live links (checked each pass, so a new or dismissed link counts from the next; read
    again only when their signature changed, as derived links may be many)."""

    def __init__(self, accounts: AccountService, links: OwnerLinks) -> None:
        self._accounts = accounts
        self.accounts = accounts
        self._links = links
        self._users: dict[str, str] = {}
        self._live: tuple[tuple[int, int, str | None], list[OwnerLink]] | None = None

    async def _live_links(self, session: AsyncSession) -> list[OwnerLink]:
        signature = await self._links.signature(session)
        if self._live is None or self._live[0] != signature:
            self._live = (signature, await self._links.live(session))
        return self._live[1]

    async def resolve(self, session: AsyncSession, account_ids: set[str]) -> BeneficialOwners:
        live = await self._live_links(session)
        wanted = set(account_ids)
        for link in live:
            if link.account_a is not None and link.account_b is not None:
                wanted.update((link.account_a, link.account_b))
        missing = [a for a in wanted if a not in self._users]
        if missing:
            if len(self._users) + len(missing) > MAX_CACHED_OWNERS:
                self._users.clear()
                missing = list(wanted)
            self._users.update(await self._accounts.owners_of(session, sorted(missing)))
        return BeneficialOwners(self._users, owner_links=live)


def with_link_evidence(finding: Finding, owners: BeneficialOwners) -> Finding:
    """The finding, its evidence naming the links that made its owner one group (if any):
    a reviewer sees why two users' trades were judged as one owner's."""
    links = owners.links_of(finding.owner)
    if not links:
        return finding
    return replace(
        finding, evidence={**finding.evidence, "owner_links": [link.summary() for link in links]}
    )


class SurveillanceConsumer:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        params: SurveillanceParameters,
        store: AlertStore,
        owners: OwnerDirectory,
        batch_size: int = DEFAULT_BATCH,
        name: str = CONSUMER_NAME,
        actions: ActionDesk | None = None,
        metrics: SurveillanceMetrics | None = None,
        tick_grace_ns: int = 2 * 1_000_000_000,
    ) -> None:
        self._sessions = sessions
        self._tick_grace = tick_grace_ns
        self._metrics = metrics
        self._clock = clock
        self._params = params
        self._store = store
        self._owners = owners
        self._account_service = owners.accounts
        # Masked account numbers of counterparties, by account id (numbers never change).
        self._numbers: dict[str, str] = {}
        self._batch = batch_size
        self._name = name
        self._actions = actions
        # Told of the orders automatic actions cancelled, after they committed (the server
        # drops them from the venue's books; without it the venue finds them stale).
        self.on_cancelled: Callable[[Sequence[Any]], Awaitable[None]] | None = None
        self._engine: SurveillanceEngine | None = None
        # The checkpoint the engine's state matches (None: unknown, rebuild before use).
        self._covered: int | None = None

    @property
    def batch_size(self) -> int:
        return self._batch

    @property
    def name(self) -> str:
        return self._name

    async def run_once(self) -> PassResult:
        """Judge one batch of events after the checkpoint and move the checkpoint past it."""
        if await self._caught_up():
            return PassResult(0, 0, 0, 0)
        committed: int | None = None
        async with unit_of_work(self._sessions) as session:
            now = self._clock.now_ns()
            mark = await repository.lock_checkpoint(session, self._name, now)
            rebuilt = False
            engine = self._engine
            if engine is None or self._covered != mark.last_seq:
                engine = await self._rebuild(session, mark)
                rebuilt = True
            # Until this pass commits, the engine is ahead of the stored checkpoint.
            self._covered = None
            batch = await events_after(session, after_seq=mark.last_seq, limit=self._batch)
            if not batch:
                self._covered = mark.last_seq
                return PassResult(0, 0, 0, 0, rebuilt=rebuilt)
            events, skipped, owners = await self._market_events(session, batch)
            engine.set_owners(owners.owner)
            found = [finding for event in events for finding in engine.feed(event)]
            recorded = await self._record(session, found, events, owners, batch[-1].seq)
            mark.last_seq = batch[-1].seq
            mark.replay_from_seq, mark.replay_floor_ns = engine.resume_point()
            mark.events_read += len(batch)
            mark.updated_ns = now
            committed = mark.last_seq
        self._covered = committed
        await self._after_commit(recorded)
        return PassResult(
            len(batch),
            len(events),
            recorded.raised,
            recorded.folded,
            skipped,
            rebuilt,
            recorded.acted,
        )

    async def tick(self) -> PassResult:
        """Judge the findings that wait only for time to pass (MAN-2's re-quote test) at the
        clock's time less the grace, without an event: when the stream is idle, a spoof whose
        cancel was the market's last event is still reported. The checkpoint does not move."""
        engine = self._engine
        at = self._clock.now_ns() - self._tick_grace
        if engine is None or not engine.waiting or at <= engine.now_ns:
            return PassResult(0, 0, 0, 0)
        covered = self._covered
        async with unit_of_work(self._sessions) as session:
            mark = await repository.lock_checkpoint(session, self._name, self._clock.now_ns())
            if covered is None or mark.last_seq != covered:
                # Another consumer moved on (or this one is behind): its pass decides.
                return PassResult(0, 0, 0, 0)
            # Until this commits, the engine is ahead of what is recorded.
            self._covered = None
            found = engine.tick(at)
            if not found:
                self._covered = covered
                return PassResult(0, 0, 0, 0)
            owners = await self._owners.resolve(session, {a for f in found for a in f.accounts})
            recorded = await self._record(session, found, [], owners, mark.last_seq)
        self._covered = covered
        await self._after_commit(recorded)
        return PassResult(0, 0, recorded.raised, recorded.folded, 0, False, recorded.acted)

    async def _record(
        self,
        session: AsyncSession,
        found: Sequence[Finding],
        events: Sequence[MarketEvent],
        owners: BeneficialOwners,
        last_seq: int,
    ) -> _Recorded:
        """Record the findings as alerts (with their actions) in the pass's transaction."""
        recorded = _Recorded()
        sides = await self._match_sides(session, events, found, last_seq)
        for raw in found:
            finding = resolve_counterparties(with_link_evidence(raw, owners), sides)
            finding = await self._masked(session, finding)
            alert = await self._store.record(session, finding)
            if alert is None:
                recorded.folded += 1
                continue
            recorded.raised += 1
            recorded.committing.append((alert.detector, finding.trigger_ns))
            if self._actions is not None:
                # In this transaction: the actions commit with the alert, once.
                response = await self._actions.respond(session, alert)
                recorded.acted += len(response.actions)
                recorded.cancelled.extend(response.cancelled)
        return recorded

    async def _after_commit(self, recorded: _Recorded) -> None:
        if recorded.committing and self._metrics is not None:
            # After the commit: the latency is until the alert is there for a reviewer.
            now = self._clock.now_ns()
            for detector, trigger_ns in recorded.committing:
                self._metrics.alert_committed(detector=detector, latency_ns=now - trigger_ns)
        if recorded.cancelled and self.on_cancelled is not None:
            try:
                await self.on_cancelled(recorded.cancelled)
            except Exception:
                # Committed already; a venue that missed the purge finds the orders stale.
                log.exception("surveillance could not drop cancelled orders from the venue")

    async def _match_sides(
        self,
        session: AsyncSession,
        events: Sequence[MarketEvent],
        found: Sequence[Finding],
        last_seq: int,
    ) -> dict[str, list[tuple[str, str]]]:
        """The fills of each internal match the findings name without its other side: from
        this batch, and for a match cut by the batch's end, from the events just after it
        (the trading core records a match's fills together)."""
        wanted: set[str] = set()
        for finding in found:
            wanted |= unresolved_matches(finding.evidence)
        if not wanted:
            return {}
        sides: dict[str, list[tuple[str, str]]] = {}

        def add(items: Sequence[MarketEvent]) -> None:
            for e in items:
                if isinstance(e, Fill) and e.match_id in wanted:
                    sides.setdefault(e.match_id, []).append((e.execution_id, e.account_id))

        add(events)
        if any(len(sides.get(m, ())) < 2 for m in wanted):
            ahead = await events_after(session, after_seq=last_seq, limit=LOOK_AHEAD)
            more, _, _ = await self._market_events(session, ahead)
            add(more)
        return sides

    async def _masked(self, session: AsyncSession, finding: Finding) -> Finding:
        """The finding, its internal counterparties named by masked account number (another
        customer's account is not the reviewer's to read in full from an alert)."""
        accounts = counterparty_accounts(finding.evidence)
        if not accounts:
            return finding
        masked: dict[str, str] = {}
        for account_id in sorted(accounts):
            cached = self._numbers.get(account_id)
            if cached is None:
                try:
                    number = (await self._account_service.get(session, account_id)).number
                except AccountNotFound:
                    number = None
                cached = mask_account_number(number)
                if len(self._numbers) >= MAX_CACHED_OWNERS:
                    self._numbers.clear()
                self._numbers[account_id] = cached
            masked[account_id] = cached
        return mask_counterparties(finding, lambda a: masked.get(a, UNKNOWN))

    async def _caught_up(self) -> bool:
        """Nothing chained after what the engine has read: a read-only look, so that an idle
        stream polling every few hundred milliseconds never takes SQLite's write lock. (If
        another consumer moved the checkpoint, there are events after ours: we go on.)"""
        bind = self._sessions.kw.get("bind")
        if self._covered is None or not isinstance(bind, AsyncEngine):
            return False
        async with bind.connect() as conn:
            await read_only(conn)
            async with conn.begin():
                return not await chained_after(conn, self._covered)

    async def run(self) -> PassResult:
        """Pass until caught up with the chained ledger."""
        events = market = alerts = folded = skipped = acted = 0
        rebuilt = False
        while True:
            result = await self.run_once()
            events += result.events
            market += result.market_events
            alerts += result.alerts
            folded += result.folded
            skipped += result.skipped
            acted += result.actions
            rebuilt = rebuilt or result.rebuilt
            if result.events < self._batch:
                return PassResult(events, market, alerts, folded, skipped, rebuilt, acted)

    async def _market_events(
        self, session: AsyncSession, batch: Sequence[SequencedEvent]
    ) -> tuple[list[MarketEvent], int, BeneficialOwners]:
        documents = [e for e in batch if e.document.get("type") in _MARKET_TYPES]
        accounts = {a for e in documents if (a := event_account(e.document)) is not None}
        # The registered insider accounts too: MAN-4 judges their owners.
        owners = await self._owners.resolve(session, accounts | self._params.frontrun.insiders)
        events: list[MarketEvent] = []
        skipped = 0
        for item in documents:
            try:
                event = parse_market_event(item.seq, item.document, owners.owner)
            except ValueError as exc:
                skipped += 1
                # The seq names the event for an operator; its content stays in the ledger.
                log.warning("surveillance skipped ledger event %d: %s", item.seq, exc)
                continue
            if event is not None:
                events.append(event)
        return events, skipped, owners

    async def _rebuild(
        self, session: AsyncSession, mark: SurveillanceCheckpoint
    ) -> SurveillanceEngine:
        """A new engine in the state the checkpoint's resume point describes."""
        self._covered = None
        engine = SurveillanceEngine(self._params, floor_ns=mark.replay_floor_ns)
        self._engine = engine
        first = mark.replay_from_seq
        if first is None:
            return engine
        replayed = 0
        while first <= mark.last_seq:
            chunk = await events_of_types(
                session,
                MARKET_EVENT_TYPES,
                first_seq=first,
                through_seq=mark.last_seq,
                limit=self._batch,
            )
            if not chunk:
                break
            events, _, owners = await self._market_events(session, chunk)
            engine.set_owners(owners.owner)
            for event in events:
                engine.feed(event)  # found before the restart: already recorded
            replayed += len(chunk)
            first = chunk[-1].seq + 1
        log.info(
            "surveillance engine rebuilt from the ledger",
            extra={"replayed_events": replayed, "checkpoint": mark.last_seq},
        )
        return engine
