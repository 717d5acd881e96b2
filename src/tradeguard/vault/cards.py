"""Customers' cards on the platform's side, and detokenization for the payment role (PCI-2).

The platform keeps a token, the brand, the last four digits, the expiry and the vault's
fingerprint (vault/cards_models.py); the card number goes to the vault and never comes back
here except to the payment role. Every change and every detokenization, allowed or
refused, is a ledger event naming who, the token and the outcome, never a PAN.

Adding and removing a card span two databases (the vault's and the platform's), so these
use cases own both units of work: the vault's commits first, and a failure on the
platform's side undoes it (the token is forgotten), so no PAN stays in the vault without a
card on a profile.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.core.clock import Clock
from tradeguard.core.errors import Conflict, NotFound
from tradeguard.core.ids import IdGenerator
from tradeguard.ledger.domain import LedgerEvent, Party
from tradeguard.ledger.service import Ledger
from tradeguard.vault.cards_models import CustomerCardRow
from tradeguard.vault.client import VaultClient
from tradeguard.vault.domain import (
    DETOKENIZE_PERMISSION,
    AuthorizationCard,
    CardBrand,
    Expiry,
    RevealedCard,
    TokenizedCard,
    TokenNotFound,
    VaultAccessDenied,
    loggable_token,
    mask_card,
)

log = logging.getLogger(__name__)

UnitOfWork = Callable[[], AbstractAsyncContextManager[AsyncSession]]
MAX_CARDS_PER_CUSTOMER: Final = 10
PAYMENT_SERVICE: Final = Party("service", "payments")


class VaultEvent(StrEnum):
    CARD_ADDED = "vault:card:added"
    CARD_REMOVED = "vault:card:removed"
    TOKEN_DETOKENIZED = "vault:token:detokenized"  # noqa: S105 - an event type
    TOKEN_DENIED = "vault:token:detokenize_denied"  # noqa: S105 - an event type


class CardAlreadyAdded(Conflict):
    slug = "card-already-added"
    title = "This card is already on the profile"


class TooManyCards(Conflict):
    slug = "too-many-cards"
    title = "The profile holds the most cards allowed"


class CardNotFound(NotFound):
    slug = "card-not-found"
    title = "No such card on this profile"


@dataclass(frozen=True, slots=True)
class CardCaller:
    """Who asks to detokenize: a party and the permissions it holds. People never hold
    `vault:detokenize` (no role of access/domain.py carries it); the payment service does."""

    party: Party
    permissions: frozenset[str]

    @classmethod
    def payment_service(cls) -> CardCaller:
        return cls(PAYMENT_SERVICE, frozenset({DETOKENIZE_PERMISSION}))

    @property
    def label(self) -> str:
        return f"{self.party.kind}:{self.party.id}"


@dataclass(frozen=True, slots=True)
class StoredCard:
    id: str
    brand: CardBrand
    last4: str
    expiry: Expiry
    created_ns: int
    token: str

    @property
    def masked(self) -> str:
        return mask_card(self.last4)


def _stored(row: CustomerCardRow) -> StoredCard:
    return StoredCard(
        row.id,
        CardBrand(row.brand),
        row.last4,
        Expiry(row.expiry_year, row.expiry_month),
        row.created_ns,
        row.token,
    )


class CustomerCards:
    def __init__(
        self,
        *,
        client: VaultClient,
        payment_client: VaultClient | None,
        ledger: Ledger,
        unit_of_work: UnitOfWork,
        clock: Clock,
        ids: IdGenerator,
    ) -> None:
        self.client = client
        self.payment_client = payment_client
        self.ledger = ledger
        self.unit_of_work = unit_of_work
        self.clock = clock
        self.ids = ids

    # -- a customer's cards -----------------------------------------------------------------

    async def add(
        self,
        *,
        user_id: str,
        pan: str,
        expiry_month: int,
        expiry_year: int,
        request_id: str | None,
    ) -> StoredCard:
        """Tokenize in the vault, then record the token on the customer's profile."""
        who = f"user:{user_id}"
        async with self.unit_of_work() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(CustomerCardRow)
                .where(CustomerCardRow.user_id == user_id)
            )
        if (count or 0) >= MAX_CARDS_PER_CUSTOMER:
            raise TooManyCards(f"a profile holds at most {MAX_CARDS_PER_CUSTOMER} cards")
        tokenized = await self.client.tokenize(
            pan=pan,
            expiry_month=expiry_month,
            expiry_year=expiry_year,
            on_behalf_of=who,
            request_id=request_id,
        )
        try:
            async with self.unit_of_work() as session:
                return await self._record(session, user_id, tokenized, request_id)
        except BaseException:
            await self._discard(tokenized.token, who, request_id)
            raise

    async def _record(
        self, session: AsyncSession, user_id: str, tokenized: TokenizedCard, request_id: str | None
    ) -> StoredCard:
        fingerprint = bytes.fromhex(tokenized.fingerprint)
        duplicate = await session.scalar(
            select(CustomerCardRow.id).where(
                CustomerCardRow.user_id == user_id, CustomerCardRow.fingerprint == fingerprint
            )
        )
        if duplicate is not None:
            raise CardAlreadyAdded("this card is already on your profile", card_id=str(duplicate))
        row = CustomerCardRow(
            id=self.ids.new_str(),
            user_id=user_id,
            token=tokenized.token,
            brand=tokenized.brand.value,
            last4=tokenized.last4,
            expiry_month=tokenized.expiry.month,
            expiry_year=tokenized.expiry.year,
            fingerprint=fingerprint,
            created_ns=self.clock.now_ns(),
        )
        session.add(row)
        try:
            await session.flush()
        except IntegrityError:
            # Another request added the same card at the same moment (the unique index).
            raise CardAlreadyAdded("this card is already on your profile") from None
        await self.ledger.append(
            session,
            LedgerEvent(
                type=VaultEvent.CARD_ADDED,
                actor=Party("user", user_id),
                subject=Party("user", user_id),
                request_id=request_id,
                data={
                    "card_id": row.id,
                    "token": tokenized.token,
                    "brand": tokenized.brand.value,
                    "last4": tokenized.last4,
                },
            ),
        )
        return _stored(row)

    async def _discard(self, token: str, who: str, request_id: str | None) -> None:
        try:
            await self.client.forget(token=token, on_behalf_of=who, request_id=request_id)
        except Exception as exc:
            # The token stays in the vault unreferenced: reported by count, never by value.
            log.warning(
                "a card token could not be forgotten after a failed add",
                extra={"error": type(exc).__name__},
            )

    async def cards_of(self, session: AsyncSession, *, user_id: str) -> list[StoredCard]:
        rows = await session.execute(
            select(CustomerCardRow)
            .where(CustomerCardRow.user_id == user_id)
            .order_by(CustomerCardRow.created_ns, CustomerCardRow.id)
        )
        return [_stored(row) for row in rows.scalars()]

    async def remove(self, *, user_id: str, card_id: str, request_id: str | None) -> None:
        """Forget the card in the vault first (idempotent), then drop it from the profile:
        a failure half-way leaves a card that cannot be used and can be removed again,
        never a PAN in the vault that no profile points to."""
        async with self.unit_of_work() as session:
            row = await session.get(CustomerCardRow, card_id)
            token = row.token if row is not None and row.user_id == user_id else None
        if token is None:
            # Another customer's card is as absent as one that does not exist.
            raise CardNotFound
        await self.client.forget(token=token, on_behalf_of=f"user:{user_id}", request_id=request_id)
        async with self.unit_of_work() as session:
            await session.execute(
                delete(CustomerCardRow).where(
                    CustomerCardRow.id == card_id, CustomerCardRow.user_id == user_id
                )
            )
            await self.ledger.append(
                session,
                LedgerEvent(
                    type=VaultEvent.CARD_REMOVED,
                    actor=Party("user", user_id),
                    subject=Party("user", user_id),
                    request_id=request_id,
                    data={"card_id": card_id, "token": token},
                ),
            )

    async def same_card_elsewhere(self, session: AsyncSession, *, card_id: str) -> list[str]:
        """Other customers holding the same card (by fingerprint): a fraud signal, found
        without detokenizing."""
        row = await session.get(CustomerCardRow, card_id)
        if row is None:
            return []
        found = await session.execute(
            select(CustomerCardRow.user_id)
            .where(
                CustomerCardRow.fingerprint == row.fingerprint,
                CustomerCardRow.user_id != row.user_id,
            )
            .distinct()
        )
        return sorted(found.scalars())

    # -- the payment role -----------------------------------------------------------------

    async def _deny(self, caller: CardCaller, token: str, request_id: str | None) -> None:
        async with self.unit_of_work() as session:
            await self.ledger.append(
                session,
                LedgerEvent(
                    type=VaultEvent.TOKEN_DENIED,
                    actor=caller.party,
                    request_id=request_id,
                    data={
                        "token": loggable_token(token, confirmed=False),
                        "permission": DETOKENIZE_PERMISSION,
                        "allowed": False,
                    },
                ),
            )

    async def _allowed(
        self, caller: CardCaller, token: str, purpose: str, request_id: str | None
    ) -> None:
        async with self.unit_of_work() as session:
            await self.ledger.append(
                session,
                LedgerEvent(
                    type=VaultEvent.TOKEN_DETOKENIZED,
                    actor=caller.party,
                    request_id=request_id,
                    data={
                        "token": token,
                        "purpose": purpose,
                        "permission": DETOKENIZE_PERMISSION,
                        "allowed": True,
                    },
                ),
            )

    def _payment_client(self, caller: CardCaller) -> VaultClient | None:
        if DETOKENIZE_PERMISSION not in caller.permissions:
            return None
        return self.payment_client

    async def detokenize(
        self, *, caller: CardCaller, token: str, request_id: str | None = None
    ) -> RevealedCard:
        """The card behind a token, for a caller holding `vault:detokenize` (RBAC-5: checked
        here, and again by the vault against its client's role). Audited either way."""
        client = self._payment_client(caller)
        if client is None:
            await self._deny(caller, token, request_id)
            raise VaultAccessDenied("detokenizing needs the vault:detokenize permission")
        try:
            card = await client.detokenize(
                token=token, on_behalf_of=caller.label, request_id=request_id
            )
        except (VaultAccessDenied, TokenNotFound):
            await self._deny(caller, token, request_id)
            raise
        await self._allowed(caller, card.token, "detokenize", request_id)
        return card

    async def authorization_card(
        self, *, caller: CardCaller, token: str, cvv: str, request_id: str | None = None
    ) -> AuthorizationCard:
        """Card, expiry and security code for one authorization (issue #11 hands it to the
        processor): the code is checked and passed through, never stored or logged."""
        client = self._payment_client(caller)
        if client is None:
            await self._deny(caller, token, request_id)
            raise VaultAccessDenied("card authorizations need the vault:detokenize permission")
        try:
            prepared = await client.authorization_card(
                token=token, cvv=cvv, on_behalf_of=caller.label, request_id=request_id
            )
        except (VaultAccessDenied, TokenNotFound):
            await self._deny(caller, token, request_id)
            raise
        await self._allowed(caller, prepared.card.token, "authorization", request_id)
        return prepared
