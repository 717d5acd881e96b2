"""The vault proper (PCI-2): tokenize, describe, detokenize, forget, on the vault database.

This is what runs inside the vault boundary: in the platform's process by default, or in
`tradeguard vault serve` on its own. It holds the vault database's credentials and the
vault's key-encrypting key, and nothing of the platform's. Every call, allowed or refused,
is written to the vault's own access log (the platform's ledger records it too, on the
platform's side: vault/cards.py); a refused call commits its log row on its own before the
error.

Keys: the vault keeps its own key table (same layout as the platform's, crypto/models.py)
with only the CARD_VAULT class, wrapped by the vault's own key-encrypting key (its master
key file, or its own KMS key). The data key seals PANs; the class's separate blind-index key
gives card fingerprints. `keys` manages them with the platform's key service, scoped to the
vault and recorded in the vault's access log (vault/keys.py): rotation (scheduled, PCI-4),
rewrap of stored PANs, retirement, and re-wrap under a new key-encrypting key.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tradeguard.core.clock import Clock
from tradeguard.core.errors import ServiceUnavailable, TradeguardError
from tradeguard.core.ids import IdGenerator
from tradeguard.crypto.catalogue import Location
from tradeguard.crypto.classes import DataClass
from tradeguard.crypto.columns import keyring_field
from tradeguard.crypto.keyring import Keyring
from tradeguard.crypto.providers import KekProvider
from tradeguard.crypto.service import VAULT_KEYS, KeyManagement, KeyPolicy
from tradeguard.db.engine import session_factory, unit_of_work
from tradeguard.vault import repository
from tradeguard.vault.domain import (
    MAX_TOKEN_DRAWS,
    AuthorizationCard,
    CardBrand,
    CardSecret,
    Expiry,
    RevealedCard,
    TokenFormat,
    TokenizedCard,
    TokenNotFound,
    VaultAccessDenied,
    VaultOperation,
    VaultRole,
    loggable_token,
    may,
    new_token,
    parse_card_secret,
    parse_expiry,
    parse_pan,
    token_shape_valid,
)
from tradeguard.vault.keys import VaultKeyAudit
from tradeguard.vault.migrate import current_revision, head_revision
from tradeguard.vault.models import CARD_TABLE, PAN_COLUMN, VaultCardRow

log = logging.getLogger(__name__)

CARD_CLASS: Final = DataClass.CARD_VAULT
# The column a vault rewrap walks (crypto/catalogue.py shape): the vault's own catalogue,
# never the platform's.
VAULT_LOCATIONS: Final = (
    Location(CARD_CLASS, CARD_TABLE, PAN_COLUMN, "token", lambda row: str(row["token"]).encode()),
)
MAX_PARTY_CHARS: Final = 120
# An access whose token was found but whose other input the vault refused (a security code
# of the wrong shape for the card): nothing was revealed.
INVALID: Final = "invalid"
# Outcomes after which the token is known to be one (a digit-shaped token may be logged).
FOUND_OUTCOMES: Final = frozenset({"allowed", INVALID})
MAX_REQUEST_ID_CHARS: Final = 64


class VaultUnavailable(ServiceUnavailable):
    slug = "vault-unavailable"
    title = "The card vault is not available"


class VaultNotMigrated(VaultUnavailable):
    slug = "vault-not-migrated"
    title = "The vault database is not at the current schema"


@dataclass(frozen=True, slots=True)
class VaultCaller:
    """Who calls the vault: its vault role, and on whose behalf (`kind:id`, as the
    platform states it; recorded, not trusted for authorization)."""

    role: VaultRole
    on_behalf_of: str
    request_id: str | None = None

    def bounded(self) -> VaultCaller:
        return VaultCaller(
            self.role,
            self.on_behalf_of[:MAX_PARTY_CHARS],
            None if self.request_id is None else self.request_id[:MAX_REQUEST_ID_CHARS],
        )


def fingerprint_input(digits: str) -> str:
    # Domain-separated, so the index key could never be asked for the HMAC of a PAN under
    # another purpose's label.
    return "card-pan-fingerprint:v1:" + digits


class CardVaultStore:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        keyring: Keyring,
        clock: Clock,
        ids: IdGenerator,
        default_format: TokenFormat = TokenFormat.OPAQUE,
        owns_engine: bool = False,
        policy: KeyPolicy | None = None,
    ) -> None:
        self.engine = engine
        self.sessions: async_sessionmaker[AsyncSession] = session_factory(engine)
        self.keyring = keyring
        self.clock = clock
        self.ids = ids
        self.default_format = default_format
        self._owns_engine = owns_engine
        # The vault's key operations: the platform's key service on the vault's key table,
        # recorded in the vault's access log.
        self.keys = KeyManagement(
            keyring,
            ledger=VaultKeyAudit(clock=clock, ids=ids),
            policy=policy,
            scope=VAULT_KEYS,
        )

    @classmethod
    def open_with(
        cls,
        *,
        engine: AsyncEngine,
        provider: KekProvider,
        clock: Clock,
        ids: IdGenerator,
        default_format: TokenFormat = TokenFormat.OPAQUE,
        owns_engine: bool = False,
        policy: KeyPolicy | None = None,
        also: Iterable[KekProvider] = (),
    ) -> CardVaultStore:
        """The store with `provider` wrapping new keys (`also`: KEKs that only unwrap, the
        other side of a master-key rotation under way)."""
        keyring = Keyring(provider, clock=clock, catalogue=VAULT_LOCATIONS, also=also)
        return cls(
            engine=engine,
            keyring=keyring,
            clock=clock,
            ids=ids,
            default_format=default_format,
            owns_engine=owns_engine,
            policy=policy,
        )

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[AsyncSession]:
        async with unit_of_work(self.sessions) as session:
            yield session

    async def check_schema(self) -> None:
        """Refuse a vault database behind this code's migrations (its key operations and
        access log need the current schema)."""
        current, head = await current_revision(self.engine), head_revision()
        if current != head:
            raise VaultNotMigrated(
                f"the vault database is at {current or 'no revision'}, not {head}: "
                "run `tradeguard vault upgrade` first"
            )

    async def start(self) -> None:
        """Check the schema, make the vault's first keys if there are none (recorded), then
        read them."""
        await self.check_schema()
        async with self.unit_of_work() as session:
            await self.keys.ensure_keys(session)
        await self.refresh_keys()

    async def refresh_keys(self) -> None:
        async with self.sessions() as session:
            await self.keyring.refresh(session)

    async def close(self) -> None:
        if self._owns_engine:
            await self.engine.dispose()

    # -- logging ------------------------------------------------------------------------

    async def _log(
        self,
        session: AsyncSession,
        caller: VaultCaller,
        operation: str,
        token: str | None,
        outcome: str,
    ) -> None:
        bounded = caller.bounded()
        await repository.log_access(
            session,
            {
                "id": self.ids.new_str(),
                "occurred_ns": self.clock.now_ns(),
                "operation": operation,
                "role": bounded.role.value,
                "on_behalf_of": bounded.on_behalf_of,
                # A caller that sends a PAN where a token belongs must not get it written
                # into the log: digit-shaped values only once found as tokens.
                "token": loggable_token(token, confirmed=outcome in FOUND_OUTCOMES),
                "outcome": outcome,
                "request_id": bounded.request_id,
            },
        )

    async def _refuse(
        self, caller: VaultCaller, operation: VaultOperation, token: str | None
    ) -> VaultAccessDenied:
        async with self.unit_of_work() as session:
            await self._log(session, caller, operation.value, token, "denied")
        return VaultAccessDenied(
            f"the vault role {caller.role.value} may not {operation.value} cards"
        )

    async def _check(
        self, caller: VaultCaller, operation: VaultOperation, token: str | None = None
    ) -> None:
        if not may(caller.role, operation):
            raise await self._refuse(caller, operation, token)

    def _ready(self) -> Keyring:
        if not self.keyring.loaded:
            raise VaultUnavailable("the vault has not read its keys yet")
        return self.keyring

    # -- operations ----------------------------------------------------------------------

    def fingerprint(self, digits: str) -> bytes:
        return self._ready().blind_index(CARD_CLASS, fingerprint_input(digits))

    async def tokenize(
        self,
        caller: VaultCaller,
        *,
        pan: str,
        expiry_month: int,
        expiry_year: int,
        token_format: TokenFormat | None = None,
    ) -> TokenizedCard:
        """Validate and store a card; a new random token each time (the fingerprint says
        whether the card was seen before)."""
        await self._check(caller, VaultOperation.TOKENIZE)
        card = parse_pan(pan)
        expiry = parse_expiry(expiry_month, expiry_year, now_ns=self.clock.now_ns())
        keyring = self._ready()
        fingerprint = self.fingerprint(card.digits)
        chosen = token_format or self.default_format
        bounded = caller.bounded()
        async with self.unit_of_work() as session:
            for _ in range(MAX_TOKEN_DRAWS):
                token = new_token(card, chosen)
                if chosen is not TokenFormat.OPAQUE and await repository.tokens_with_fingerprint(
                    session, self.fingerprint(token)
                ):
                    # A format-preserving token is a valid card number: one that is the PAN
                    # of a card the vault holds would hand that card number out as a token.
                    continue
                row = VaultCardRow(
                    token=token,
                    pan_enc=keyring_field(keyring, card.digits, record_id=token),
                    fingerprint=fingerprint,
                    brand=card.brand.value,
                    last4=card.last4,
                    expiry_month=expiry.month,
                    expiry_year=expiry.year,
                    created_ns=self.clock.now_ns(),
                    created_by=bounded.on_behalf_of,
                    created_role=bounded.role.value,
                )
                try:
                    # A savepoint: a token drawn twice (possible for the short formats) is
                    # refused by the primary key and drawn again, in the same transaction.
                    async with session.begin_nested():
                        await repository.insert_card(session, row)
                except IntegrityError:
                    continue
                break
            else:
                raise VaultUnavailable("no free token could be drawn; use the opaque format")
            await self._log(session, caller, VaultOperation.TOKENIZE.value, token, "allowed")
        return TokenizedCard(token, card.brand, card.last4, expiry, fingerprint.hex())

    async def describe(self, caller: VaultCaller, tokens: Sequence[str]) -> list[TokenizedCard]:
        """Brand, last four, expiry and fingerprint of stored cards (unknown tokens are left
        out): what de-duplication needs, without detokenizing."""
        await self._check(caller, VaultOperation.DESCRIBE)
        wanted = [token for token in tokens if token_shape_valid(token)]
        async with self.unit_of_work() as session:
            rows = await repository.cards(session, wanted) if wanted else []
        return [_describe(row) for row in rows]

    async def duplicates(self, caller: VaultCaller, pan: str) -> list[str]:
        """The tokens stored for the same card as `pan` (by fingerprint)."""
        await self._check(caller, VaultOperation.DESCRIBE)
        card = parse_pan(pan)
        fingerprint = self.fingerprint(card.digits)
        async with self.unit_of_work() as session:
            return list(await repository.tokens_with_fingerprint(session, fingerprint))

    async def detokenize(self, caller: VaultCaller, token: str) -> RevealedCard:
        """The PAN behind a token: the payment role only."""
        await self._check(caller, VaultOperation.DETOKENIZE, token)
        return await self._reveal(caller, VaultOperation.DETOKENIZE, token)

    async def authorization_card(
        self, caller: VaultCaller, token: str, cvv: str
    ) -> AuthorizationCard:
        """The card and its security code for one authorization (payment role only). The
        code is checked for its brand and handed back in memory: it is never written."""
        await self._check(caller, VaultOperation.AUTHORIZE, token)
        secrets: list[CardSecret] = []
        # The code is checked against the stored card's brand before the access is logged:
        # a refused code ("12", "12a") is logged `invalid`, never `allowed`.
        card = await self._reveal(
            caller,
            VaultOperation.AUTHORIZE,
            token,
            accept=lambda brand: secrets.append(parse_card_secret(cvv, brand)),
        )
        return AuthorizationCard(card, secrets[0])

    async def _reveal(
        self,
        caller: VaultCaller,
        operation: VaultOperation,
        token: str,
        accept: Callable[[CardBrand], None] | None = None,
    ) -> RevealedCard:
        """The stored card, the access logged with its outcome: `not_found`, `invalid` (the
        request's other input, checked by `accept` against the card, was refused; nothing
        is revealed) or `allowed`."""
        keyring = self._ready()
        refused: TradeguardError | None = None
        found: RevealedCard | None = None
        async with self.unit_of_work() as session:
            row = await repository.card(session, token) if token_shape_valid(token) else None
            outcome = "not_found" if row is None else "allowed"
            if row is not None and accept is not None:
                try:
                    accept(CardBrand(row.brand))
                except TradeguardError as exc:
                    refused, outcome = exc, INVALID
            await self._log(session, caller, operation.value, token, outcome)
            # A miss or a refusal is logged, then reported: the log row must commit, so it
            # is raised after the unit of work.
            if row is not None and refused is None:
                found = RevealedCard(
                    row.token,
                    row.pan_enc.reveal(keyring, record_id=row.token),
                    CardBrand(row.brand),
                    Expiry(row.expiry_year, row.expiry_month),
                )
        if refused is not None:
            raise refused
        if found is None:
            raise TokenNotFound
        return found

    async def forget(self, caller: VaultCaller, token: str) -> bool:
        """Delete a stored card (PCI DSS 3.2.1: kept no longer than needed); idempotent."""
        await self._check(caller, VaultOperation.FORGET, token)
        async with self.unit_of_work() as session:
            deleted = (
                await repository.delete_card(session, token) if token_shape_valid(token) else False
            )
            await self._log(
                session,
                caller,
                VaultOperation.FORGET.value,
                token,
                "allowed" if deleted else "not_found",
            )
        return deleted


def _describe(row: VaultCardRow) -> TokenizedCard:
    return TokenizedCard(
        row.token,
        CardBrand(row.brand),
        row.last4,
        Expiry(row.expiry_year, row.expiry_month),
        bytes(row.fingerprint).hex(),
    )
