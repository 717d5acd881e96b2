"""Split knowledge of the master key: any threshold of the shares rebuild it, fewer do not."""

from __future__ import annotations

import itertools
import re
import secrets

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeguard.crypto.shares import SharesRefused, combine_shares, split_secret


class TestShares:
    @settings(max_examples=10, deadline=None)
    @given(
        secret=st.binary(min_size=32, max_size=32),
        threshold=st.integers(2, 4),
        extra=st.integers(0, 2),
    )
    def test_every_threshold_subset_rebuilds_the_key(
        self, secret: bytes, threshold: int, extra: int
    ) -> None:
        shares = split_secret(secret, threshold=threshold, shares=threshold + extra)
        for subset in itertools.combinations(shares, threshold):
            assert combine_shares(list(subset)) == secret

    def test_fewer_than_the_threshold_are_refused(self) -> None:
        shares = split_secret(secrets.token_bytes(32), threshold=3, shares=5)
        with pytest.raises(SharesRefused, match="too few"):
            combine_shares(shares[:2])

    def test_shares_of_two_splits_do_not_mix(self) -> None:
        first = split_secret(secrets.token_bytes(32), threshold=2, shares=2)
        second = split_secret(secrets.token_bytes(32), threshold=2, shares=2)
        with pytest.raises(SharesRefused):
            combine_shares([first[0], second[1]])

    def test_a_mistyped_word_is_caught_without_echoing_it(self) -> None:
        shares = split_secret(secrets.token_bytes(32), threshold=2, shares=2)
        words = shares[1].split()
        words[5] = "zzzz"
        with pytest.raises(SharesRefused, match="mistyped") as refused:
            combine_shares([shares[0], " ".join(words)])
        # Whole words: a short share word may well be part of an English one in the message.
        said = set(re.findall(r"[a-z]+", refused.value.detail.lower()))
        assert said.isdisjoint(set(shares[0].split()) | set(words)), refused.value.detail

    @pytest.mark.parametrize(("threshold", "count"), [(0, 3), (4, 3), (2, 17), (1, 3)])
    def test_impossible_splits_are_refused(self, threshold: int, count: int) -> None:
        with pytest.raises(SharesRefused):
            split_secret(secrets.token_bytes(32), threshold=threshold, shares=count)

    def test_no_shares_is_refused(self) -> None:
        with pytest.raises(SharesRefused, match="no shares"):
            combine_shares(["", "  "])
