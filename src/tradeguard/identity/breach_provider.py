"""The HTTP side of breached-password checks: GET {base}/range/{prefix} (HIBP range API)."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import urllib.request
from urllib.parse import urlsplit

from tradeguard.core.errors import ConfigurationError
from tradeguard.identity.breached_passwords import RangeFetcher

MAX_RANGE_BYTES = 2 * 1024 * 1024


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def http_range_fetcher(
    base_url: str, *, timeout: float = 3.0, ssl_context: ssl.SSLContext | None = None
) -> RangeFetcher:
    """A fetcher for the range API at `base_url`; HTTPS only (plain HTTP for loopback tests)."""
    parts = urlsplit(base_url)
    if parts.scheme != "https" and not (
        parts.scheme == "http" and _is_loopback(parts.hostname or "")
    ):
        raise ConfigurationError("TRADEGUARD_BREACHED_PASSWORD_API_URL must be an https:// URL")
    root = base_url.rstrip("/")
    context = ssl_context or ssl.create_default_context()

    def fetch(prefix: str) -> str:
        request = urllib.request.Request(  # noqa: S310 - scheme checked above
            f"{root}/range/{prefix}",
            # Padding makes every response a similar size, so the prefix cannot be inferred
            # from the length of the (encrypted) answer.
            headers={"Add-Padding": "true", "User-Agent": "tradeguard-password-check"},
        )
        with urllib.request.urlopen(  # noqa: S310 - scheme checked above
            request, timeout=timeout, context=context if parts.scheme == "https" else None
        ) as response:
            return str(response.read(MAX_RANGE_BYTES).decode("utf-8"))

    async def fetch_range(prefix: str) -> str:
        return await asyncio.to_thread(fetch, prefix)

    return fetch_range
