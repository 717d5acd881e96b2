"""Widening PostgreSQL's 32-bit transaction ids (pg_stat_activity) to the 64-bit ids the
sequencer orders events by: a writer newer than the snapshot's xmax stays newer."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tradeguard.ledger.repository import widen_xid

EPOCH = 1 << 32
# PostgreSQL keeps every running transaction within 2^31 of the next id (wraparound guard).
REACH = (1 << 31) - 1


class TestWidenXid:
    def test_an_older_running_transaction_keeps_its_id(self) -> None:
        assert widen_xid(100, 105) == 100

    def test_a_transaction_newer_than_xmax_stays_newer_not_a_whole_epoch_older(self) -> None:
        # A writer that took its id after the last one to finish (or after the snapshot): its
        # id is above xmax. Read as the previous epoch it would put the horizon below every
        # event, and the sequencer would chain nothing while it runs.
        assert widen_xid(107, 105) == 107
        assert widen_xid(107, 5 * EPOCH + 105) == 5 * EPOCH + 107

    def test_ids_across_an_epoch_boundary_land_in_the_right_epoch(self) -> None:
        # xmax just past the wrap; an older writer from just before it.
        assert widen_xid(0xFFFF_FFF0, EPOCH + 5) == EPOCH - 16
        # xmax just before the wrap; a newer writer already past it.
        assert widen_xid(2, EPOCH - 3) == EPOCH + 2

    @given(
        near=st.integers(min_value=REACH, max_value=(1 << 62)),
        offset=st.integers(min_value=-REACH, max_value=REACH),
    )
    def test_any_id_within_reach_of_xmax_is_recovered_from_its_low_bits(
        self, near: int, offset: int
    ) -> None:
        full = near + offset
        assert widen_xid(full & 0xFFFF_FFFF, near) == full
