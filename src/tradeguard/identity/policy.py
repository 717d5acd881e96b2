"""Identity policy values (timeouts, limits, relying party) taken from Settings once."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from tradeguard.access.domain import STAFF_ROLES, Role
from tradeguard.core.clock import NS_PER_SECOND


@dataclass(frozen=True, slots=True)
class IdentityPolicy:
    origin: str = "https://localhost:8443"
    rp_id: str = "localhost"
    rp_name: str = "tradeguard"
    audience: str = "tradeguard-api"
    trader_idle_seconds: int = 1800
    staff_idle_seconds: int = 900
    step_up_seconds: int = 600
    max_failures: int = 5
    lockout_seconds: int = 900
    ip_max_failures: int = 50
    refresh_grace_seconds: int = 10
    signup_max_per_network: int = 20
    verify_resend_max_per_address: int = 3
    verify_resend_max_per_network: int = 20
    sms_max_per_user: int = 10
    sms_max_per_number: int = 5
    sms_max_per_network: int = 30
    max_pending_factors: int = 3
    pending_factor_seconds: int = 900
    device_recognition_seconds: int = 30 * 86_400
    session_lifetime_seconds: int = 24 * 3600  # SESS-2: refresh tokens live 24 hours
    mfa_ticket_seconds: int = 300
    email_token_seconds: int = 24 * 3600
    reset_token_seconds: int = 1800
    recent_login_seconds: int = 600
    max_ticket_attempts: int = 5
    # Wrong second-factor codes per user per window before the account locks (TOTP guessing
    # needs ~10^5 tries; back-off after the first few keeps a burst from getting near that).
    max_mfa_failures: int = 10
    sms_enabled: bool = True

    @property
    def issuer(self) -> str:
        return self.origin

    @property
    def host(self) -> str:
        return urlsplit(self.origin).hostname or self.rp_id

    def idle_ns(self, role: Role) -> int:
        seconds = self.staff_idle_seconds if role in STAFF_ROLES else self.trader_idle_seconds
        return seconds * NS_PER_SECOND

    def ns(self, seconds: int) -> int:
        return seconds * NS_PER_SECOND
