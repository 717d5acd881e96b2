"""Reading the list's three files from a directory or an https URL prefix.

Plain http is refused except to this machine (tests serve a list over loopback): a list
fetched in the clear could be swapped in transit for one missing a sanctioned name.
"""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tradeguard.kyc.sanctions.common import ListRefused, ListUnavailable
from tradeguard.kyc.sanctions.lists import FILES


def is_url(location: str) -> bool:
    return location.startswith(("https://", "http://"))


def _loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(location: str) -> str:
    parts = urlsplit(location)
    if parts.scheme == "https" and parts.hostname:
        return location.rstrip("/") + "/"
    if parts.scheme == "http" and _loopback(parts.hostname):
        return location.rstrip("/") + "/"
    raise ListRefused(
        f"{location}: the list is fetched over https (plain http only from localhost)"
    )


async def read_files(location: str, *, max_bytes: int, timeout_seconds: float) -> dict[str, bytes]:
    """The three files' bytes; ListUnavailable when they cannot be read."""
    if not is_url(location):
        return await asyncio.to_thread(read_directory, location, max_bytes=max_bytes)
    base = check_url(location)
    found: dict[str, bytes] = {}
    async with httpx.AsyncClient(timeout=timeout_seconds, follow_redirects=False) as client:
        for name in FILES:
            try:
                async with client.stream("GET", base + name) as response:
                    if response.status_code != 200:
                        raise ListUnavailable(
                            f"{base}{name}: HTTP {response.status_code}; check the URL"
                        )
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body.extend(chunk)
                        if len(body) > max_bytes:
                            raise ListRefused(f"{name}: larger than {max_bytes} bytes")
                    found[name] = bytes(body)
            except httpx.HTTPError as exc:
                raise ListUnavailable(
                    f"{base}{name}: {type(exc).__name__}; check the URL and the network"
                ) from None
    return found


def read_directory(location: str, *, max_bytes: int) -> dict[str, bytes]:
    directory = Path(location)
    if not directory.is_dir():
        raise ListUnavailable(f"{location}: not a directory holding {', '.join(FILES)}")
    files: dict[str, bytes] = {}
    for name in FILES:
        path = directory / name
        if not path.is_file():
            raise ListRefused(f"{name}: missing from {location}")
        if path.stat().st_size > max_bytes:
            raise ListRefused(f"{name}: larger than {max_bytes} bytes")
        files[name] = path.read_bytes()
    return files
