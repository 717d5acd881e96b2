"""The platform's client of a vault running apart (`tradeguard vault serve`), over mutual
TLS 1.3 on a Unix socket or a private address (PCI-3).

The client trusts only the vault's CA for the server, and presents a client certificate of
one vault role: the vault server decides what it may do from that certificate alone.
Problems answered by the vault come back as the same errors the in-process vault raises.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from tradeguard.core.errors import ConfigurationError, InvalidInput, TradeguardError
from tradeguard.vault.certs import SERVER_NAME, VaultPki
from tradeguard.vault.domain import (
    AuthorizationCard,
    CardSecret,
    InvalidCardNumber,
    InvalidCardSecret,
    InvalidExpiry,
    PanProblem,
    RevealedCard,
    TokenFormat,
    TokenizedCard,
    TokenNotFound,
    VaultAccessDenied,
    VaultRole,
)
from tradeguard.vault.schemas import AuthorizationOut, DescribedOut, RevealedOut, TokenizedOut
from tradeguard.vault.store import VaultUnavailable

TIMEOUT_SECONDS: Final = 5.0
_BY_SLUG: Final[dict[str, type[TradeguardError]]] = {
    cls.slug: cls
    for cls in (InvalidExpiry, InvalidCardSecret, TokenNotFound, VaultAccessDenied, InvalidInput)
}


def client_ssl_context(pki: VaultPki, role: VaultRole) -> ssl.SSLContext:
    """TLS 1.3 only, the vault CA as the only trust anchor, our role's certificate."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki.ca_cert))
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(str(pki.client_cert(role)), str(pki.client_key(role)))
    return context


def parse_endpoint(endpoint: str) -> tuple[str, Path | None]:
    """(base URL, Unix socket path or None) of `unix:///path` or `https://host:port`."""
    parts = urlsplit(endpoint)
    if parts.scheme == "unix" and parts.path:
        return f"https://{SERVER_NAME}", Path(parts.path)
    if parts.scheme == "https" and parts.hostname:
        return f"https://{parts.netloc}", None
    raise ConfigurationError(
        "TRADEGUARD_VAULT_ENDPOINT: must be unix:///path/to/vault.sock or https://host:port"
    )


class RemoteVaultClient:
    def __init__(
        self,
        endpoint: str,
        *,
        pki: VaultPki,
        role: VaultRole,
        timeout_seconds: float = TIMEOUT_SECONDS,
        context: ssl.SSLContext | None = None,
    ) -> None:
        base_url, socket_path = parse_endpoint(endpoint)
        verify = context or client_ssl_context(pki, role)
        transport = httpx.AsyncHTTPTransport(
            uds=None if socket_path is None else str(socket_path), verify=verify
        )
        self._http = httpx.AsyncClient(
            transport=transport, base_url=base_url, timeout=timeout_seconds
        )
        self._role = role

    @property
    def role(self) -> VaultRole:
        return self._role

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self._http.post(path, json=body)
        except httpx.HTTPError as exc:
            # The exception names the transport problem only; the body (a PAN) is not in it.
            raise VaultUnavailable(f"the vault did not answer ({type(exc).__name__})") from None
        if response.is_success:
            answer: dict[str, Any] = response.json()
            return answer
        raise _error_of(response)

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
        answer = await self._post(
            "/v1/tokenize",
            {
                "pan": pan,
                "expiry_month": expiry_month,
                "expiry_year": expiry_year,
                "token_format": None if token_format is None else token_format.value,
                "on_behalf_of": on_behalf_of,
                "request_id": request_id,
            },
        )
        return TokenizedOut.model_validate(answer).card()

    async def describe(
        self, *, tokens: Sequence[str], on_behalf_of: str, request_id: str | None = None
    ) -> list[TokenizedCard]:
        answer = await self._post(
            "/v1/describe",
            {"tokens": list(tokens), "on_behalf_of": on_behalf_of, "request_id": request_id},
        )
        return [card.card() for card in DescribedOut.model_validate(answer).cards]

    async def detokenize(
        self, *, token: str, on_behalf_of: str, request_id: str | None = None
    ) -> RevealedCard:
        answer = await self._post(
            "/v1/detokenize",
            {"token": token, "on_behalf_of": on_behalf_of, "request_id": request_id},
        )
        return RevealedOut.model_validate(answer).card()

    async def authorization_card(
        self, *, token: str, cvv: str, on_behalf_of: str, request_id: str | None = None
    ) -> AuthorizationCard:
        answer = await self._post(
            "/v1/authorization-card",
            {"token": token, "cvv": cvv, "on_behalf_of": on_behalf_of, "request_id": request_id},
        )
        parsed = AuthorizationOut.model_validate(answer)
        return AuthorizationCard(parsed.card(), CardSecret(parsed.cvv))

    async def forget(self, *, token: str, on_behalf_of: str, request_id: str | None = None) -> bool:
        answer = await self._post(
            "/v1/forget",
            {"token": token, "on_behalf_of": on_behalf_of, "request_id": request_id},
        )
        return bool(answer.get("forgotten"))

    async def close(self) -> None:
        await self._http.aclose()


def _error_of(response: httpx.Response) -> TradeguardError:
    try:
        problem = response.json()
    except ValueError:
        problem = {}
    slug = str(problem.get("type", "")).rsplit("/", 1)[-1]
    detail = problem.get("detail") if isinstance(problem.get("detail"), str) else None
    if slug == InvalidCardNumber.slug:
        try:
            return InvalidCardNumber(PanProblem(problem.get("reason")))
        except ValueError:
            return InvalidInput(detail)
    known = _BY_SLUG.get(slug)
    if known is not None:
        return known(detail)
    if response.status_code == 403:
        return VaultAccessDenied(detail)
    return VaultUnavailable(f"the vault answered {response.status_code}")
