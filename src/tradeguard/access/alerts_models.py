"""Tables of the staff access anomaly alerts (IAC-4): the alerts, the detector's checkpoint
in the ledger, and the client networks each staff member has been seen on.

No personal data: an alert's summary holds counts and limits only, its evidence is ledger
sequence numbers, and networks are stored as keyed digests (looked up by value, not
readable).
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from tradeguard.db.base import Base
from tradeguard.db.types import ScrubbedText


class AccessAlert(Base):
    """One alert: a rule that fired for a staff member, with the events that made it fire."""

    __tablename__ = "access_alerts"
    __table_args__ = (
        Index("ix_access_alerts_status_created", "status", "created_ns"),
        Index("ix_access_alerts_dedup", "rule", "staff_user_id", "dedup_key", "window_end_ns"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    rule: Mapped[str] = mapped_column(String(40))
    severity: Mapped[str] = mapped_column(String(10))
    staff_user_id: Mapped[str] = mapped_column(String(36), index=True)
    # With rule and staff member: which alert a later finding belongs to (see anomalies.py).
    dedup_key: Mapped[str] = mapped_column(String(64))
    window_start_ns: Mapped[int] = mapped_column(BigInteger)
    window_end_ns: Mapped[int] = mapped_column(BigInteger)
    summary: Mapped[str] = mapped_column(String(300))
    # Ledger sequence numbers of the evidence (the newest 50 at most).
    evidence_seqs: Mapped[list[int]] = mapped_column(JSON)
    # How many findings this alert holds (the first, and the duplicates folded into it).
    occurrences: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    created_ns: Mapped[int] = mapped_column(BigInteger)
    acknowledged_by: Mapped[str | None] = mapped_column(String(80))
    acknowledged_ns: Mapped[int | None] = mapped_column(BigInteger)
    closed_by: Mapped[str | None] = mapped_column(String(80))
    closed_ns: Mapped[int | None] = mapped_column(BigInteger)
    note: Mapped[str | None] = mapped_column(ScrubbedText())


class AccessDetectorCheckpoint(Base):
    """How far a detector has read the ledger (the last sequence number it judged)."""

    __tablename__ = "access_detector_checkpoints"

    name: Mapped[str] = mapped_column(String(60), primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    updated_ns: Mapped[int] = mapped_column(BigInteger)


class AccessStaffNetwork(Base):
    """A client network a staff member was seen on, as a keyed digest, and when."""

    __tablename__ = "access_staff_networks"

    staff_user_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    network_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    first_seen_ns: Mapped[int] = mapped_column(BigInteger)
    last_seen_ns: Mapped[int] = mapped_column(BigInteger)
