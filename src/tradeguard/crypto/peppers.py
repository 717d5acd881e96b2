"""Every purpose that `Keyring.derive_secret` serves (HMAC peppers): the one list of them.

A pepper is a 32-byte secret that keys an HMAC over values stored or compared later
(throttle counter keys, one-time and backup codes, staff pseudonyms). Before KMS support
each was derived (HKDF) from the local master key; a master-key rotation or a move to a KMS
stores each one wrapped in the key table (`kind = secret`), so the values already stored
keep matching. `derive_secret` refuses a purpose that is not listed here: a new pepper is
added to this list, or it would be lost at the next master-key rotation.
"""

from __future__ import annotations

from typing import Final

COUNTER_KEY_PEPPER: Final = "identity.counter_keys"
BACKUP_CODES_PEPPER: Final = "identity.backup_codes"
OTP_CODES_PEPPER: Final = "identity.otp_codes"
ALERTS_NETWORK_PEPPER: Final = "access.alerts.network"
STAFF_PSEUDONYM_PEPPER: Final = "backoffice.staff_pseudonym"
QUERY_DIGEST_PEPPER: Final = "backoffice.search_query"
# Funds (issue #11): the sandbox processor derives its micro-deposit statements and signs
# its transfer references with this.
FUNDS_SANDBOX_PEPPER: Final = "funds.sandbox"

PEPPER_PURPOSES: Final = (
    COUNTER_KEY_PEPPER,
    BACKUP_CODES_PEPPER,
    OTP_CODES_PEPPER,
    ALERTS_NETWORK_PEPPER,
    STAFF_PSEUDONYM_PEPPER,
    QUERY_DIGEST_PEPPER,
    FUNDS_SANDBOX_PEPPER,
)
