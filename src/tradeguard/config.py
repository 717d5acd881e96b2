"""Settings: safe defaults for embedded use, environment variables (TRADEGUARD_*) for production."""

from __future__ import annotations

import ipaddress
import re
from datetime import date
from decimal import Decimal
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from tradeguard.core.errors import ConfigurationError

ENV_PREFIX = "TRADEGUARD_"


# Private networks proper (RFC 1918, RFC 6598 shared space, IPv6 unique local), not every
# range `ipaddress` calls private: documentation, benchmarking and reserved ranges are not
# networks a vault is deployed on, and a typo into one should not pass.
PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)


def is_private_network(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return any(
        address.version == network.version and address in network for network in PRIVATE_NETWORKS
    )


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class TLSVersion(StrEnum):
    TLS1_2 = "1.2"
    TLS1_3 = "1.3"


class Settings(BaseSettings):
    """Every setting, with the environment variable that sets it (prefix TRADEGUARD_)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
        frozen=True,
    )

    env: Environment = Environment.DEVELOPMENT
    data_dir: Path = Path("var")
    database_url: str | None = None
    vault_database_url: str | None = None
    redis_url: str | None = None

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8443
    workers: Annotated[int, Field(ge=1, le=256)] = 1
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_min_version: TLSVersion = TLSVersion.TLS1_2

    max_body_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 1024 * 1024
    body_read_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 10.0
    keep_alive_timeout_seconds: Annotated[int, Field(ge=1, le=300)] = 5
    tls_handshake_timeout_seconds: Annotated[float, Field(gt=0, le=120)] = 10.0
    # A request head (request line and headers) not complete this long after the connection
    # opened, or after its first byte on a kept-alive connection, closes the connection.
    header_read_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 10.0
    # Connections one client address (IPv6: one /64) may hold open at once; behind a reverse
    # proxy all connections come from the proxy, so raise it there.
    max_connections_per_client: Annotated[int, Field(ge=1, le=1_000_000)] = 64

    # The server's longest wait for one PostgreSQL statement: a server that stops answering
    # turns into 503s within this time instead of requests that hang.
    database_command_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 15.0

    enable_api_docs: bool = True

    # Identity (AUTH, SESS, IAC-3). The public origin is what browsers show: the token issuer,
    # the base of every emailed link and the WebAuthn origin. Unset, it is derived from host
    # and port (`derived_public_origin`), and the RP ID from its host; WebAuthn binds
    # credentials to the RP ID.
    public_origin: str = ""
    webauthn_rp_id: str = ""
    webauthn_rp_name: str = "tradeguard"
    # Authenticator models (AAGUIDs) allowed to register; empty allows any. With attestation
    # "none" an AAGUID is the authenticator's own claim: a policy hint, not proof.
    webauthn_allowed_aaguids: list[str] = Field(default_factory=list)
    # Staff authenticators (IAC-3) must prove their model by attestation: a FIDO MDS3-style
    # file of allowed models (AAGUIDs) and their attestation roots, re-read when it changes.
    # Unset: the catalogue shipped with tradeguard (YubiKey 5 series, Google Titan v2).
    webauthn_staff_metadata_file: Path | None = None
    # How long a staff enrolment token from `tradeguard users invite-staff` can be redeemed.
    staff_enrolment_seconds: Annotated[int, Field(ge=300, le=7 * 86_400)] = 86_400
    jwt_audience: str = "tradeguard-api"
    # Optional k-anonymity breached-password service (HIBP range API format), e.g.
    # https://api.pwnedpasswords.com; only a 5-character hash prefix leaves the platform.
    breached_password_api_url: str | None = None
    breached_password_fail_closed: bool = False
    trader_idle_timeout_seconds: Annotated[int, Field(ge=60, le=86_400)] = 1800
    staff_idle_timeout_seconds: Annotated[int, Field(ge=60, le=900)] = 900
    step_up_window_seconds: Annotated[int, Field(ge=30, le=3600)] = 600
    login_max_failures: Annotated[int, Field(ge=3, le=100)] = 5
    login_lockout_seconds: Annotated[int, Field(ge=60, le=86_400)] = 900
    ip_max_failures: Annotated[int, Field(ge=10, le=10_000)] = 50
    # Staff access (IAC-1, IAC-4): just-in-time grants last at most their catalogue cap and
    # at most this; a pending request can be decided for this long; break-glass lasts at
    # most this; the access review flags permissions unused for this many days.
    access_grant_max_minutes: Annotated[int, Field(ge=1, le=7 * 24 * 60)] = 480
    access_request_ttl_minutes: Annotated[int, Field(ge=5, le=7 * 24 * 60)] = 24 * 60
    access_breakglass_max_minutes: Annotated[int, Field(ge=5, le=240)] = 60
    access_review_unused_days: Annotated[int, Field(ge=1, le=3650)] = 90
    refresh_grace_seconds: Annotated[int, Field(ge=0, le=60)] = 10
    # Abuse quotas. A client network is one IPv4 address or one IPv6 /64.
    signup_max_per_network: Annotated[int, Field(ge=1, le=10_000)] = 20  # per 15 minutes
    verify_resend_max_per_address: Annotated[int, Field(ge=1, le=100)] = 3  # per day
    verify_resend_max_per_network: Annotated[int, Field(ge=1, le=10_000)] = 20  # per 15 minutes
    # Text messages cost money and can be aimed at any number (toll fraud, SMS bombing).
    sms_max_per_user: Annotated[int, Field(ge=1, le=1000)] = 10  # per day
    sms_max_per_number: Annotated[int, Field(ge=1, le=1000)] = 5  # per day
    sms_max_per_network: Annotated[int, Field(ge=1, le=10_000)] = 30  # per hour
    max_pending_factors: Annotated[int, Field(ge=1, le=20)] = 3
    pending_factor_seconds: Annotated[int, Field(ge=60, le=86_400)] = 900
    # A sign-in without a device token is matched to a device of the same user with the same
    # fingerprint, seen from the same client network within this window; 0 switches it off.
    device_recognition_seconds: Annotated[int, Field(ge=0, le=90 * 86_400)] = 30 * 86_400
    log_level: str = "INFO"
    ledger_sequencer_interval_ms: Annotated[int, Field(ge=1, le=60_000)] = 50

    # Notifications (AUTH-4, AUTH-5, ACCT-2, HALT-3). Without an SMTP host, development writes
    # mail to <data_dir>/mailbox (`tradeguard dev mailbox`); production requires a relay.
    smtp_host: str | None = None
    smtp_port: Annotated[int, Field(ge=1, le=65535)] = 587
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 30.0
    mail_from: str = "tradeguard@localhost"
    sms_provider: Literal["file", "disabled"] = "file"
    notify_dispatch_interval_ms: Annotated[int, Field(ge=10, le=60_000)] = 1000

    # True when public_origin was not configured but derived from host and port.
    _origin_derived: bool = PrivateAttr(default=False)
    # Trading (PRE-1..4, REG-1, REG-3). `exchange` follows the NYSE calendar and session;
    # `always` keeps a simulated market open around the clock (the demo sets it).
    market_hours: Literal["exchange", "always"] = "exchange"
    # The simulated street: GBM quotes that keep every book alive (`off`: only customers).
    market_simulator: bool = True
    market_tick_ms: Annotated[int, Field(ge=10, le=60_000)] = 500
    market_volatility: Annotated[Decimal, Field(gt=0, le=5)] = Decimal("0.25")
    commission_per_share: Annotated[Decimal, Field(ge=0, le=1)] = Decimal("0.005")
    # Firm-wide pre-trade limits (SEC 15c3-5); accounts may carry tighter or looser overrides.
    # The defaults and their reasoning: risk/domain.py, RiskLimits.defaults(). The rate and
    # burst limits count the last 64 orders, so they are at most 64.
    risk_max_order_quantity: Annotated[int, Field(ge=1)] = 50_000
    risk_max_order_notional: Annotated[Decimal, Field(gt=0)] = Decimal(1_000_000)
    risk_duplicate_window_ms: Annotated[int, Field(ge=1, le=3_600_000)] = 5_000
    risk_max_orders_per_second: Annotated[int, Field(ge=1, le=64)] = 10
    risk_burst_window_seconds: Annotated[int, Field(ge=1, le=3600)] = 10
    risk_burst_max_orders: Annotated[int, Field(ge=1, le=64)] = 30
    risk_unusual_size_multiple: Annotated[Decimal, Field(gt=1)] = Decimal(20)
    risk_unusual_size_min_history: Annotated[int, Field(ge=1, le=64)] = 10
    risk_position_limit: Annotated[int, Field(ge=1)] = 100_000
    risk_gross_exposure_cap: Annotated[Decimal, Field(gt=0)] = Decimal(5_000_000)
    risk_daily_loss_limit: Annotated[Decimal, Field(gt=0)] = Decimal(50_000)
    risk_initial_margin_rate: Annotated[Decimal, Field(gt=0, le=1)] = Decimal("0.5")
    risk_stp_mode: Literal["cancel_newest", "cancel_oldest", "cancel_both", "decrement"] = (
        "cancel_newest"
    )
    # FINRA 4210(f)(8)(B) pattern day trading; configurable since FINRA proposed replacing it.
    pdt_day_trades: Annotated[int, Field(ge=1, le=100)] = 4
    pdt_window_days: Annotated[int, Field(ge=1, le=30)] = 5
    pdt_min_equity: Annotated[Decimal, Field(ge=0)] = Decimal(25_000)
    pdt_min_share: Annotated[Decimal, Field(ge=0, le=1)] = Decimal("0.06")
    # WebSocket streams: messages buffered per connection before a slow client is dropped.
    stream_send_buffer: Annotated[int, Field(ge=1, le=100_000)] = 256
    # Keep-alive: the server pings every stream this often and drops one whose pong does not
    # come back in time. Over TLS this is what bounds a client that stops reading: the TLS
    # transport takes writes without pushing back, so the send buffer above rarely fills.
    stream_ping_interval_seconds: Annotated[float, Field(ge=0.5, le=300)] = 20.0
    stream_ping_timeout_seconds: Annotated[float, Field(ge=0.5, le=300)] = 20.0

    # Money movement (issue #11, docs/funds.md). Withdrawal limits per customer across their
    # accounts (WDL-1: the firm's calendar day in funds_timezone; WDL-2: a rolling 7 days).
    funds_timezone: str = "America/New_York"
    funds_daily_withdrawal_limit: Annotated[Decimal, Field(gt=0)] = Decimal(50_000)
    funds_weekly_withdrawal_limit: Annotated[Decimal, Field(gt=0)] = Decimal(200_000)
    # WDL-3: withdrawals of at least this much wait for two staff members' approval.
    funds_review_threshold: Annotated[Decimal, Field(gt=0)] = Decimal(10_000)
    funds_min_withdrawal: Annotated[Decimal, Field(gt=0)] = Decimal(1)
    # WDL-4 and ATO-1: no withdrawal in an account's first hours, nor for a while after a
    # password, email, phone, second-factor or bank-account change; and a newly confirmed
    # bank account receives nothing for a while (time for its owner to notice).
    funds_new_account_cooling_hours: Annotated[int, Field(ge=0, le=24 * 90)] = 24
    funds_security_change_cooling_hours: Annotated[int, Field(ge=0, le=24 * 90)] = 24
    funds_new_destination_hold_hours: Annotated[int, Field(ge=0, le=24 * 90)] = 48
    # ACCT-2: a withdrawal's email and SMS codes must be confirmed within this, or it expires
    # and its cash comes back.
    funds_verify_minutes: Annotated[int, Field(ge=1, le=60)] = 15
    # Deposits: the largest single deposit, and the most a customer may have credited and
    # not yet collected (the firm's exposure to ACH returns).
    funds_max_deposit: Annotated[Decimal, Field(gt=0)] = Decimal(250_000)
    funds_max_uncollected: Annotated[Decimal, Field(gt=0)] = Decimal(50_000)
    funds_micro_deposit_attempts: Annotated[int, Field(ge=1, le=10)] = 3
    # Card-funded cash may be traded at once but not withdrawn for this many days after the
    # charge settles: a cardholder's chargeback can come weeks later.
    funds_card_hold_days: Annotated[int, Field(ge=0, le=180)] = 30
    # The payment processor; "simulated" is the deterministic sandbox (funds/processor.py).
    funds_processor: Literal["simulated"] = "simulated"
    funds_ach_settle_seconds: Annotated[int, Field(ge=0, le=7 * 86_400)] = 86_400
    funds_wire_settle_seconds: Annotated[int, Field(ge=0, le=7 * 86_400)] = 600
    # Late returns: settled ACH debits are watched this long for an unauthorized return
    # (NACHA: 60 days for consumer accounts), card charges for a chargeback (120 days), each
    # asked about again every `funds_return_check_seconds`. The sandbox returns its late test
    # values this long after settling.
    funds_ach_return_window_days: Annotated[int, Field(ge=1, le=365)] = 60
    funds_card_dispute_window_days: Annotated[int, Field(ge=1, le=540)] = 120
    funds_return_check_seconds: Annotated[int, Field(ge=5, le=86_400)] = 3600
    funds_sandbox_late_return_seconds: Annotated[int, Field(ge=1, le=60 * 86_400)] = 3 * 86_400

    # KYC onboarding and identity documents (issue #13, KYC-1, KYC-2; docs/kyc.md).
    # Identity documents (KYC-2; docs/kyc-documents.md): the largest file accepted, the most
    # pixels an image may have (checked from its header before decoding; kept below Pillow's
    # own decompression-bomb threshold of 89,478,485), the most pages of a PDF, the most a
    # PDF's compressed streams may inflate to, per-user quotas, and the verification provider
    # ("sandbox" is the deterministic one, kyc/documents/provider.py).
    kyc_document_max_bytes: Annotated[int, Field(ge=64 * 1024, le=32 * 1024 * 1024)] = (
        10 * 1024 * 1024
    )
    kyc_document_max_pixels: Annotated[int, Field(ge=1_000_000, le=80_000_000)] = 40_000_000
    kyc_document_max_pages: Annotated[int, Field(ge=1, le=100)] = 10
    kyc_document_max_inflated_bytes: Annotated[int, Field(ge=1024 * 1024, le=256 * 1024 * 1024)] = (
        64 * 1024 * 1024
    )
    kyc_document_uploads_per_day: Annotated[int, Field(ge=1, le=1000)] = 20
    # Refused uploads (bad type, PDF bombs, active content...) cost server CPU and are not
    # stored, so they count against their own, smaller budget per user per 24 hours.
    kyc_document_refusals_per_day: Annotated[int, Field(ge=1, le=1000)] = 10
    kyc_documents_on_file: Annotated[int, Field(ge=1, le=1000)] = 30
    kyc_verification_provider: Literal["sandbox"] = "sandbox"
    # A customer's trading accounts open PENDING (no trading, no money in or out) until their
    # account application is approved; off only for tests and installations that onboard
    # customers elsewhere.
    kyc_required: bool = True
    # The firm's minimum age to open an account (the age of majority in most states is 18;
    # some firms ask 21).
    kyc_min_age_years: Annotated[int, Field(ge=18, le=25)] = 18
    # The terms of business and privacy notice version a submission consents to (PRIV-1).
    kyc_terms_version: Annotated[str, Field(min_length=1, max_length=40)] = "2026-01"
    # High-risk jurisdictions (ISO 3166-1 alpha-2) for the customer risk rating: seeded from
    # FATF's "High-Risk Jurisdictions subject to a Call for Action" (KP, IR, MM) and
    # "Jurisdictions under Increased Monitoring", both as published on 13 June 2025; refresh
    # after every FATF plenary (February, June, October) and move the date with it.
    kyc_high_risk_countries: list[str] = Field(
        default_factory=lambda: [
            *("KP", "IR", "MM"),
            *("DZ", "AO", "BO", "BG", "BF", "CM", "CI", "CD", "HT", "KE", "LA", "LB"),
            *("MC", "MZ", "NA", "NP", "NG", "ZA", "SS", "SY", "VE", "VN", "VG", "YE"),
        ]
    )
    kyc_high_risk_countries_as_of: date = date(2025, 6, 13)

    # Sanctions screening (issue #13, KYC-2; docs/sanctions.md).
    # Where the OFAC SDN files (sdn.csv, alt.csv, add.csv) are loaded from: a directory, or an
    # https URL prefix (plain http only to this machine). Unset: loading needs an explicit
    # path at the CLI; the API's load refuses (it never takes a client's path).
    sanctions_list_source: str | None = None
    # Score at or above: the subject is blocked; at or above review: a person must look.
    sanctions_block_threshold: Annotated[float, Field(gt=0, le=1)] = 0.95
    sanctions_review_threshold: Annotated[float, Field(gt=0, le=1)] = 0.85
    # Largest list file accepted (the 2021 sdn.csv is 2 MB).
    sanctions_max_file_bytes: Annotated[int, Field(ge=1024, le=512 * 1024 * 1024)] = (
        64 * 1024 * 1024
    )
    sanctions_fetch_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 60.0
    # A load with more than this fraction fewer entries than the current version (or only a
    # strict subset of its entries) is refused unless allowed explicitly with a reason: a
    # partial file or an extract must not silently replace the full list.
    sanctions_max_shrink_fraction: Annotated[float, Field(ge=0, le=1)] = 0.10

    # API keys and signed requests (issue #14, API-1, API-3, ACCT-3; docs/api-keys.md).
    # A key expires this many days after creation; its owner is emailed 7 days and 1 day
    # before. A rotated key keeps working this many hours. A signed request's timestamp may
    # be this far from the server's clock (Binance's receive window: 5 s); its nonce is
    # remembered in Redis when TRADEGUARD_REDIS_URL is set (replicas), else in memory.
    apikeys_expiry_days: Annotated[int, Field(ge=1, le=365)] = 90
    apikeys_rotation_overlap_hours: Annotated[int, Field(ge=0, le=7 * 24)] = 24
    apikeys_signature_window_ms: Annotated[int, Field(ge=1000, le=60_000)] = 5000
    apikeys_max_per_user: Annotated[int, Field(ge=1, le=100)] = 10
    apikeys_reminder_check_seconds: Annotated[int, Field(ge=5, le=86_400)] = 3600
    # The PEM public key (ECDSA P-256) a secret-scanning partner (GitHub) signs leak reports
    # with; unset: the leak report endpoint refuses every report.
    apikeys_leak_report_public_key: str | None = None

    # Transaction monitoring, CTRs and SAR cases (issue #13, AML-1..3; docs/aml.md).
    # The monitor tails the ledger behind its checkpoint (aml/consumer.py).
    aml_enabled: bool = True
    aml_interval_ms: Annotated[int, Field(ge=10, le=600_000)] = 1000
    # The firm's business day for CTR aggregation and the day-based windows (31 CFR
    # 1010.313: per person per business day).
    aml_timezone: str = "America/New_York"
    # CTR (31 CFR 1010.311): currency transactions of MORE than this per person per business
    # day, cash-in and cash-out aggregated separately; filed within aml_ctr_filing_days
    # (1010.306(a)(1): 15 calendar days).
    aml_ctr_threshold: Annotated[Decimal, Field(gt=0)] = Decimal(10_000)
    aml_ctr_filing_days: Annotated[int, Field(ge=1, le=15)] = 15
    # Which rails count as currency transactions (the firm's choice, docs/aml.md). The
    # platform takes no physical cash, so by default every deposit and withdrawal rail does.
    aml_ctr_rails: list[str] = Field(default_factory=lambda: ["ach", "wire", "card"])
    # Structuring: movements between this share of the CTR threshold and the threshold...
    aml_structuring_floor: Annotated[Decimal, Field(ge=Decimal("0.5"), lt=1)] = Decimal("0.8")
    # ...at least this many within this many business days (in one direction)...
    aml_structuring_count: Annotated[int, Field(ge=2, le=50)] = 3
    aml_structuring_window_days: Annotated[int, Field(ge=1, le=31)] = 5
    # ...or one business day split across at least this many accounts, each movement under
    # the threshold, adding up to at least the floor share of it.
    aml_structuring_accounts: Annotated[int, Field(ge=2, le=20)] = 2
    # Rapid in-and-out: a withdrawal within this many days of deposits of at least the
    # minimum, taking out at least this share of them, with trading of less than this share.
    aml_rapid_days: Annotated[int, Field(ge=1, le=60)] = 5
    aml_rapid_min_amount: Annotated[Decimal, Field(gt=0)] = Decimal(5_000)
    aml_rapid_out_share: Annotated[Decimal, Field(gt=0, le=1)] = Decimal("0.8")
    aml_rapid_trading_share: Annotated[Decimal, Field(ge=0, le=10)] = Decimal("0.25")
    # Against the profile: money moved (in plus out) within the window above this multiple
    # of the customer's expected monthly funding; the firm's default expectation when the
    # profile has none (or there is no profile).
    aml_profile_window_days: Annotated[int, Field(ge=1, le=92)] = 30
    aml_profile_multiple: Annotated[Decimal, Field(ge=1, le=100)] = Decimal(3)
    aml_default_monthly_funding: Annotated[Decimal, Field(gt=0)] = Decimal(20_000)
    # Dormant account waking: no movement or trade for this many days, then at least this.
    aml_dormant_days: Annotated[int, Field(ge=30, le=3650)] = 180
    aml_dormant_min_amount: Annotated[Decimal, Field(gt=0)] = Decimal(5_000)
    # Rapid trading: within the window, executed notional above this multiple of the
    # money deposited (at least the minimum notional), or at least this many round trips
    # (a buy and a sell of one symbol).
    aml_trading_window_days: Annotated[int, Field(ge=1, le=31)] = 5
    aml_trading_turnover: Annotated[Decimal, Field(ge=1, le=1000)] = Decimal(20)
    aml_trading_min_notional: Annotated[Decimal, Field(gt=0)] = Decimal(100_000)
    aml_trading_round_trips: Annotated[int, Field(ge=2, le=10_000)] = 20
    # High-risk geographies (ISO 3166-1 alpha-2): the profile's residence or nationality
    # (by default FATF's "call for action" list); movements of at least the minimum alert.
    aml_high_risk_countries: list[str] = Field(default_factory=lambda: ["IR", "KP", "MM"])
    aml_high_risk_min_amount: Annotated[Decimal, Field(gt=0)] = Decimal(1_000)
    # SAR (31 CFR 1023.320(b)(3)): 30 calendar days from initial detection, 60 when no
    # suspect was identified; reminders this many days before (once each).
    aml_sar_days: Annotated[int, Field(ge=1, le=30)] = 30
    aml_sar_no_suspect_days: Annotated[int, Field(ge=1, le=60)] = 60
    aml_sar_reminder_days: list[int] = Field(default_factory=lambda: [7, 2])
    # Closing a case without a SAR needs a second staff member when one of its alerts
    # scored at least this (four-eyes).
    aml_four_eyes_score: Annotated[int, Field(ge=0, le=101)] = 70
    # The firm as filing institution and transmitter in FinCEN batch exports (docs/aml.md).
    # Unset, exports are drafts that name what is missing.
    aml_filer_name: Annotated[str, Field(max_length=150)] = ""
    aml_filer_tin: Annotated[str, Field(pattern=r"^(\d{9})?$")] = ""
    aml_filer_street: Annotated[str, Field(max_length=100)] = ""
    aml_filer_city: Annotated[str, Field(max_length=50)] = ""
    aml_filer_state: Annotated[str, Field(pattern=r"^([A-Z]{2})?$")] = ""
    aml_filer_zip: Annotated[str, Field(pattern=r"^(\d{5}|\d{9})?$")] = ""
    aml_filer_country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] = "US"
    aml_filer_contact_office: Annotated[str, Field(max_length=150)] = ""
    aml_filer_phone: Annotated[str, Field(pattern=r"^(\d{10,16})?$")] = ""
    aml_filer_tcc: Annotated[str, Field(pattern=r"^([A-Z0-9]{8})?$")] = ""
    # BSA record keeping (31 CFR 1010.430): at least five years.
    aml_retention_years: Annotated[int, Field(ge=5, le=100)] = 5

    # Staff access anomaly alerts (IAC-4, docs/access.md). Each limit is what is still
    # normal: one more within the window raises an alert.
    access_alerts_enabled: bool = True
    access_alert_scan_interval_ms: Annotated[int, Field(ge=100, le=600_000)] = 5000
    access_alert_max_customers: Annotated[int, Field(ge=1, le=1_000_000)] = 25
    access_alert_customers_window_seconds: Annotated[int, Field(ge=60, le=7 * 86_400)] = 900
    access_alert_max_denials: Annotated[int, Field(ge=1, le=10_000)] = 5
    access_alert_denials_window_seconds: Annotated[int, Field(ge=60, le=7 * 86_400)] = 600
    access_alert_new_network_days: Annotated[int, Field(ge=1, le=3650)] = 30
    # Working hours for the off-hours rule: local "HH:MM-HH:MM" (end may be 24:00) on the
    # listed weekdays in the zone. To switch the rule off: all seven days, 00:00-24:00.
    access_working_hours: str = "07:00-19:00"
    access_working_days: list[str] = Field(
        default_factory=lambda: ["mon", "tue", "wed", "thu", "fri"]
    )
    access_working_timezone: str = "America/New_York"

    # Audit ledger Merkle tree, signed checkpoints and witnessing (issue #9, h9a;
    # docs/audit.md). The origin names the log in every checkpoint and is the signing key's
    # name: set it once, before the first checkpoint (a schema-less URL, no spaces or '+').
    ledger_origin: str = "tradeguard.local/audit-ledger"
    # A checkpoint is signed once the tree has grown by this many events, or when it has
    # grown at all and this long has passed since the last one.
    ledger_checkpoint_every_events: Annotated[int, Field(ge=1, le=10_000_000)] = 1000
    ledger_checkpoint_interval_ms: Annotated[int, Field(ge=100, le=86_400_000)] = 10_000
    # Where every checkpoint is also published: a directory (write-once files) or the URL
    # prefix of a C2SP tlog-witness (https, or http to a loopback address). Unset: nowhere.
    ledger_witness: str | None = None
    ledger_witness_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 10.0

    # Field encryption keys (issue #10; docs/security/key-management.md). The master key file
    # (keys/master.key, mode 0600) may be sealed under a passphrase. Data keys rotate every
    # `key_rotation_days` (per class: {"tax_id": 30}); a new version encrypts only after the
    # activation delay (every process reads it first), and an old one may retire only after
    # the grace has passed since its successor activated.
    master_key_passphrase: SecretStr | None = None
    key_rotation_days: Annotated[int, Field(ge=1, le=3650)] = 90
    key_rotation_days_by_class: dict[str, Annotated[int, Field(ge=1, le=3650)]] = Field(
        default_factory=dict
    )
    key_activation_delay_seconds: Annotated[float, Field(ge=0, le=3600)] = 15.0
    key_retire_grace_seconds: Annotated[float, Field(ge=0, le=86_400)] = 60.0
    # Where the key-encrypting key is: `local` (keys/master.key) or `aws-kms` (the KMS key
    # named by aws_kms_key_id: ARN, id or alias; credentials from botocore's standard chain,
    # never from here). The endpoint is for a VPC endpoint; unset, the region's own.
    kek_provider: str = "local"
    aws_kms_key_id: str | None = None
    aws_kms_region: str | None = None
    aws_kms_endpoint_url: str | None = None
    aws_kms_timeout_seconds: Annotated[float, Field(gt=0, le=120)] = 10.0

    # Market surveillance (MAN-1, MAN-2; docs/surveillance.md). The stream runs inside
    # `tradeguard serve` while enabled, or in processes of its own with `tradeguard
    # surveillance run`. Each model's parameters: what is still normal is below them.
    surveillance_enabled: bool = True
    surveillance_interval_ms: Annotated[int, Field(ge=10, le=600_000)] = 250
    surveillance_batch_size: Annotated[int, Field(ge=10, le=100_000)] = 2000
    # How far behind the clock the stream's idle tick judges (findings that wait for time
    # to pass, MAN-2's re-quote test): room for events stamped earlier but chained later.
    surveillance_tick_grace_ms: Annotated[int, Field(ge=0, le=60_000)] = 2000
    # How often the server checks the surveillance tables against the ledger (0: never).
    surveillance_verify_interval_seconds: Annotated[int, Field(ge=0, le=7 * 86_400)] = 3600
    surveillance_book_horizon_seconds: Annotated[int, Field(ge=60, le=86_400)] = 3600
    surveillance_fold_window_seconds: Annotated[int, Field(ge=1, le=86_400)] = 600
    surveillance_wash_window_seconds: Annotated[int, Field(ge=1, le=86_400)] = 600
    surveillance_wash_min_quantity: Annotated[int, Field(ge=1, le=100_000_000)] = 100
    surveillance_wash_max_net_fraction: Annotated[Decimal, Field(ge=0, le=1)] = Decimal("0.2")
    surveillance_wash_price_tolerance: Annotated[Decimal, Field(ge=0, le=1)] = Decimal("0.01")
    surveillance_wash_min_round_trips: Annotated[int, Field(ge=1, le=1000)] = 2
    surveillance_wash_min_aggressive_share: Annotated[Decimal, Field(ge=0, le=1)] = Decimal("0.5")
    surveillance_wash_min_volume_share: Annotated[Decimal, Field(ge=0, le=1)] = Decimal("0.01")
    surveillance_spoof_max_order_age_seconds: Annotated[int, Field(ge=1, le=3600)] = 60
    surveillance_spoof_cancel_window_seconds: Annotated[int, Field(ge=1, le=3600)] = 30
    surveillance_spoof_min_quantity: Annotated[int, Field(ge=1, le=100_000_000)] = 1000
    surveillance_spoof_size_ratio: Annotated[Decimal, Field(gt=0, le=1000)] = Decimal(3)
    surveillance_spoof_imbalance_ratio: Annotated[Decimal, Field(gt=0, le=1000)] = Decimal(3)
    surveillance_layering_min_levels: Annotated[int, Field(ge=2, le=100)] = 3
    surveillance_spoof_max_distance_bps: Annotated[int, Field(ge=1, le=10_000)] = 500
    surveillance_spoof_requote_window_ms: Annotated[int, Field(ge=0, le=60_000)] = 1000
    surveillance_spoof_near_touch_bps: Annotated[int, Field(ge=0, le=10_000)] = 10
    surveillance_pump_window_seconds: Annotated[int, Field(ge=60, le=86_400)] = 14_400
    surveillance_pump_min_rise: Annotated[Decimal, Field(gt=0, le=100)] = Decimal("0.2")
    surveillance_pump_near_peak: Annotated[Decimal, Field(ge=0, lt=1)] = Decimal("0.1")
    surveillance_pump_min_accumulation: Annotated[Decimal, Field(gt=0, le=1)] = Decimal("0.5")
    surveillance_pump_min_sold_fraction: Annotated[Decimal, Field(gt=0, le=1)] = Decimal("0.5")
    surveillance_pump_min_accounts: Annotated[int, Field(ge=1, le=1000)] = 2
    surveillance_pump_min_quantity: Annotated[int, Field(ge=1, le=100_000_000)] = 1000
    surveillance_pump_min_buy_share: Annotated[Decimal, Field(ge=0, le=1)] = Decimal("0.3")
    surveillance_pump_min_member_share: Annotated[Decimal, Field(ge=0, le=1)] = Decimal("0.05")
    # MAN-4: the firm's staff and proprietary accounts (JSON list of account ids).
    surveillance_frontrun_insider_accounts: tuple[str, ...] = ()
    surveillance_frontrun_ahead_window_seconds: Annotated[int, Field(ge=1, le=86_400)] = 300
    surveillance_frontrun_unwind_window_seconds: Annotated[int, Field(ge=1, le=86_400)] = 1800
    surveillance_frontrun_min_quantity: Annotated[int, Field(ge=1, le=100_000_000)] = 100
    surveillance_frontrun_large_order_notional: Annotated[Decimal, Field(gt=0)] = Decimal(100_000)
    surveillance_frontrun_restricted_window_seconds: Annotated[int, Field(ge=60, le=86_400)] = (
        14_400
    )
    surveillance_close_window_seconds: Annotated[int, Field(ge=10, le=3600)] = 300
    surveillance_close_min_quantity: Annotated[int, Field(ge=1, le=100_000_000)] = 500
    surveillance_close_max_opposite_fraction: Annotated[Decimal, Field(ge=0, le=1)] = Decimal("0.2")
    surveillance_close_min_volume_share: Annotated[Decimal, Field(ge=0, le=1)] = Decimal("0.3")
    surveillance_close_min_move: Annotated[Decimal, Field(gt=0, le=1)] = Decimal("0.01")
    surveillance_stuffing_window_ms: Annotated[int, Field(ge=10, le=60_000)] = 10_000
    surveillance_stuffing_min_messages: Annotated[int, Field(ge=2, le=1_000_000)] = 100
    surveillance_stuffing_min_cancel_ratio: Annotated[Decimal, Field(ge=0, le=1)] = Decimal("0.9")
    surveillance_stuffing_max_fill_ratio: Annotated[Decimal, Field(ge=0, le=1)] = Decimal("0.02")
    surveillance_momentum_window_seconds: Annotated[int, Field(ge=1, le=3600)] = 60
    surveillance_momentum_min_orders: Annotated[int, Field(ge=1, le=10_000)] = 3
    surveillance_momentum_min_quantity: Annotated[int, Field(ge=1, le=100_000_000)] = 5000
    surveillance_momentum_min_levels: Annotated[int, Field(ge=2, le=1000)] = 3
    surveillance_momentum_min_move_bps: Annotated[int, Field(ge=1, le=10_000)] = 100
    surveillance_momentum_min_owner_share: Annotated[Decimal, Field(gt=0, le=1)] = Decimal("0.5")
    surveillance_momentum_unwind_window_seconds: Annotated[int, Field(ge=1, le=86_400)] = 900
    surveillance_momentum_min_unwind_fraction: Annotated[Decimal, Field(gt=0, le=1)] = Decimal(
        "0.5"
    )
    surveillance_momentum_min_profit_bps: Annotated[int, Field(ge=0, le=10_000)] = 10
    # Beneficial-owner links derived from sign-ins (docs/surveillance.md, "Linked
    # accounts"): a job of the surveillance worker, every interval, over the lookback.
    surveillance_links_enabled: bool = True
    surveillance_links_interval_seconds: Annotated[int, Field(ge=10, le=86_400)] = 900
    surveillance_links_lookback_days: Annotated[int, Field(ge=1, le=365)] = 30
    # The network a sign-in came from: its IPv4 /24 or IPv6 /48.
    surveillance_links_ipv4_prefix: Annotated[int, Field(ge=8, le=32)] = 24
    surveillance_links_ipv6_prefix: Annotated[int, Field(ge=16, le=128)] = 48
    # Two users' sign-ins on one network this close together are one occasion; this many
    # separate occasions link them; more distinct users than the maximum on one network (a
    # large NAT, a carrier, a proxy) link nobody.
    surveillance_links_network_window_seconds: Annotated[int, Field(ge=60, le=7 * 86_400)] = (
        6 * 3600
    )
    surveillance_links_network_min_occurrences: Annotated[int, Field(ge=1, le=1000)] = 3
    surveillance_links_network_max_users: Annotated[int, Field(ge=2, le=1000)] = 5
    # More distinct users than this with one device fingerprint: a common configuration.
    surveillance_links_device_max_users: Annotated[int, Field(ge=2, le=100)] = 3

    # Account-takeover defence (ATO-1, ATO-2, ACCT-5; docs/takeover.md). The policy table:
    # a score per signal (new_device, new_country, new_network, impossible_travel,
    # unusual_trading, security_change_withdrawal) and the least total score for each
    # response (step_up, verify, review, lock), as JSON objects; a name left out keeps its
    # default (fraud/domain.py). Addresses are placed with the offline database geoip2fast
    # ships (one of its data files), never over the network.
    takeover_enabled: bool = True
    takeover_signal_weights: dict[str, Annotated[int, Field(ge=0, le=1000)]] = {}
    takeover_response_thresholds: dict[str, Annotated[int, Field(ge=1, le=10_000)]] = {}
    takeover_max_speed_kmh: Annotated[float, Field(gt=0, le=20_000)] = 900.0
    takeover_min_travel_km: Annotated[float, Field(ge=0, le=20_000)] = 500.0
    takeover_trading_window_minutes: Annotated[int, Field(ge=1, le=1440)] = 30
    takeover_sold_fraction: Annotated[Decimal, Field(gt=0, le=1)] = Decimal("0.5")
    takeover_risky_score: Annotated[int, Field(ge=1, le=10_000)] = 30
    takeover_security_change_hours: Annotated[int, Field(ge=0, le=24 * 90)] = 72
    takeover_withdrawal_lookback_hours: Annotated[int, Field(ge=0, le=24 * 90)] = 24
    takeover_prompt_ttl_hours: Annotated[int, Field(ge=1, le=24 * 14)] = 24
    takeover_sweep_interval_seconds: Annotated[int, Field(ge=1, le=3600)] = 30
    # ATO-3: attempts against the KYC record per user over a window, across recovery cases;
    # after them only a new identity document re-verifies.
    takeover_recovery_record_attempts: Annotated[int, Field(ge=1, le=10)] = 3
    takeover_recovery_record_window_days: Annotated[int, Field(ge=1, le=365)] = 30
    takeover_geoip_data_file: Literal[
        "geoip2fast.dat.gz",
        "geoip2fast-ipv6.dat.gz",
        "geoip2fast-asn.dat.gz",
        "geoip2fast-asn-ipv6.dat.gz",
    ] = "geoip2fast-asn-ipv6.dat.gz"

    # Card vault (PCI-2, PCI-3; docs/vault.md). With no endpoint the vault runs inside this
    # process on its own database (TRADEGUARD_VAULT_DATABASE_URL, default var/vault.db) and
    # its own master key file (keys/vault/master.key). With an endpoint (unix:///path or
    # https://private-address:port) the platform calls `tradeguard vault serve` there over
    # mutual TLS with the client certificate of `vault_client_role`, and holds neither.
    vault_endpoint: str | None = None
    # Where `tradeguard vault serve` listens: a Unix socket (default <data_dir>/vault.sock)
    # or https://<loopback or private address>:<port>.
    vault_listen: str | None = None
    # The vault's CA, server and client certificates (`tradeguard vault certs`).
    vault_tls_dir: Path | None = None
    vault_client_role: Literal["app", "payment"] = "app"
    vault_token_format: Literal["opaque", "luhn_t_four", "luhn_six_t_four"] = "opaque"  # noqa: S105 - a format name
    vault_master_key_passphrase: SecretStr | None = None
    # The vault's own key-encrypting key (PCI DSS 3.6/3.7, docs/vault.md "Keys"): `local`
    # (keys/vault/master.key) or `aws-kms` (the KMS key vault_aws_kms_key_id, never the
    # platform's; region, endpoint and timeout are the aws_kms_* settings). The vault's data
    # key rotates every vault_key_rotation_days (PCI-4), checked by whichever process holds
    # the vault (in process: `tradeguard serve`; else `tradeguard vault serve`).
    vault_kek_provider: str = "local"
    vault_aws_kms_key_id: str | None = None
    vault_key_rotation_days: Annotated[int, Field(ge=1, le=3650)] = 90
    vault_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 5.0
    # `tradeguard vault serve`'s Prometheus metrics (docs/vault.md "Monitoring"): plain HTTP
    # on a listener apart from the card API, `host:port` with an IP address, or `off`. A
    # non-loopback address only with vault_metrics_allow_remote (and never a public one).
    vault_metrics_address: Annotated[str, Field(min_length=2, max_length=64)] = "127.0.0.1:9465"
    vault_metrics_allow_remote: bool = False

    @model_validator(mode="after")
    def _sanctions_thresholds_ordered(self) -> Settings:
        if self.sanctions_review_threshold > self.sanctions_block_threshold:
            raise ValueError(
                "sanctions_review_threshold must not be above sanctions_block_threshold"
            )
        return self

    @field_validator("vault_endpoint", "vault_listen")
    @classmethod
    def _vault_address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme == "unix" and parts.path:
            return value
        if parts.scheme == "https" and parts.hostname:
            try:
                address = ipaddress.ip_address(parts.hostname)
            except ValueError:
                raise ValueError("must name an IP address, not a host name") from None
            # PCI-3: the vault is never reached over (or listening on) a public network.
            if not (address.is_loopback or is_private_network(address)):
                raise ValueError("must be a loopback or private address (PCI-3)")
            return value
        raise ValueError("must be unix:///path/to/vault.sock or https://<private ip>:<port>")

    @property
    def vault_master_key_file(self) -> Path:
        return self.keys_dir / "vault" / "master.key"

    @property
    def vault_pki_dir(self) -> Path:
        return self.vault_tls_dir or self.tls_dir / "vault"

    @property
    def effective_vault_listen(self) -> str:
        return self.vault_listen or f"unix://{(self.data_dir / 'vault.sock').resolve()}"

    @field_validator("ledger_origin")
    @classmethod
    def _ledger_origin(cls, value: str) -> str:
        # A C2SP signed-note key name: non-empty, printable, no Unicode space and no '+'.
        if not value.isprintable() or re.search(r"[\s+]", value) or not 0 < len(value) <= 200:
            raise ValueError("must be a name like example.com/audit-ledger, without spaces or '+'")
        return value

    @property
    def ledger_keys_dir(self) -> Path:
        """The audit ledger's checkpoint signing key (and retired public keys)."""
        return self.data_dir / "keys" / "ledger"

    @property
    def backup_keys_dir(self) -> Path:
        """The backup manifest signing key (and retired public keys); not the ledger's."""
        return self.data_dir / "keys" / "backup"

    @property
    def backup_dir(self) -> Path:
        """Where `tradeguard backup create` writes when no --out is given."""
        return self.data_dir / "backups"

    # --- h9c: audit ledger search and export (AUD-3, AUD-4; docs/audit.md "Search") ---
    # An API export of more matching events than this is refused (narrow the search or export
    # in parts); the CLI export streams any size. Either way one page is in memory at a time.
    audit_export_max_events: Annotated[int, Field(ge=1, le=100_000_000)] = 1_000_000

    # --- h9f: sealed audit archive (AUD-2, ENC-3; docs/audit.md "Sealed archive") ---
    # Where `tradeguard audit seal` writes segment files (write-once); unset: under data_dir.
    ledger_archive_dir: Path | None = None
    # A segment holds at most this many events, all recorded in one calendar month (UTC).
    ledger_archive_segment_events: Annotated[int, Field(ge=1, le=1_000_000)] = 100_000
    # Audit events are kept this many years before they may be purged; never fewer than 7
    # (AUD-2; SEC Rule 17a-4): a lower setting stops start-up.
    ledger_retention_years: Annotated[int, Field(le=100)] = 7

    @field_validator("ledger_retention_years")
    @classmethod
    def _retention_years(cls, value: int) -> int:
        if value < 7:
            raise ValueError("must be at least 7 (audit records are kept seven years: AUD-2)")
        return value

    @property
    def ledger_archive_path(self) -> Path:
        """The sealed archive's directory."""
        return self.ledger_archive_dir or self.data_dir / "archive" / "ledger"

    @field_validator("database_url", "vault_database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = value.split(":", 1)[0].split("+", 1)[0]
        if scheme not in {"sqlite", "postgresql", "postgres"}:
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return upper

    @field_validator("webauthn_allowed_aaguids")
    @classmethod
    def _aaguids(cls, value: list[str]) -> list[str]:
        pattern = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
        for item in value:
            if not pattern.fullmatch(item.lower()):
                raise ValueError(
                    "each entry must be an AAGUID like cb69481e-8ff7-4039-93ec-0a2729a154a8"
                )
        return [item.lower() for item in value]

    @field_validator("kyc_high_risk_countries")
    @classmethod
    def _high_risk_countries(cls, value: list[str]) -> list[str]:
        codes = [item.strip().upper() for item in value]
        for code in codes:
            if not re.fullmatch(r"[A-Z]{2}", code):
                raise ValueError("each entry must be an ISO 3166-1 alpha-2 code such as IR")
        return sorted(set(codes))

    @field_validator("access_working_hours")
    @classmethod
    def _working_hours(cls, value: str) -> str:
        if working_minutes(value) is None:
            raise ValueError('must be "HH:MM-HH:MM" with start before end, e.g. "07:00-19:00"')
        return value.strip()

    @field_validator("access_working_days")
    @classmethod
    def _working_days(cls, value: list[str]) -> list[str]:
        days = [item.strip().lower()[:3] for item in value]
        if not days or any(day not in WEEKDAYS for day in days):
            raise ValueError('must be a non-empty JSON list of weekdays, e.g. ["mon","tue"]')
        return sorted(set(days), key=WEEKDAYS.index)

    @field_validator("access_working_timezone", "funds_timezone", "aml_timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("must be an IANA time zone such as America/New_York") from None
        return value

    @field_validator("aml_ctr_rails")
    @classmethod
    def _aml_rails(cls, value: list[str]) -> list[str]:
        rails = sorted({item.strip().lower() for item in value})
        if any(rail not in ("ach", "wire", "card") for rail in rails):
            raise ValueError('must be a JSON list of rails among "ach", "wire", "card"')
        return rails

    @field_validator("aml_high_risk_countries")
    @classmethod
    def _aml_countries(cls, value: list[str]) -> list[str]:
        codes = sorted({item.strip().upper() for item in value})
        if any(len(code) != 2 or not code.isalpha() or not code.isascii() for code in codes):
            raise ValueError("must be a JSON list of ISO 3166-1 alpha-2 country codes")
        return codes

    @field_validator("aml_sar_reminder_days")
    @classmethod
    def _aml_reminders(cls, value: list[int]) -> list[int]:
        days = sorted(set(value), reverse=True)
        if any(day < 1 or day > 59 for day in days):
            raise ValueError("must be a JSON list of days between 1 and 59")
        return days

    @field_validator("public_origin")
    @classmethod
    def _https_origin(cls, value: str) -> str:
        if not value:
            return value  # unset: derived from host and port below
        if not value.startswith("https://") or value.count("/") != 2:
            raise ValueError(
                "must be an https:// origin without a path, e.g. https://broker.example"
            )
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("TRADEGUARD_TLS_CERT_FILE and TRADEGUARD_TLS_KEY_FILE go together")
        return self

    @model_validator(mode="after")
    def _funds_limits(self) -> Settings:
        # Whole cents, and each limit inside the next: a weekly limit below the daily one, or
        # a minimum above the daily limit, would make a rule that can never be met.
        amounts = (
            ("FUNDS_MIN_WITHDRAWAL", self.funds_min_withdrawal),
            ("FUNDS_DAILY_WITHDRAWAL_LIMIT", self.funds_daily_withdrawal_limit),
            ("FUNDS_WEEKLY_WITHDRAWAL_LIMIT", self.funds_weekly_withdrawal_limit),
            ("FUNDS_REVIEW_THRESHOLD", self.funds_review_threshold),
            ("FUNDS_MAX_DEPOSIT", self.funds_max_deposit),
            ("FUNDS_MAX_UNCOLLECTED", self.funds_max_uncollected),
        )
        for name, amount in amounts:
            if amount != amount.quantize(Decimal("0.01")):
                raise ValueError(f"TRADEGUARD_{name} must be in whole cents")
        if not (
            self.funds_min_withdrawal
            <= self.funds_daily_withdrawal_limit
            <= self.funds_weekly_withdrawal_limit
        ):
            raise ValueError(
                "the funds limits must satisfy FUNDS_MIN_WITHDRAWAL <= "
                "FUNDS_DAILY_WITHDRAWAL_LIMIT <= FUNDS_WEEKLY_WITHDRAWAL_LIMIT"
            )
        return self

    @model_validator(mode="after")
    def _derived_origin(self) -> Settings:
        # An explicit setting always wins; otherwise the origin follows the listen address, so
        # `--port 9443` alone gives tokens and emailed links that point at 9443. The model is
        # frozen, so the derived values are written once here, during construction.
        if not self.public_origin:
            object.__setattr__(self, "public_origin", derived_public_origin(self.host, self.port))
            self._origin_derived = True
        if not self.webauthn_rp_id:
            object.__setattr__(
                self, "webauthn_rp_id", urlsplit(self.public_origin).hostname or "localhost"
            )
        return self

    @cached_property
    def main_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'tradeguard.db').as_posix()}"

    @cached_property
    def vault_url(self) -> str:
        return self.vault_database_url or f"sqlite:///{(self.data_dir / 'vault.db').as_posix()}"

    @property
    def public_origin_derived(self) -> bool:
        """True when TRADEGUARD_PUBLIC_ORIGIN is unset and the origin follows host and port
        (so a process started with other ones, such as `serve --port`, has another origin)."""
        return self._origin_derived

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def jwt_keys_dir(self) -> Path:
        """Access-token signing keys; running servers watch it for rotations."""
        return self.keys_dir / "jwt"

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"

    @property
    def dev_cert_file(self) -> Path:
        return self.tls_dir / "dev-cert.pem"

    @property
    def dev_key_file(self) -> Path:
        return self.tls_dir / "dev-key.pem"

    @property
    def effective_cert_file(self) -> Path:
        return self.tls_cert_file or self.dev_cert_file

    @property
    def effective_key_file(self) -> Path:
        return self.tls_key_file or self.dev_key_file

    @property
    def is_production(self) -> bool:
        return self.env is Environment.PRODUCTION

    def production_problems(self) -> list[str]:
        """What makes this configuration unsafe for production (empty when it is fine)."""
        problems: list[str] = []
        if not self.is_production:
            return problems
        if self.tls_cert_file is None:
            problems.append(
                "TRADEGUARD_TLS_CERT_FILE: production needs a real certificate, "
                "not the self-signed development certificate"
            )
        if self.main_database_url.startswith("sqlite") and self.workers > 1:
            problems.append(
                "TRADEGUARD_WORKERS: SQLite serves one worker process; "
                "use TRADEGUARD_DATABASE_URL=postgresql://... for several"
            )
        if self.smtp_host is None:
            problems.append(
                "TRADEGUARD_SMTP_HOST: production sends email through an SMTP relay, "
                "not the development mailbox"
            )
        if self.sms_provider == "file":
            problems.append(
                "TRADEGUARD_SMS_PROVIDER: the file provider is for development; "
                "use `disabled` until an SMS gateway is configured"
            )
        if self.enable_api_docs:
            problems.append(
                "TRADEGUARD_ENABLE_API_DOCS: interactive API docs must be off in production"
            )
        if self._origin_derived:
            problems.append(
                "TRADEGUARD_PUBLIC_ORIGIN: production needs the origin browsers use "
                "(e.g. https://broker.example), not one derived from the listen address"
            )
        return problems


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


def working_minutes(value: str) -> tuple[int, int] | None:
    """ "HH:MM-HH:MM" as minutes after local midnight (start, end); None when malformed."""
    match = _HOURS.fullmatch(value.strip())
    if match is None:
        return None
    h1, m1, h2, m2 = (int(part) for part in match.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start >= end or start >= 24 * 60 or end > 24 * 60:
        return None
    return start, end


def derived_public_origin(host: str, port: int) -> str:
    """The public origin when none is configured: https, the listen host, the port.

    A loopback or wildcard listen address becomes `localhost`: it is the name the development
    certificate is issued for, what a browser on this machine uses, and the only host a
    browser accepts WebAuthn on without a domain name. The default port 443 is left out, as
    browsers do when they serialize an origin.
    """
    name = host.strip().strip("[]").lower()
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(name)
    except ValueError:
        address = None
    if name == "localhost" or (
        address is not None and (address.is_loopback or address.is_unspecified)
    ):
        name = "localhost"
    elif address is not None and address.version == 6:
        name = f"[{name}]"
    return f"https://{name}" + ("" if port == 443 else f":{port}")


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment (and overrides), turning errors into one message."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigurationError(format_validation_error(exc)) from None
    problems = settings.production_problems()
    if problems:
        raise ConfigurationError("unsafe production configuration: " + "; ".join(problems))
    return settings


def format_validation_error(exc: ValidationError) -> str:
    """Name each bad setting by its environment variable and say what is wrong."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        location = [str(p) for p in error["loc"]]
        name = ENV_PREFIX + location[0].upper() if location else "settings"
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown setting"
        parts.append(f"{name}: {message}")
    return "invalid configuration: " + "; ".join(parts)
