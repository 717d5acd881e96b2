"""Trading and risk audit event types (`source:subject:action`), defined once (AUD-1)."""

from __future__ import annotations

from enum import StrEnum


class TradingEvent(StrEnum):
    INSTRUMENT_CREATED = "trading:instrument:created"
    INSTRUMENT_UPDATED = "trading:instrument:updated"
    RESTRICTED_ADDED = "trading:restricted_list:added"
    RESTRICTED_REMOVED = "trading:restricted_list:removed"
    ACCOUNT_OPENED = "trading:account:opened"
    ACCOUNTS_LISTED = "trading:account:listed"
    # An operator's read of one account at the console (over the API the permission check
    # is the ledger record of a read).
    ACCOUNT_VIEWED = "trading:account:viewed"
    ACCOUNT_STATUS_CHANGED = "trading:account:status_changed"
    ACCOUNT_TRADING_STATE_CHANGED = "trading:account:trading_state_changed"
    ACCOUNT_LIMITS_CHANGED = "trading:account:limits_changed"
    ACCOUNT_ADJUSTED = "trading:account:adjusted"
    ORDER_PLACED = "trading:order:placed"
    ORDER_REJECTED = "trading:order:rejected"
    ORDER_REPLACED = "trading:order:replaced"
    ORDER_CANCELLED = "trading:order:cancelled"
    ORDER_EXPIRED = "trading:order:expired"
    ORDER_FILLED = "trading:order:filled"
    EXECUTION_CREATED = "trading:execution:created"
    EXECUTION_REVERSED = "trading:execution:reversed"
    SETTLEMENT_POSTED = "trading:settlement:posted"
    HALT_STARTED = "trading:halt:started"
    HALT_RESUMED = "trading:halt:resumed"
    RECONCILED = "trading:journal:reconciled"


class RiskEvent(StrEnum):
    PRETRADE_REJECTED = "risk:pretrade:rejected"
    LOCATE_GRANTED = "risk:locate:granted"
    LOCATE_REFUSED = "risk:locate:refused"
    FAIL_OPENED = "risk:settlement_fail:opened"
    FAIL_CLOSED = "risk:settlement_fail:closed"
    FAIL_DEADLINE_MISSED = "risk:settlement_fail:deadline_missed"
    ALERT_RAISED = "risk:alert:raised"
