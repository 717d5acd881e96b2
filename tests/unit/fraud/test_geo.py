"""Offline IP geolocation (the database geoip2fast ships; no network)."""

from __future__ import annotations

import pytest

from tradeguard.fraud.geo import OfflineGeoLocator

# MaxMind's published test addresses, placed by geoip2fast's shipped database.
IN_GB = "81.2.69.142"
IN_SE = "89.160.20.112"


class TestOfflineGeoLocator:
    def test_public_addresses_get_their_country_network_and_reference_point(self) -> None:
        locator = OfflineGeoLocator()
        gb = locator.locate(IN_GB)
        se = locator.locate(IN_SE)
        assert gb is not None
        assert se is not None
        assert (gb.country, se.country) == ("GB", "SE")
        assert gb.network
        assert gb.network != se.network
        assert gb.latitude is not None
        assert se.longitude is not None

    @pytest.mark.parametrize(
        "address",
        [None, "", "203.0.113.7", "10.0.0.1", "127.0.0.1", "::1", "2001:db8::1", "1.2.3", "x"],
    )
    def test_private_reserved_documentation_and_malformed_addresses_are_not_placed(
        self, address: str | None
    ) -> None:
        assert OfflineGeoLocator().locate(address) is None

    def test_only_the_shipped_data_files_are_accepted(self) -> None:
        with pytest.raises(ValueError, match="unknown geoip2fast data file"):
            OfflineGeoLocator("../../etc/passwd")
