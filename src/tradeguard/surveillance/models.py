"""Tables of market surveillance: the alerts with their evidence, the stream consumer's
checkpoint in the ledger, the beneficial-owner links (recorded by compliance, derived from
sign-ins, or fed by the funds package); the cases that
group alerts with their timelines, the automatic action policy and the actions it took,
and suspicious-activity report drafts (MAN-5).

No personal data: alerts name accounts, orders and executions by id, and their evidence is
quantities, prices and ratios.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from tradeguard.db.base import Base
from tradeguard.db.types import ScrubbedJSON, ScrubbedString, ScrubbedText


class SurveillanceAlert(Base):
    """One alert: a pattern a detector found, folded with its continuation."""

    __tablename__ = "surveillance_alerts"
    __table_args__ = (
        # A finding is recorded once: its type and the event that completed it.
        UniqueConstraint("alert_type", "first_trigger_seq", name="uq_surveillance_alerts_trigger"),
        Index("ix_surveillance_alerts_fold", "alert_type", "owner", "symbol", "latest_trigger_ns"),
        Index("ix_surveillance_alerts_symbol", "symbol"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    alert_type: Mapped[str] = mapped_column(String(40))
    # The model that raised it, by its requirement: MAN-1, MAN-2.
    detector: Mapped[str] = mapped_column(String(10))
    symbol: Mapped[str] = mapped_column(String(20))
    # The beneficial owner: a user id (the representative of a linked group), or an
    # account id where the account's owner was not known.
    owner: Mapped[str] = mapped_column(String(100))
    accounts: Mapped[list[str]] = mapped_column(JSON)
    score: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    summary: Mapped[str] = mapped_column(String(400))
    first_trigger_seq: Mapped[int] = mapped_column(BigInteger)
    first_trigger_ns: Mapped[int] = mapped_column(BigInteger)
    latest_trigger_seq: Mapped[int] = mapped_column(BigInteger)
    latest_trigger_ns: Mapped[int] = mapped_column(BigInteger)
    window_start_ns: Mapped[int] = mapped_column(BigInteger)
    window_end_ns: Mapped[int] = mapped_column(BigInteger)
    # Findings folded into this alert, the first included.
    occurrences: Mapped[int] = mapped_column(Integer)
    order_ids: Mapped[list[str]] = mapped_column(JSON)
    execution_ids: Mapped[list[str]] = mapped_column(JSON)
    # The latest finding's figures and book reconstruction.
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)
    # From the triggering event's ledger time to the alert's creation (MAN-5: a metric).
    latency_ns: Mapped[int] = mapped_column(BigInteger)
    created_ns: Mapped[int] = mapped_column(BigInteger)
    updated_ns: Mapped[int] = mapped_column(BigInteger)


class SurveillanceCheckpoint(Base):
    """How far a stream consumer has read the ledger, and where a restart replays from."""

    __tablename__ = "surveillance_checkpoints"

    name: Mapped[str] = mapped_column(String(60), primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    # The first event still within the detectors' lookback (None: none), and the engine's
    # time just before it (surveillance/engine.py).
    replay_from_seq: Mapped[int | None] = mapped_column(BigInteger)
    replay_floor_ns: Mapped[int] = mapped_column(BigInteger)
    events_read: Mapped[int] = mapped_column(BigInteger)
    updated_ns: Mapped[int] = mapped_column(BigInteger)


class SurveillanceLink(Base):
    """Two parties with one beneficial owner (a person, a household): two accounts
    (`manual` links compliance records, `bank_account` links from the funds package) or two
    users (`device` and `network` links derived from sign-ins, surveillance/linkage.py)."""

    __tablename__ = "surveillance_links"
    __table_args__ = (
        # One link of a kind per pair, whatever its status: a dismissed derived link is not
        # derived again.
        UniqueConstraint("kind", "account_a", "account_b", name="uq_surveillance_links_accounts"),
        UniqueConstraint("kind", "user_a", "user_b", name="uq_surveillance_links_users"),
        CheckConstraint(
            "(account_a IS NOT NULL AND account_b IS NOT NULL AND user_a IS NULL "
            "AND user_b IS NULL) OR (account_a IS NULL AND account_b IS NULL "
            "AND user_a IS NOT NULL AND user_b IS NOT NULL)",
            name="one_pair",
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), default="manual", server_default="manual")
    # The pair in order (a < b), so a link is stored once: two accounts, or two users.
    account_a: Mapped[str | None] = mapped_column(String(36), index=True)
    account_b: Mapped[str | None] = mapped_column(String(36), index=True)
    user_a: Mapped[str | None] = mapped_column(String(36), index=True)
    user_b: Mapped[str | None] = mapped_column(String(36), index=True)
    # Compliance's reason (manual), or what the derivation found, in words.
    reason: Mapped[str] = mapped_column(ScrubbedText())
    # What was shared, when and how often (derived kinds): keyed hashes and masked values,
    # never an address, a fingerprint or a bank account number.
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(12), default="active", server_default="active")
    created_by: Mapped[str] = mapped_column(String(120))
    created_ns: Mapped[int] = mapped_column(BigInteger)
    dismissed_by: Mapped[str | None] = mapped_column(String(120))
    dismissed_ns: Mapped[int | None] = mapped_column(BigInteger)
    dismiss_reason: Mapped[str | None] = mapped_column(ScrubbedText())


class SurveillanceCase(Base):
    """A compliance case: alerts grouped for one review, its assignee, state and decision."""

    __tablename__ = "surveillance_cases"
    __table_args__ = (Index("ix_surveillance_cases_status", "status", "id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    title: Mapped[str] = mapped_column(ScrubbedString(200))
    status: Mapped[str] = mapped_column(String(16))
    # The compliance user reviewing it (a user id), None while nobody is.
    assignee: Mapped[str | None] = mapped_column(String(36), index=True)
    disposition: Mapped[str | None] = mapped_column(String(20))
    created_by: Mapped[str] = mapped_column(String(120))
    created_ns: Mapped[int] = mapped_column(BigInteger)
    updated_ns: Mapped[int] = mapped_column(BigInteger)
    closed_ns: Mapped[int | None] = mapped_column(BigInteger)


class SurveillanceCaseAlert(Base):
    """An alert in a case; an alert is in at most one case at a time."""

    __tablename__ = "surveillance_case_alerts"

    alert_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(36), index=True)
    added_ns: Mapped[int] = mapped_column(BigInteger)


class SurveillanceCaseEntry(Base):
    """One line of a case's timeline, written with the ledger event that audits it (named
    by `event_id`, so the timeline can be checked against the chain)."""

    __tablename__ = "surveillance_case_entries"
    __table_args__ = (Index("ix_surveillance_case_entries_case", "case_id", "id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(36))
    kind: Mapped[str] = mapped_column(String(30))
    actor: Mapped[str] = mapped_column(String(120))
    detail: Mapped[dict[str, Any]] = mapped_column(ScrubbedJSON())
    event_id: Mapped[str] = mapped_column(String(36))
    created_ns: Mapped[int] = mapped_column(BigInteger)


class SurveillanceActionRule(Base):
    """One row of the automatic action policy: alert type and score threshold to action."""

    __tablename__ = "surveillance_action_rules"
    __table_args__ = (
        UniqueConstraint("alert_type", "action", name="uq_surveillance_action_rules_type_action"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    alert_type: Mapped[str] = mapped_column(String(40))
    min_score: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(20))
    created_by: Mapped[str] = mapped_column(String(120))
    created_ns: Mapped[int] = mapped_column(BigInteger)


class SurveillanceAction(Base):
    """An automatic response applied to one account for one alert, and its reversal."""

    __tablename__ = "surveillance_actions"
    __table_args__ = (
        # Exactly once: one action of a kind per alert and account, whatever replays.
        UniqueConstraint(
            "alert_id", "account_id", "action", name="uq_surveillance_actions_alert_account"
        ),
        Index("ix_surveillance_actions_account", "account_id", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    alert_id: Mapped[str] = mapped_column(String(36), index=True)
    account_id: Mapped[str] = mapped_column(String(36))
    action: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(12))
    # The policy row that asked for it: its type, threshold and the alert's score.
    rule: Mapped[dict[str, Any]] = mapped_column(JSON)
    # What it changed: the account status before and after, the orders it cancelled.
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    applied_ns: Mapped[int] = mapped_column(BigInteger)
    reversed_by: Mapped[str | None] = mapped_column(String(120))
    reversed_ns: Mapped[int | None] = mapped_column(BigInteger)
    reverse_reason: Mapped[str | None] = mapped_column(ScrubbedText())


class SurveillanceReport(Base):
    """The suspicious-activity report draft of a case closed as reported, and its filing."""

    __tablename__ = "surveillance_reports"
    __table_args__ = (Index("ix_surveillance_reports_due", "filed_ns", "due_ns"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(36), unique=True)
    detected_ns: Mapped[int] = mapped_column(BigInteger)
    suspect_identified: Mapped[bool] = mapped_column(Boolean)
    # The end of the last day to file on (UTC): overdue from then while not filed.
    due_ns: Mapped[int] = mapped_column(BigInteger)
    draft: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_ns: Mapped[int] = mapped_column(BigInteger)
    filed_ns: Mapped[int | None] = mapped_column(BigInteger)
    filing_reference: Mapped[str | None] = mapped_column(String(100))
