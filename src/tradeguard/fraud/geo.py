"""IP geolocation from an offline database shipped inside a package (geoip2fast): country and
announcing network (autonomous system) of an address, with no network call at run time.

geoip2fast keeps its tables in module globals, so the database is loaded once per process
(about 0.2 s and 100 MB for the country + ASN file with IPv6); `OfflineGeoLocator.load` is
called at start so that the first sign-in does not pay for it. Its own update and DNS
helpers reach the network; nothing here calls them.
"""

from __future__ import annotations

import ipaddress
import threading
from typing import Any, Final, Protocol

from tradeguard.fraud.countries import country_point
from tradeguard.fraud.domain import Location

# The data files geoip2fast ships: country only (IPv4, or with IPv6), or with the network.
SHIPPED_DATA_FILES: Final = frozenset(
    {
        "geoip2fast.dat.gz",
        "geoip2fast-ipv6.dat.gz",
        "geoip2fast-asn.dat.gz",
        "geoip2fast-asn-ipv6.dat.gz",
    }
)
DEFAULT_DATA_FILE: Final = "geoip2fast-asn-ipv6.dat.gz"
MAX_NETWORK_CHARS: Final = 120


class GeoLocator(Protocol):
    def locate(self, ip: str | None) -> Location | None:
        """Where the address is; None when it cannot be placed (private, reserved, unknown)."""


class OfflineGeoLocator:
    """geoip2fast over one of its shipped data files."""

    _lock = threading.Lock()
    _loaded: dict[str, Any] = {}  # noqa: RUF012 - one database per process, by file name

    def __init__(self, data_file: str = DEFAULT_DATA_FILE) -> None:
        if data_file not in SHIPPED_DATA_FILES:
            raise ValueError(f"unknown geoip2fast data file {data_file!r}")
        self.data_file = data_file

    def load(self) -> Any:
        with self._lock:
            reader = self._loaded.get(self.data_file)
            if reader is None:
                from geoip2fast import GeoIP2Fast  # noqa: PLC0415 - loaded on first use

                # geoip2fast keeps one database per process: the last file loaded wins.
                self._loaded.clear()
                reader = GeoIP2Fast(geoip2fast_data_file=self.data_file)
                self._loaded[self.data_file] = reader
            return reader

    def locate(self, ip: str | None) -> Location | None:
        if not ip:
            return None
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return None
        if not address.is_global:
            return None
        found = self.load().lookup(str(address))
        code = str(getattr(found, "country_code", "") or "")
        if len(code) != 2 or not code.isalpha() or getattr(found, "is_private", False):
            return None
        network = str(getattr(found, "asn_name", "") or "").strip()[:MAX_NETWORK_CHARS] or None
        point = country_point(code.upper())
        return Location(
            country=code.upper(),
            network=network,
            latitude=point[0] if point else None,
            longitude=point[1] if point else None,
        )
