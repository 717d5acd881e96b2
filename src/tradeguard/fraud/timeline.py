"""Account recovery (ATO-3): the vocabulary of a recovery case, the comparison of what a
caller states with the record on file, and the plain-language activity timeline built from
ledger events.

Pure: no database, no framework. Timeline entries carry only what staff need to judge the
activity: the event's sequence number (its place in the hash chain), what happened in plain
words, and references (orders, executions, withdrawals). Personal data comes only from an
event's sealed personal section, opened by the caller, and only masked (an address shows its
network, `203.0.*.*`, never the connection).
"""

from __future__ import annotations

import hmac
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any, Final

from tradeguard.core.masking import mask_ip

RECORD_ATTEMPTS: Final = 3
RECORD_WINDOW_DAYS: Final = 30
DEFAULT_LOOKBACK_DAYS: Final = 30
MAX_LOOKBACK_DAYS: Final = 365


class CaseStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class CaseOutcome(StrEnum):
    RECOVERED = "recovered"
    NOT_A_TAKEOVER = "not_a_takeover"
    CLOSED_WITHOUT_RECOVERY = "closed_without_recovery"


class VerifyMethod(StrEnum):
    KYC_RECORD = "kyc_record"
    DOCUMENT = "document"


class ProposalAction(StrEnum):
    """The consequential steps: one member proposes, a different one approves."""

    RESET_CREDENTIALS = "reset_credentials"
    REVERSE_EXECUTION = "reverse_execution"
    CLOSE = "close"


class ProposalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    WITHDRAWN = "withdrawn"


class MarkKind(StrEnum):
    EXECUTION = "execution"  # to reverse
    WITHDRAWAL = "withdrawal"  # to chase with the bank
    OTHER = "other"


class RecoveryEvent(StrEnum):
    """Ledger event types of account recovery (`fraud:recovery:action`), defined once."""

    OPENED = "fraud:recovery:opened"
    VERIFIED = "fraud:recovery:identity_verified"
    VERIFICATION_FAILED = "fraud:recovery:identity_not_verified"
    PROPOSED = "fraud:recovery:proposed"
    PROPOSAL_WITHDRAWN = "fraud:recovery:proposal_withdrawn"
    APPROVED = "fraud:recovery:approved"
    CREDENTIALS_RESET = "fraud:recovery:credentials_reset"
    TIMELINE_VIEWED = "fraud:recovery:timeline_viewed"
    MARKED = "fraud:recovery:marked"
    CLOSED = "fraud:recovery:closed"


# The caller's statements against the record -------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatedIdentity:
    """What the caller says, as staff typed it (never stored, never logged)."""

    birth_date: date
    postal_code: str
    tax_id_last4: str


def _postal(value: str | None) -> bytes:
    # Case, spaces and hyphens differ in how people write a postal code, not in which it is.
    text = unicodedata.normalize("NFKC", value or "").upper()
    return re.sub(r"[\s-]", "", text).encode()


def record_matches(
    stated: StatedIdentity,
    *,
    birth_date: date | None,
    postal_code: str | None,
    tax_id_last4: str | None,
) -> bool:
    """All three must match the record; a field missing from the record never matches.

    Every field is compared whatever the others gave, and the tax id's digits and the postal
    code in constant time, so neither the answer's timing nor its content tells the caller
    which field was wrong."""
    birth_ok = birth_date is not None and stated.birth_date == birth_date
    postal_ok = bool(postal_code) and hmac.compare_digest(
        _postal(stated.postal_code), _postal(postal_code)
    )
    tax_ok = tax_id_last4 is not None and hmac.compare_digest(
        stated.tax_id_last4.encode(), tax_id_last4.strip().encode()
    )
    return birth_ok & postal_ok & tax_ok


# The timeline -------------------------------------------------------------------------------


class Category(StrEnum):
    SIGN_IN = "sign_in"
    SECURITY = "security"
    ORDER = "order"
    EXECUTION = "execution"
    DEPOSIT = "deposit"
    WITHDRAWAL = "withdrawal"
    BANK_ACCOUNT = "bank_account"
    TAKEOVER = "takeover"
    RECOVERY = "recovery"


# (type prefix, category), first match wins; events of other types (staff reading the
# account, reconciliation, ...) are not the customer's activity and stay out.
_CATEGORIES: Final[tuple[tuple[str, Category], ...]] = (
    ("identity:login:", Category.SIGN_IN),
    ("identity:session:created", Category.SIGN_IN),
    ("identity:session:revoked", Category.SECURITY),
    ("identity:password:", Category.SECURITY),
    ("identity:email:change", Category.SECURITY),
    ("identity:factor:", Category.SECURITY),
    ("identity:factors:", Category.SECURITY),
    ("identity:backup_codes:", Category.SECURITY),
    ("identity:device:", Category.SECURITY),
    ("identity:ip_allowlist:changed", Category.SECURITY),
    ("identity:account:locked", Category.SECURITY),
    ("trading:order:", Category.ORDER),
    ("trading:execution:", Category.EXECUTION),
    ("funds:deposit:", Category.DEPOSIT),
    ("funds:withdrawal:", Category.WITHDRAWAL),
    ("funds:bank_account:", Category.BANK_ACCOUNT),
    ("fraud:recovery:", Category.RECOVERY),
    ("fraud:", Category.TAKEOVER),
)

_LINES: Final[Mapping[str, str]] = {
    "identity:login:succeeded": "Signed in",
    "identity:login:failed": "Sign-in failed",
    "identity:login:throttled": "Sign-in refused: too many attempts",
    "identity:login:mfa_required": "Password accepted; second factor asked for",
    "identity:session:created": "New session started",
    "identity:session:revoked": "Session ended",
    "identity:password:changed": "Password changed",
    "identity:password:reset_requested": "Password reset link requested",
    "identity:email:change_requested": "Change of email address requested",
    "identity:email:changed": "Email address changed",
    "identity:factor:enrolled": "Second factor enrolment started",
    "identity:factor:confirmed": "Second factor added",
    "identity:factor:removed": "Second factor removed",
    "identity:factors:reset": "Every second factor removed by staff",
    "identity:backup_codes:generated": "New backup codes generated",
    "identity:backup_codes:used": "Backup code used",
    "identity:device:authorized": "New device authorized",
    "identity:device:revoked": "Device removed",
    "identity:account:locked": "Account locked after failed attempts",
    "trading:order:placed": "Order placed",
    "trading:order:cancelled": "Order cancelled",
    "trading:order:filled": "Order filled",
    "trading:order:rejected": "Order rejected",
    "trading:execution:created": "Trade executed",
    "trading:execution:reversed": "Trade reversed",
    "funds:deposit:requested": "Deposit requested",
    "funds:deposit:credited": "Deposit credited",
    "funds:withdrawal:requested": "Withdrawal requested",
    "funds:withdrawal:sent": "Withdrawal sent to the bank",
    "funds:withdrawal:completed": "Withdrawal paid out",
    "funds:withdrawal:refused": "Withdrawal refused",
    "funds:bank_account:added": "Bank account added",
    "funds:bank_account:removed": "Bank account removed",
    "fraud:signal:raised": "Takeover signal",
    "fraud:sign_in:assessed": "Sign-in assessed",
    "fraud:prompt:sent": '"Was this you?" sent to the owner',
    "fraud:prompt:confirmed": 'Owner answered "yes, it was me"',
    "fraud:prompt:denied": 'Owner answered "no, it was not me"',
    "fraud:withdrawals:frozen": "Withdrawals frozen",
    "fraud:freeze:lifted": "Withdrawal freeze lifted",
    "fraud:review:opened": "Takeover review opened",
    "fraud:review:closed": "Takeover review closed",
}

# Plain data fields shown as references (ids staff follow up, never personal data).
_REFERENCES: Final = (
    "order_id",
    "execution_id",
    "withdrawal_id",
    "deposit_id",
    "bank_account_id",
    "session_id",
    "device_id",
    "review_id",
    "freeze_id",
)


def category_of(event_type: str) -> Category | None:
    for prefix, category in _CATEGORIES:
        if event_type.startswith(prefix):
            return category
    return None


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    seq: int
    occurred_ns: int
    type: str
    category: Category
    line: str
    actor: str | None
    references: Mapping[str, str] = field(default_factory=dict)
    country: str | None = None
    network: str | None = None
    # The client's network, masked, from the sealed personal section (None: none recorded;
    # "[erased]" style values stay hidden).
    ip: str | None = None


def _words(event_type: str) -> str:
    return event_type.split(":", 1)[-1].replace(":", " ").replace("_", " ").capitalize()


def _detail(event_type: str, data: Mapping[str, Any]) -> str:
    if event_type.startswith("trading:execution:"):
        verb = "bought" if data.get("side") == "buy" else "sold"
        return f": {verb} {data.get('quantity')} {data.get('symbol')} at {data.get('price')}"
    if event_type.startswith("trading:order:"):
        price = data.get("limit_price")
        at = f" limit {price}" if price else ""
        return f": {data.get('side')} {data.get('quantity')} {data.get('symbol')}{at}"
    if event_type.startswith(("funds:deposit:", "funds:withdrawal:")) and data.get("amount"):
        return f": {data.get('amount')} {data.get('currency') or ''}".rstrip()
    if event_type == "fraud:signal:raised":
        return f": {str(data.get('signal', '')).replace('_', ' ')} (score {data.get('score')})"
    if event_type == "fraud:sign_in:assessed":
        where = data.get("country") or "an unknown country"
        network = f" ({data['network']})" if data.get("network") else ""
        return f" from {where}{network}: score {data.get('score')}, {data.get('response')}"
    if event_type == "identity:session:revoked" and data.get("reason"):
        return f" ({str(data['reason']).replace('_', ' ')})"
    return ""


def describe(seq: int, occurred_ns: int, document: Mapping[str, Any]) -> TimelineEntry | None:
    """One ledger event as a timeline entry, or None when it is not account activity."""
    event_type = str(document.get("type", ""))
    category = category_of(event_type)
    if category is None:
        return None
    raw = document.get("data")
    data: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    actor = document.get("actor")
    actor_text = f"{actor.get('kind')}:{actor.get('id')}" if isinstance(actor, Mapping) else None
    references = {name: str(data[name]) for name in _REFERENCES if isinstance(data.get(name), str)}
    personal = document.get("personal")
    ip = None
    if isinstance(personal, Mapping) and personal.get("ip") is not None:
        ip = mask_ip(str(personal["ip"]))
    country = data.get("country") if isinstance(data.get("country"), str) else None
    network = data.get("network") if isinstance(data.get("network"), str) else None
    line = _LINES.get(event_type) or _words(event_type)
    return TimelineEntry(
        seq=seq,
        occurred_ns=occurred_ns,
        type=event_type,
        category=category,
        line=line + _detail(event_type, data),
        actor=actor_text,
        references=references,
        country=country,
        network=network,
        ip=ip,
    )


def mark_kind(event_type: str) -> MarkKind:
    if event_type == "trading:execution:created":
        return MarkKind.EXECUTION
    if event_type.startswith("funds:withdrawal:"):
        return MarkKind.WITHDRAWAL
    return MarkKind.OTHER
