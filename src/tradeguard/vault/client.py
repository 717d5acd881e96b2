"""How the platform reaches the vault (PCI-3): one interface, two implementations.

`LocalVaultClient` calls the vault store in this process (the embedded default).
`RemoteVaultClient` (vault/remote.py) calls `tradeguard vault serve` over mutual TLS; the
platform then holds no vault database credentials and no vault key, and its vault role is
the one in its client certificate, which the vault server enforces.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tradeguard.vault.domain import (
    AuthorizationCard,
    RevealedCard,
    TokenFormat,
    TokenizedCard,
    VaultRole,
)
from tradeguard.vault.store import CardVaultStore, VaultCaller


class VaultClient(Protocol):
    """The vault's narrow internal API. `on_behalf_of` (`kind:id`) and `request_id` are
    recorded in the vault's access log; they never widen what the client's role may do."""

    @property
    def role(self) -> VaultRole: ...

    async def tokenize(
        self,
        *,
        pan: str,
        expiry_month: int,
        expiry_year: int,
        on_behalf_of: str,
        request_id: str | None = None,
        token_format: TokenFormat | None = None,
    ) -> TokenizedCard: ...

    async def describe(
        self, *, tokens: Sequence[str], on_behalf_of: str, request_id: str | None = None
    ) -> list[TokenizedCard]: ...

    async def detokenize(
        self, *, token: str, on_behalf_of: str, request_id: str | None = None
    ) -> RevealedCard: ...

    async def authorization_card(
        self, *, token: str, cvv: str, on_behalf_of: str, request_id: str | None = None
    ) -> AuthorizationCard: ...

    async def forget(
        self, *, token: str, on_behalf_of: str, request_id: str | None = None
    ) -> bool: ...

    async def close(self) -> None: ...


class LocalVaultClient:
    """The vault in this process, called with a fixed vault role."""

    def __init__(self, store: CardVaultStore, *, role: VaultRole) -> None:
        self.store = store
        self._role = role

    @property
    def role(self) -> VaultRole:
        return self._role

    def _caller(self, on_behalf_of: str, request_id: str | None) -> VaultCaller:
        return VaultCaller(self._role, on_behalf_of, request_id)

    async def tokenize(
        self,
        *,
        pan: str,
        expiry_month: int,
        expiry_year: int,
        on_behalf_of: str,
        request_id: str | None = None,
        token_format: TokenFormat | None = None,
    ) -> TokenizedCard:
        return await self.store.tokenize(
            self._caller(on_behalf_of, request_id),
            pan=pan,
            expiry_month=expiry_month,
            expiry_year=expiry_year,
            token_format=token_format,
        )

    async def describe(
        self, *, tokens: Sequence[str], on_behalf_of: str, request_id: str | None = None
    ) -> list[TokenizedCard]:
        return await self.store.describe(self._caller(on_behalf_of, request_id), tokens)

    async def detokenize(
        self, *, token: str, on_behalf_of: str, request_id: str | None = None
    ) -> RevealedCard:
        return await self.store.detokenize(self._caller(on_behalf_of, request_id), token)

    async def authorization_card(
        self, *, token: str, cvv: str, on_behalf_of: str, request_id: str | None = None
    ) -> AuthorizationCard:
        return await self.store.authorization_card(
            self._caller(on_behalf_of, request_id), token, cvv
        )

    async def forget(self, *, token: str, on_behalf_of: str, request_id: str | None = None) -> bool:
        return await self.store.forget(self._caller(on_behalf_of, request_id), token)

    async def close(self) -> None:
        """The store is closed by whoever opened it (it may serve several clients)."""
