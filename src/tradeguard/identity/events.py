"""Identity audit event types (`identity:subject:action`), defined once."""

from __future__ import annotations

from enum import StrEnum


class IdentityEvent(StrEnum):
    USER_REGISTERED = "identity:user:registered"
    USER_CREATED = "identity:user:created"
    EMAIL_VERIFIED = "identity:email:verified"
    EMAIL_VERIFICATION_RESENT = "identity:email:verification_resent"
    EMAIL_PROVED = "identity:email:proved"
    # ACCT-2: the email and SMS codes that confirm one sensitive action (a withdrawal).
    ACTION_CODES_SENT = "identity:action:codes_sent"
    ACTION_CONFIRMED = "identity:action:confirmed"
    LOGIN_SUCCEEDED = "identity:login:succeeded"
    LOGIN_FAILED = "identity:login:failed"
    LOGIN_THROTTLED = "identity:login:throttled"
    # A staff member proved at the command line (`--as`) with a console code that their
    # hardware-key session issued: no session follows.
    CONSOLE_VERIFIED = "identity:console:verified"
    CONSOLE_CODE_ISSUED = "identity:console:code_issued"
    QUOTA_EXCEEDED = "identity:quota:exceeded"
    LOGIN_MFA_REQUIRED = "identity:login:mfa_required"
    ACCOUNT_LOCKED = "identity:account:locked"
    MFA_VERIFIED = "identity:mfa:verified"
    MFA_FAILED = "identity:mfa:failed"
    FACTOR_ENROLLED = "identity:factor:enrolled"
    FACTOR_CONFIRMED = "identity:factor:confirmed"
    FACTOR_REMOVED = "identity:factor:removed"
    FACTOR_CLONE_SUSPECTED = "identity:factor:clone_suspected"
    BACKUP_CODES_GENERATED = "identity:backup_codes:generated"
    BACKUP_CODE_USED = "identity:backup_codes:used"
    SESSION_CREATED = "identity:session:created"
    SESSION_REFRESHED = "identity:session:refreshed"
    SESSION_REVOKED = "identity:session:revoked"
    REFRESH_REUSE_DETECTED = "identity:session:refresh_reuse_detected"
    DEVICE_SEEN = "identity:device:seen"
    DEVICE_AUTHORIZED = "identity:device:authorized"
    DEVICE_REVOKED = "identity:device:revoked"
    IP_ALLOWLIST_CHANGED = "identity:ip_allowlist:changed"
    IP_REFUSED = "identity:ip_allowlist:refused"
    PASSWORD_RESET_REQUESTED = "identity:password:reset_requested"  # noqa: S105 - event name
    PASSWORD_CHANGED = "identity:password:changed"  # noqa: S105 - event name
    EMAIL_CHANGE_REQUESTED = "identity:email:change_requested"
    EMAIL_CHANGED = "identity:email:changed"
    # Staff administration of an account (identity/administration.py, issue #8).
    USER_LOCKED = "identity:user:locked"
    USER_UNLOCKED = "identity:user:unlocked"
    ROLE_CHANGED = "identity:user:role_changed"
    FACTORS_RESET = "identity:factors:reset"
