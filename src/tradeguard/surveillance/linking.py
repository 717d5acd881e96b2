"""Derives beneficial-owner links from sign-ins and shared bank accounts: a periodic job of
the surveillance worker.

Why a periodic job, not a hook on each sign-in: identity sits below surveillance (it may not
call it), and a network link is a judgement over a whole network's sign-ins across the
lookback (how many distinct users it has, whether two users met on it on separate
occasions), not over one sign-in. The job reads identity's pseudonymised sign-ins and
shared devices through identity's service (never its tables), and the bank accounts two
customers confirmed through funds' service, applies the pure rules of
surveillance/linkage.py, and records the links not recorded before, each with its ledger
event, in one transaction. A dismissed link is recorded already, so it stays dismissed.

Several workers may run it: each pass locks a checkpoint row of its own and skips when
another worker derived within the interval. A link found now counts from the stream's next
pass (surveillance/consumer.py reads the live links every pass).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tradeguard.core.clock import Clock
from tradeguard.db.engine import reading, unit_of_work
from tradeguard.identity.service import SignInSignals
from tradeguard.surveillance import repository
from tradeguard.surveillance.linkage import (
    DEVICE_SCAN_MAX_USERS,
    LinkParameters,
    device_links,
    network_links,
)
from tradeguard.surveillance.service import BankAccountLink, OwnerLinks

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "owner-links"


@dataclass(frozen=True, slots=True)
class DerivationResult:
    created: int
    sign_ins: int
    networks: int
    # Networks ignored because more traders than allowed signed in from them.
    shared_networks: int
    shared_devices: int
    # False when another worker derived within the interval and this pass did nothing.
    ran: bool = True


class SharedBankAccounts(Protocol):
    """Funds' view of bank accounts confirmed by two customers: (an account of one, an
    account of the other, evidence without the number)."""

    async def shared_account_links(
        self, session: AsyncSession
    ) -> Sequence[tuple[str, str, dict[str, Any]]]: ...


class ActiveTraders(Protocol):
    """Trading's view of which users have traded (an account of theirs has executions)."""

    async def traders_among(self, session: AsyncSession, user_ids: Sequence[str]) -> set[str]: ...


class LinkDeriver:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        links: OwnerLinks,
        signals: SignInSignals,
        traders: ActiveTraders,
        params: LinkParameters,
        min_interval_ns: int = 0,
        bank_accounts: SharedBankAccounts | None = None,
    ) -> None:
        self._sessions = sessions
        self._bank_accounts = bank_accounts
        self._clock = clock
        self._links = links
        self._signals = signals
        self._traders = traders
        self.params = params
        self._min_interval = min_interval_ns

    async def run_once(self, *, force: bool = False) -> DerivationResult:
        """Derive and record new links; `force`: even if another worker just did.

        The sign-ins are read in a read-only transaction (on SQLite it takes no write lock,
        so order entry never waits behind a month of sign-ins); only the recording of the
        new links is a write transaction, short, serialised across workers by the job's
        checkpoint row, and recording is idempotent (a pair linked already is left).
        """
        params = self.params
        async with reading(self._sessions) as session:
            now = self._clock.now_ns()
            mark = await repository.checkpoint(session, CHECKPOINT_NAME)
            if (
                not force
                and mark is not None
                and mark.events_read
                and now - mark.updated_ns < self._min_interval
            ):
                return DerivationResult(0, 0, 0, 0, 0, ran=False)
            sign_ins = await self._signals.network_sign_ins(
                session,
                since_ns=now - params.lookback_ns,
                until_ns=now + 1,
                ipv4_prefix=params.ipv4_prefix,
                ipv6_prefix=params.ipv6_prefix,
            )
            # Every fingerprint a few users share (up to a bound on what a pass reads); the
            # crowd cap counts only the traders among them (surveillance/linkage.py).
            devices = await self._signals.shared_devices(session, max_users=DEVICE_SCAN_MAX_USERS)
            users = {s.user_id for s in sign_ins} | {d.user_id for d in devices}
            traders = await self._traders.traders_among(session, sorted(users))
            banks = (
                await self._bank_accounts.shared_account_links(session)
                if self._bank_accounts is not None
                else []
            )
        report = network_links(sign_ins, params, traders=traders)
        derived = [*device_links(devices, params, traders=traders), *report.links]
        async with unit_of_work(self._sessions) as session:
            # The row serialises recording across workers (two inserting one link would
            # collide on its unique constraint); its time says when the last pass ran.
            mark = await repository.lock_checkpoint(session, CHECKPOINT_NAME, now)
            created = await self._links.record_derived(session, derived)
            created += await self._links.record_bank_account_links(
                session, [BankAccountLink(a, b, evidence) for a, b, evidence in banks]
            )
            mark.events_read += 1  # passes run
            mark.updated_ns = max(mark.updated_ns, now)
        result = DerivationResult(
            created=len(created),
            sign_ins=len(sign_ins),
            networks=report.networks,
            shared_networks=report.shared_networks,
            shared_devices=len({d.device_key for d in devices}),
        )
        # Counts only: no user, network or device is named in the log.
        log.info(
            "owner links derived",
            extra={
                "links_created": result.created,
                "sign_ins_read": result.sign_ins,
                "networks": result.networks,
                "shared_networks_ignored": result.shared_networks,
            },
        )
        return result
