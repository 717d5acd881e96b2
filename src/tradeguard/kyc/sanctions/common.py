"""What every sanctions use case needs (clock, ids, ledger, keyring, thresholds, where the
list comes from), the event types, and the errors."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.core.clock import Clock
from tradeguard.core.errors import Conflict, InvalidInput, ServiceUnavailable
from tradeguard.core.ids import IdGenerator
from tradeguard.crypto.keyring import Keyring
from tradeguard.kyc.sanctions.scoring import Thresholds
from tradeguard.ledger.domain import LedgerEvent, Party
from tradeguard.ledger.service import Ledger


class SanctionsEvent(StrEnum):
    LIST_LOADED = "sanctions:list:loaded"
    # A load that shrank the list past the guard, allowed explicitly (who, why, counts).
    LIST_SHRINK_ALLOWED = "sanctions:list:shrink_allowed"
    # A screen found entries like the subject (new hits, or ones already on file). The data
    # holds ids, entry numbers and scores only: never the screened name.
    SUBJECT_SCREENED = "sanctions:subject:screened"
    HIT_CLEARED = "sanctions:hit:cleared"
    HIT_CONFIRMED = "sanctions:hit:confirmed"
    RESCREEN_STARTED = "sanctions:rescreen:started"
    RESCREEN_FINISHED = "sanctions:rescreen:finished"


class HitStatus(StrEnum):
    OPEN = "open"
    CLEARED = "cleared"  # a reviewer found it a false positive
    CONFIRMED = "confirmed"  # a reviewer found it the listed party: the subject is blocked


class SanctionsInputError(InvalidInput):
    """Bad sanctions input (422): the message says what to change."""


class ListRefused(InvalidInput):
    """A list file that cannot be loaded (422): which file and line, and why. Nothing was
    loaded."""

    slug = "sanctions-list-refused"
    title = "The sanctions list was refused"


class ListShrinkRefused(Conflict):
    """A load that would replace the current list with a much smaller one, or a strict
    subset of it (409). Nothing was loaded; allow it explicitly, with a reason."""

    slug = "sanctions-list-shrink-refused"
    title = "The sanctions list load would shrink the current list"


class ListUnavailable(ServiceUnavailable):
    """The configured list source could not be read (503)."""

    slug = "sanctions-list-unavailable"
    title = "The sanctions list could not be fetched"


class NoListLoaded(ServiceUnavailable):
    """Screening asked before any list version was loaded (503)."""

    slug = "sanctions-no-list"
    title = "No sanctions list is loaded"

    def __init__(self) -> None:
        super().__init__(
            "no sanctions list version is loaded: load one with `tradeguard sanctions load` "
            "or POST /api/v1/admin/sanctions/versions"
        )


class HitConflict(Conflict):
    """The hit is no longer open (409)."""


@dataclass(slots=True)
class SanctionsDeps:
    clock: Clock
    ids: IdGenerator
    ledger: Ledger
    keyring: Keyring
    thresholds: Thresholds
    # The configured list source (directory or URL prefix); None: not configured.
    source: str | None
    max_file_bytes: int
    fetch_timeout_seconds: float
    # Largest drop in entries a load may make without allow_shrink (0.10: 10%).
    max_shrink_fraction: float = 0.10

    async def audit(
        self,
        session: AsyncSession,
        type_: str,
        *,
        actor: Party,
        subject: Party | None = None,
        data: dict[str, object] | None = None,
        request_id: str | None = None,
    ) -> None:
        await self.ledger.append(
            session,
            LedgerEvent(
                type=type_, actor=actor, subject=subject, data=data or {}, request_id=request_id
            ),
        )
