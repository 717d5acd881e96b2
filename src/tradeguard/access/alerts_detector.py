"""The staff access anomaly detector (IAC-4): tails the ledger by sequence number behind a
stored checkpoint and turns staff access events into alerts.

One pass is one transaction: lock the checkpoint, read the next batch of chained events,
judge the staff members' observations (with each one's recent events before the checkpoint
as context), record alerts, remember the networks seen, move the checkpoint. The alerts, their
ledger events, their emails and the checkpoint commit together, so a restart (or a crash
mid-pass) neither loses nor repeats an alert. Detectors in several processes take turns on
the checkpoint row.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tradeguard.access import alerts_repository as repository
from tradeguard.access.alerts import AlertDesk
from tradeguard.access.alerts_models import AccessStaffNetwork
from tradeguard.access.anomalies import (
    Observation,
    Thresholds,
    evaluate,
    observe,
    referenced_user_ids,
)
from tradeguard.access.domain import STAFF_ROLES
from tradeguard.core.clock import NS_PER_SECOND, Clock
from tradeguard.crypto import peppers
from tradeguard.crypto.keyring import FieldKeyring
from tradeguard.db.engine import unit_of_work
from tradeguard.identity.service import AccountService
from tradeguard.ledger.personal.keys import SubjectKeys
from tradeguard.ledger.service import (
    SequencedEvent,
    actors_after,
    events_of_actors,
    events_of_actors_between,
)

DETECTOR_NAME = "access-anomalies"
DEFAULT_BATCH = 500
NETWORK_KEY_PURPOSE = peppers.ALERTS_NETWORK_PEPPER
# Roles are looked up once a minute per user: a promotion to staff (or a departure) reaches
# the detector within that.
ROLE_CACHE_NS = 60 * NS_PER_SECOND
MAX_CACHED_ROLES = 100_000


class StaffDirectory:
    """Which user ids belong to staff, through identity's service, cached per process."""

    def __init__(self, accounts: AccountService, clock: Clock) -> None:
        self._accounts = accounts
        self._clock = clock
        self._entries: dict[str, tuple[int, bool]] = {}

    async def staff_among(self, session: AsyncSession, user_ids: Iterable[str]) -> frozenset[str]:
        now = self._clock.monotonic_ns()
        wanted = set(user_ids)
        if len(self._entries) + len(wanted) > MAX_CACHED_ROLES:
            self._entries.clear()
        missing = [u for u in wanted if (e := self._entries.get(u)) is None or e[0] < now]
        if missing:
            roles = await self._accounts.roles_of(session, missing)
            for user_id in missing:
                role = roles.get(user_id)
                self._entries[user_id] = (now + ROLE_CACHE_NS, role in STAFF_ROLES)
        return frozenset(u for u in wanted if self._entries[u][1])


@dataclass(frozen=True, slots=True)
class ScanResult:
    events: int
    observations: int
    alerts: int


class AnomalyDetector:
    """Reads the ledger behind its checkpoint and records access alerts."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        desk: AlertDesk,
        directory: StaffDirectory,
        limits: Thresholds,
        keyring: FieldKeyring,
        subject_keys: SubjectKeys,
        batch_size: int = DEFAULT_BATCH,
        name: str = DETECTOR_NAME,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._desk = desk
        self._directory = directory
        self._limits = limits
        self._batch = batch_size
        self._name = name
        # Read on first use: under a KMS the pepper is a stored secret, known only once the
        # keyring has read its table (after this object is built).
        self._keyring = keyring
        self._network_pepper: bytes | None = None
        # Opens the events' personal sections: the client address of a staff access.
        self._subject_keys = subject_keys

    @property
    def batch_size(self) -> int:
        return self._batch

    def network_key(self, network: str) -> str:
        # Keyed, so the table of staff networks cannot be reversed by hashing address ranges.
        if self._network_pepper is None:
            self._network_pepper = self._keyring.derive_secret(NETWORK_KEY_PURPOSE)
        return hmac.new(self._network_pepper, network.encode("ascii"), hashlib.sha256).hexdigest()

    async def scan_once(self) -> ScanResult:
        """Judge one batch of events after the checkpoint and move the checkpoint past it."""
        async with unit_of_work(self._sessions) as session:
            now = self._clock.now_ns()
            mark = await repository.lock_checkpoint(session, self._name, now)
            # Only a staff member's own events are observed (anomalies.observe): the batch's
            # actors are read first, and only staff members' events are read and parsed. Most
            # events are customers' (two an order), so most batches parse none.
            actors = await actors_after(session, after_seq=mark.last_seq, limit=self._batch)
            if not actors:
                return ScanResult(0, 0, 0)
            staff = await self._directory.staff_among(session, {a for _, a in actors})
            batch = await events_of_actors_between(
                session,
                sorted(staff),
                first_seq=actors[0][0],
                last_seq=actors[-1][0],
                keys=self._subject_keys,
            )
            observations = await self._observe(session, batch) if batch else []
            raised = 0
            if observations:
                raised = await self._judge(session, observations, through_seq=mark.last_seq)
            mark.last_seq = actors[-1][0]
            mark.updated_ns = now
            return ScanResult(len(actors), len(observations), raised)

    async def scan(self) -> ScanResult:
        """Scan until caught up with the chained ledger."""
        events = observations = alerts = 0
        while True:
            result = await self.scan_once()
            events += result.events
            observations += result.observations
            alerts += result.alerts
            if result.events < self._batch:
                return ScanResult(events, observations, alerts)

    async def _observe(
        self, session: AsyncSession, events: list[SequencedEvent]
    ) -> list[Observation]:
        referenced: set[str] = set()
        for event in events:
            referenced |= referenced_user_ids(event.document)
        staff = await self._directory.staff_among(session, referenced)
        if not staff:
            return []
        found = []
        for event in events:
            seen = observe(event.seq, event.document, staff=staff, network_key=self.network_key)
            if seen is not None:
                found.append(seen)
        return found

    async def _judge(
        self, session: AsyncSession, observations: list[Observation], *, through_seq: int
    ) -> int:
        limits = self._limits
        reach = max(limits.customers_window_ns, limits.denials_window_ns)
        staff_ids = sorted({o.staff_id for o in observations})
        # Context: each staff member's events already judged, as far back as a window reaches.
        earlier = await events_of_actors(
            session,
            staff_ids,
            since_ns=min(o.at_ns for o in observations) - reach,
            through_seq=through_seq,
            keys=self._subject_keys,
        )
        histories: dict[str, deque[Observation]] = {s: deque() for s in staff_ids}
        for seen in await self._observe(session, earlier):
            if seen.staff_id in histories:
                histories[seen.staff_id].append(seen)
        stored = await repository.networks_of(session, staff_ids)
        networks = {s: {k: r.last_seen_ns for k, r in stored.get(s, {}).items()} for s in staff_ids}
        first_seen: dict[tuple[str, str], int] = {}
        raised = 0
        for latest in observations:
            history = histories[latest.staff_id]
            history.append(latest)
            # Bounded memory: nothing older than the longest window can matter any more.
            while history and history[0].at_ns < latest.at_ns - reach:
                history.popleft()
            known = networks[latest.staff_id]
            for finding in evaluate(list(history), known, limits):
                if await self._desk.record(session, finding) is not None:
                    raised += 1
            if latest.network is not None:
                known[latest.network] = max(known.get(latest.network, 0), latest.at_ns)
                first_seen.setdefault((latest.staff_id, latest.network), latest.at_ns)
        self._remember_networks(session, stored, networks, first_seen)
        return raised

    @staticmethod
    def _remember_networks(
        session: AsyncSession,
        stored: dict[str, dict[str, AccessStaffNetwork]],
        networks: dict[str, dict[str, int]],
        first_seen: dict[tuple[str, str], int],
    ) -> None:
        for staff_id, seen in networks.items():
            rows = stored.get(staff_id, {})
            for key, last_seen in seen.items():
                row = rows.get(key)
                if row is None:
                    repository.add(
                        session,
                        AccessStaffNetwork(
                            staff_user_id=staff_id,
                            network_key=key,
                            first_seen_ns=first_seen.get((staff_id, key), last_seen),
                            last_seen_ns=last_seen,
                        ),
                    )
                elif last_seen > row.last_seen_ns:
                    row.last_seen_ns = last_seen
