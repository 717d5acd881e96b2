"""k-anonymity breached-password lookups in the HIBP range format."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradeguard.identity.breached_passwords import (
    KAnonymityBreachChecker,
    NoBreachCheck,
    parse_range_response,
)
from tradeguard.identity.errors import BreachCheckUnavailable

PASSWORD = "violet tractor juggles quietly"
DIGEST = hashlib.sha1(PASSWORD.encode(), usedforsecurity=False).hexdigest().upper()
OTHER_SUFFIX = "0" * 35


class FakeRangeApi:
    """Records what leaves the process and answers with a fixed body."""

    def __init__(self, body: str) -> None:
        self.body = body
        self.prefixes: list[str] = []

    async def fetch(self, prefix: str) -> str:
        self.prefixes.append(prefix)
        return self.body


@pytest.mark.spec("AUTH-1")
class TestKAnonymityBreachChecker:
    async def test_only_the_five_character_prefix_is_sent(self) -> None:
        api = FakeRangeApi(f"{OTHER_SUFFIX}:3\r\n")

        await KAnonymityBreachChecker(api.fetch).is_breached(PASSWORD)

        assert api.prefixes == [DIGEST[:5]]
        assert all(PASSWORD not in p and DIGEST[5:] not in p for p in api.prefixes)

    async def test_a_password_listed_under_its_prefix_is_breached(self) -> None:
        body = f"{OTHER_SUFFIX}:1\r\n\r\n{DIGEST[5:]}:42\r\n\n"

        assert await KAnonymityBreachChecker(FakeRangeApi(body).fetch).is_breached(PASSWORD)

    async def test_a_password_not_listed_is_not_breached(self) -> None:
        body = f"{OTHER_SUFFIX}:7\n"

        assert not await KAnonymityBreachChecker(FakeRangeApi(body).fetch).is_breached(PASSWORD)

    async def test_padding_entries_with_count_zero_never_match(self) -> None:
        body = f"{DIGEST[5:]}:0\n"

        assert not await KAnonymityBreachChecker(FakeRangeApi(body).fetch).is_breached(PASSWORD)

    async def test_a_minimum_count_ignores_rare_sightings(self) -> None:
        body = f"{DIGEST[5:].lower()}:3\n"
        checker = KAnonymityBreachChecker(FakeRangeApi(body).fetch, min_count=10)

        assert not await checker.is_breached(PASSWORD)

    async def test_a_transport_failure_is_reported_as_unavailable(self) -> None:
        async def failing(prefix: str) -> str:
            raise OSError("connection refused")

        with pytest.raises(BreachCheckUnavailable):
            await KAnonymityBreachChecker(failing).is_breached(PASSWORD)

    @pytest.mark.parametrize(
        "body", ["<html>oops</html>", f"{OTHER_SUFFIX}:x", "ABC:1", f"{OTHER_SUFFIX}"]
    )
    async def test_a_malformed_reply_is_reported_as_unavailable(self, body: str) -> None:
        with pytest.raises(BreachCheckUnavailable):
            await KAnonymityBreachChecker(FakeRangeApi(body).fetch).is_breached(PASSWORD)

    def test_min_count_below_one_is_refused(self) -> None:
        with pytest.raises(ValueError, match="min_count"):
            KAnonymityBreachChecker(FakeRangeApi("").fetch, min_count=0)

    async def test_the_offline_checker_reports_nothing_breached(self) -> None:
        assert not await NoBreachCheck().is_breached("password")

    @given(
        st.dictionaries(
            st.text(alphabet="0123456789ABCDEF", min_size=35, max_size=35),
            st.integers(min_value=0, max_value=10**9),
            max_size=20,
        )
    )
    def test_parsing_a_range_body_recovers_every_entry(self, entries: dict[str, int]) -> None:
        body = "\r\n".join(f"{suffix}:{count}" for suffix, count in entries.items())

        assert parse_range_response(body) == entries
