"""What every onboarding use case needs: clock, ids, ledger, keyring, the customer directory,
the mail outbox, trading's accounts (to open a customer's pending accounts on approval), and
the screening and identity-evidence services of the other KYC parts (injected: they are
built beside this package; kyc/contracts.py)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.core.clock import Clock
from tradeguard.core.errors import Conflict, NotFound
from tradeguard.core.ids import IdGenerator
from tradeguard.crypto.keyring import Keyring
from tradeguard.identity.service import AccountService as IdentityAccounts
from tradeguard.kyc.contracts import IdentityEvidenceSource, Screener
from tradeguard.ledger.domain import LedgerEvent, Party
from tradeguard.ledger.service import Ledger
from tradeguard.notify.service import Notifier
from tradeguard.trading.accounts import AccountService as TradingAccounts


class ApplicationConflict(Conflict):
    """The application is not in a state that allows this (409)."""

    slug = "application-conflict"
    title = "The application does not allow this now"


class ApprovalBlocked(Conflict):
    """Approval needs something first (409); `blockers` lists what, as stable codes."""

    slug = "approval-blocked"
    title = "The application cannot be approved yet"

    def __init__(self, blockers: list[str]) -> None:
        super().__init__("not yet: " + ", ".join(blockers), blockers=blockers)
        self.blockers = blockers


class ApplicationNotFound(NotFound):
    pass


@dataclass(slots=True)
class OnboardingDeps:
    clock: Clock
    ids: IdGenerator
    ledger: Ledger
    keyring: Keyring
    users: IdentityAccounts
    notifier: Notifier
    trading: TradingAccounts
    min_age: int
    terms_version: str
    high_risk_countries: Collection[str]
    # The other KYC parts (kyc/sanctions, kyc/documents): None until the app wires them, and
    # then approval stays blocked (no screening, no evidence: nothing is verified).
    screener: Screener | None = None
    evidence: IdentityEvidenceSource | None = None

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
