"""Back-office vocabulary: audit events, access-log actions, unmaskable fields, the rules
for a stated reason, staff pseudonyms and the problems staff actions can meet (pure)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from enum import StrEnum

from tradeguard.core.errors import Conflict, Forbidden, InvalidInput
from tradeguard.identity.devices import plain_text
from tradeguard.trading.domain import StaffAccountAction


class BackofficeEvent(StrEnum):
    CUSTOMER_VIEWED = "backoffice:customer:viewed"
    CUSTOMER_UNMASKED = "backoffice:customer:unmasked"
    CUSTOMERS_SEARCHED = "backoffice:customer:searched"
    CUSTOMER_SEARCH_THROTTLED = "backoffice:customer:search_throttled"
    USERS_LISTED = "backoffice:user:listed"
    USER_LOCKED = "backoffice:user:locked"
    USER_UNLOCKED = "backoffice:user:unlocked"
    USER_ROLE_CHANGED = "backoffice:user:role_changed"
    USER_SIGNED_OUT = "backoffice:user:signed_out"
    FACTOR_RESET_REQUESTED = "backoffice:factor_reset:requested"
    FACTOR_RESET_APPROVED = "backoffice:factor_reset:approved"
    FACTOR_RESET_REFUSED = "backoffice:factor_reset:refused"


class AccessAction(StrEnum):
    """What a customer's access log says a staff member did (stable; clients branch on it)."""

    PROFILE_VIEWED = "profile_viewed"
    FIELD_UNMASKED = "field_unmasked"
    ACCOUNT_LOCKED = "account_locked"
    ACCOUNT_UNLOCKED = "account_unlocked"
    ROLE_CHANGED = "role_changed"
    SIGNED_OUT = "signed_out"
    FACTOR_RESET_REQUESTED = "factor_reset_requested"
    FACTOR_RESET_REFUSED = "factor_reset_refused"
    FACTORS_RESET = "factors_reset"
    # Staff trading routes (/api/v1/admin/accounts...), one per StaffAccountAction.
    TRADING_ACCOUNTS_LISTED = "trading_accounts_listed"
    TRADING_ACCOUNT_VIEWED = "trading_account_viewed"
    TRADING_ACCOUNT_OPENED = "trading_account_opened"
    CASH_ADJUSTED = "cash_adjusted"
    TRADING_ACCOUNT_STATUS_CHANGED = "trading_account_status_changed"
    TRADING_LIMITS_CHANGED = "trading_limits_changed"
    LOCATE_RECORDED = "locate_recorded"
    ORDER_CANCELLED_BY_STAFF = "order_cancelled_by_staff"
    TRADING_ACCOUNT_HALTED = "trading_account_halted"
    TRADING_ACCOUNT_RESUMED = "trading_account_resumed"


ACTION_TEXT: dict[AccessAction, str] = {
    AccessAction.PROFILE_VIEWED: "viewed your profile (personal data masked)",
    AccessAction.FIELD_UNMASKED: "revealed one masked detail of your profile",
    AccessAction.ACCOUNT_LOCKED: "locked your account",
    AccessAction.ACCOUNT_UNLOCKED: "unlocked your account",
    AccessAction.ROLE_CHANGED: "changed your account's role",
    AccessAction.SIGNED_OUT: "signed you out of every session",
    AccessAction.FACTOR_RESET_REQUESTED: "asked for a reset of your sign-in factors",
    AccessAction.FACTOR_RESET_REFUSED: "refused a reset of your sign-in factors",
    AccessAction.FACTORS_RESET: "removed your sign-in factors (approved by a second admin)",
    AccessAction.TRADING_ACCOUNTS_LISTED: (
        "saw your trading accounts in a list of accounts (account numbers masked)"
    ),
    AccessAction.TRADING_ACCOUNT_VIEWED: (
        "viewed a trading account with its balances (account number masked)"
    ),
    AccessAction.TRADING_ACCOUNT_OPENED: "opened a trading account for you",
    AccessAction.CASH_ADJUSTED: "credited or debited cash in a trading account",
    AccessAction.TRADING_ACCOUNT_STATUS_CHANGED: (
        "changed a trading account's status or trading state"
    ),
    AccessAction.TRADING_LIMITS_CHANGED: "changed a trading account's risk limits",
    AccessAction.LOCATE_RECORDED: "recorded a locate (shares to borrow) for a trading account",
    AccessAction.ORDER_CANCELLED_BY_STAFF: "cancelled an open order in a trading account",
    AccessAction.TRADING_ACCOUNT_HALTED: (
        "halted trading in a trading account (no new orders; resting orders cancelled)"
    ),
    AccessAction.TRADING_ACCOUNT_RESUMED: "lifted the trading halt on a trading account",
}

# What each staff trading action is in the customer's log (trading names its own actions: it
# cannot import this module).
STAFF_ACCOUNT_ACTIONS: dict[StaffAccountAction, AccessAction] = {
    StaffAccountAction.ACCOUNTS_LISTED: AccessAction.TRADING_ACCOUNTS_LISTED,
    StaffAccountAction.ACCOUNT_VIEWED: AccessAction.TRADING_ACCOUNT_VIEWED,
    StaffAccountAction.ACCOUNT_OPENED: AccessAction.TRADING_ACCOUNT_OPENED,
    StaffAccountAction.CASH_ADJUSTED: AccessAction.CASH_ADJUSTED,
    StaffAccountAction.STATUS_CHANGED: AccessAction.TRADING_ACCOUNT_STATUS_CHANGED,
    StaffAccountAction.LIMITS_CHANGED: AccessAction.TRADING_LIMITS_CHANGED,
    StaffAccountAction.LOCATE_RECORDED: AccessAction.LOCATE_RECORDED,
    StaffAccountAction.ORDER_CANCELLED: AccessAction.ORDER_CANCELLED_BY_STAFF,
    StaffAccountAction.ACCOUNT_HALTED: AccessAction.TRADING_ACCOUNT_HALTED,
    StaffAccountAction.ACCOUNT_RESUMED: AccessAction.TRADING_ACCOUNT_RESUMED,
}


class FieldKind(StrEnum):
    """What an access-log entry points at: the masked values of a profile that may be
    revealed, one at a time (only those `FIELD_PATTERN` accepts), and the trading account
    a staff trading action was on."""

    EMAIL = "email"
    PHONE = "phone"
    ACCOUNT_NUMBER = "account_number"
    DEVICE_IP = "device_ip"
    SIGN_IN_IP = "sign_in_ip"
    TRADING_ACCOUNT = "trading_account"


FIELD_TEXT: dict[FieldKind, str] = {
    FieldKind.EMAIL: "your email address",
    FieldKind.PHONE: "a phone number of a text-message factor",
    FieldKind.ACCOUNT_NUMBER: "a trading account number",
    FieldKind.DEVICE_IP: "the last address of a device",
    FieldKind.SIGN_IN_IP: "the address of a sign-in",
    FieldKind.TRADING_ACCOUNT: "the trading account with this id (see your accounts)",
}
# `email`, or a kind and the id of the factor, account, device or session it belongs to
# (never `trading_account:`: that names an account, not a value to reveal).
FIELD_PATTERN = re.compile(
    r"^(?:email|(?:phone|account_number|device_ip|sign_in_ip):[0-9a-f]{8}-[0-9a-f]{4}-"
    r"[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
)


@dataclass(frozen=True, slots=True)
class FieldRef:
    kind: FieldKind
    owner_id: str | None  # the factor, account, device or session; None for the email

    @property
    def name(self) -> str:
        return self.kind.value if self.owner_id is None else f"{self.kind.value}:{self.owner_id}"


def parse_field(raw: str) -> FieldRef:
    """A field reference as the profile names it; InvalidInput for anything else."""
    if not FIELD_PATTERN.fullmatch(raw):
        raise InvalidInput(
            "field must be one the profile names: email, or phone:, account_number:, "
            "device_ip: or sign_in_ip: followed by an id"
        )
    kind, _, owner = raw.partition(":")
    return FieldRef(FieldKind(kind), owner or None)


# A reason is read by the customer and by reviewers: long enough to say something, short
# enough to read, and plain text (it is shown in the customer's log and in emails).
REASON_MIN_CHARS = 10
REASON_MAX_CHARS = 500


def stated_reason(raw: str) -> str:
    """The reason as stored and shown: plain text on one line; InvalidInput if too short."""
    text = plain_text(raw, limit=REASON_MAX_CHARS)
    if len(text) < REASON_MIN_CHARS:
        raise InvalidInput(
            f"give a reason of at least {REASON_MIN_CHARS} characters of plain text "
            "(it is audited and shown to the customer)"
        )
    if not _says_something(text):
        raise InvalidInput(
            "give a real reason: at least two words, e.g. the ticket and what the customer "
            "asked (it is audited and shown to the customer)"
        )
    return text


def _says_something(text: str) -> bool:
    """At least two words with letters in them, and not one character repeated."""
    words = [w for w in text.split() if any(ch.isalpha() for ch in w)]
    return len(words) >= 2 and len({ch.lower() for ch in text if ch.isalnum()}) >= 4


def staff_pseudonym(key: bytes, actor: str) -> str:
    """A stable code for one staff member or operator, shown to customers instead of a name.

    Keyed (HMAC), so nobody outside the firm can link a code to a staff id; compliance maps
    it back through the ledger, which records the actor itself.
    """
    digest = hmac.new(key, actor.encode(), hashlib.sha256).digest()
    return base64.b32encode(digest[:5]).decode()[:8]


class SelfActionRefused(Forbidden):
    """Staff never act on their own account through the staff tools (separation of duties)."""

    slug = "self-action-refused"
    title = "Staff tools cannot act on your own account"


class SecondApproverRequired(Forbidden):
    """The admin who asked for a factor reset cannot also approve it (four-eyes rule)."""

    slug = "second-approver-required"
    title = "A different admin must approve this"


class ResetRequestClosed(Conflict):
    """The factor-reset request was already decided, or expired before approval."""

    slug = "reset-request-closed"
    title = "This reset request is no longer open"


class ResetAlreadyPending(Conflict):
    slug = "reset-already-pending"
    title = "A reset request for this user is already waiting for approval"


class StaffStaysStaff(Conflict):
    """A staff account never becomes a customer account: the other half of "a customer
    account cannot become staff". Demoting staff to TRADER would leave an account that can
    never be staff again and whose email can never be invited again; off-boarding is a lock.
    """

    slug = "staff-stays-staff"
    title = "A staff account cannot become a customer account"


class NothingToChange(Conflict):
    slug = "nothing-to-change"
    title = "The account is already in that state"
