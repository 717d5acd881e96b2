"""Why a backup is refused: one error type with a stable reason code per failure."""

from __future__ import annotations

from enum import StrEnum

from tradeguard.core.errors import TradeguardError


class RejectReason(StrEnum):
    NOT_A_BACKUP = "NOT_A_BACKUP"
    MANIFEST_MALFORMED = "MANIFEST_MALFORMED"
    SIGNATURE_INVALID = "SIGNATURE_INVALID"
    PAIR_MISMATCH = "PAIR_MISMATCH"
    FILE_NAME_MISMATCH = "FILE_NAME_MISMATCH"
    TRUNCATED = "TRUNCATED"
    MALFORMED_CHUNK = "MALFORMED_CHUNK"
    TRAILING_DATA = "TRAILING_DATA"
    SIZE_MISMATCH = "SIZE_MISMATCH"
    HASH_MISMATCH = "HASH_MISMATCH"
    CHUNK_NOT_AUTHENTIC = "CHUNK_NOT_AUTHENTIC"
    DECOMPRESSION_FAILED = "DECOMPRESSION_FAILED"
    DATA_KEY_UNAVAILABLE = "DATA_KEY_UNAVAILABLE"
    # A backup of the other database (the card vault's given to `backup`, or the platform's
    # to `vault backup`): each opens only under its own key hierarchy.
    WRONG_DATABASE = "WRONG_DATABASE"


class BackupRejected(TradeguardError):
    """A backup that does not verify; `reason` is stable, the detail says what differs."""

    status = 422
    slug = "backup-rejected"
    title = "The backup does not verify"

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(detail, reason=reason.value)
        self.reason = reason


class BackupRefused(TradeguardError):
    """A backup or restore that cannot be done here (a non-empty target, a version mismatch,
    a missing tool); nothing was changed."""

    status = 409
    slug = "backup-refused"
    title = "The backup operation was refused"
