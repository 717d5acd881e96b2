"""API request and response bodies of the back office (pydantic v2, extra fields refused).

Timestamps are RFC 3339 strings with nanoseconds; masked values travel with the field name
that reveals them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from tradeguard.access.domain import Role
from tradeguard.backoffice.domain import REASON_MAX_CHARS

Reason = Annotated[
    str,
    Field(
        min_length=1,
        max_length=REASON_MAX_CHARS,
        description="Why, in plain text (10 to 500 characters once markup and control "
        "characters are removed). Audited, and shown to the customer in their access log.",
        examples=["Customer called about a rejected order; confirming the email on file"],
    ),
]
FieldName = Annotated[
    str,
    Field(
        min_length=5,
        max_length=60,
        description="A field named by the profile: `email`, or `phone:<factor id>`, "
        "`account_number:<account id>`, `device_ip:<device id>`, `sign_in_ip:<session id>`.",
        examples=["email"],
    ),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# Requests -------------------------------------------------------------------------------------


class UnmaskIn(Strict):
    field: FieldName
    reason: Reason


class ReasonIn(Strict):
    reason: Reason


class RoleIn(Strict):
    role: Role
    reason: Reason


class ApproveIn(Strict):
    note: Reason | None = None


# Responses ------------------------------------------------------------------------------------


class AccessLogQuery(Strict):
    """Query parameters of the customer's access log; unknown ones are refused (422), as the
    other filtered lists do (`access/alerts_schemas.AlertQuery`), so a misspelt parameter
    is an error instead of a silently unfiltered answer."""

    cursor: str | None = Field(
        default=None,
        max_length=80,
        description="`next_cursor` of the previous page (opaque).",
    )
    limit: int = Field(default=50, ge=1, le=100, description="Entries per page.")


class MaskedValueOut(Output):
    field: str = Field(description="The name to reveal this value by (POST .../unmask)")
    masked: str | None


class PhoneOut(Output):
    factor_id: str
    label: str
    number: MaskedValueOut


class FactorOut(Output):
    id: str
    kind: str
    label: str
    status: str
    created_at: str
    last_used_at: str | None


class AccountOut(Output):
    id: str
    number: MaskedValueOut
    type: str
    status: str
    trading_state: str
    created_at: str


class DeviceOut(Output):
    id: str
    name: str
    authorized: bool
    created_at: str
    last_seen_at: str
    last_ip: MaskedValueOut


class SignInOut(Output):
    session_id: str
    at: str
    last_seen_at: str
    methods: list[str]
    ip: MaskedValueOut
    user_agent: str | None
    active: bool
    ended_reason: str | None


class CustomerProfileOut(Output):
    id: str
    username: str
    email: MaskedValueOut
    email_verified: bool
    status: str
    created_at: str
    phones: list[PhoneOut]
    factors: list[FactorOut]
    accounts: list[AccountOut]
    devices: list[DeviceOut]
    recent_sign_ins: list[SignInOut]


class CustomerHitOut(Output):
    id: str
    username: str
    email: MaskedValueOut
    status: str
    created_at: str


class UnmaskedOut(Output):
    field: str
    value: str | None = Field(description="The clear value (null when none is stored)")


class UserOut(Output):
    id: str
    username: str
    email: MaskedValueOut
    role: str
    status: str
    created_at: str


class UserPageOut(Output):
    items: list[UserOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page")


class LockOut(Output):
    user_id: str
    status: Literal["locked"]
    sessions_ended: int


class UnlockOut(Output):
    user_id: str
    status: Literal["active"]
    cleared: list[str] = Field(
        description="What was lifted: staff_lock, second_factor_lock, sign_in_throttle"
    )


class RoleOut(Output):
    user_id: str
    previous_role: str
    role: str
    sessions_ended: int
    needs_security_key: bool = Field(
        description="A staff role's permissions work only once the user has enrolled a "
        "security key or passkey"
    )


class SignOutOut(Output):
    user_id: str
    sessions_ended: int


class FactorResetOut(Output):
    id: str
    user_id: str
    requested_by: str
    reason: str
    status: Literal["pending", "approved", "refused", "expired"]
    created_at: str
    expires_at: str
    decided_by: str | None
    decided_at: str | None
    decision_note: str | None


class AccessLogEntryOut(Output):
    id: str
    at: str
    staff_role: str = Field(description="ADMIN, COMPLIANCE, SUPPORT or OPERATOR")
    staff_pseudonym: str = Field(
        description="A stable code for the staff member (quote it to us; never their name)"
    )
    action: str
    description: str
    field: str | None
    field_description: str | None
    reason: str | None


class AccessLogOut(Output):
    items: list[AccessLogEntryOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for older entries")
