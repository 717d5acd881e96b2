"""Identity tables: users, factors, sessions, refresh tokens, devices, one-time tickets.

Secrets are never stored in the clear: passwords as argon2id hashes, refresh tokens,
tickets and backup codes as SHA-256/HMAC digests (looked up by value), TOTP secrets and
phone numbers encrypted under their own keys (read by id).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tradeguard.db.base import Base


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    email_verified_ns: Mapped[int | None] = mapped_column(BigInteger)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="active")
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until_ns: Mapped[int | None] = mapped_column(BigInteger)
    ip_allowlist: Mapped[str | None] = mapped_column(Text)
    created_ns: Mapped[int] = mapped_column(BigInteger)
    password_changed_ns: Mapped[int | None] = mapped_column(BigInteger)
    # IAC-2: a staff member's standing access level (access/domain.py AccessLevel); NULL for
    # traders, who have none.
    access_level: Mapped[str | None] = mapped_column(String(20))
    # Bumped by every change to what the user may do (a grant approved, revoked, taken, a
    # level changed): a cached session state older than the version is never used.
    permissions_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class MfaFactor(Base):
    __tablename__ = "mfa_factors"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    label: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20))
    secret_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    last_used_step: Mapped[int | None] = mapped_column(BigInteger)
    credential_id: Mapped[bytes | None] = mapped_column(LargeBinary, unique=True)
    public_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    sign_count: Mapped[int | None] = mapped_column(BigInteger)
    aaguid: Mapped[str | None] = mapped_column(String(36))
    is_passkey: Mapped[bool] = mapped_column(Boolean, default=False)
    destination_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_ns: Mapped[int] = mapped_column(BigInteger)
    confirmed_ns: Mapped[int | None] = mapped_column(BigInteger)
    last_used_ns: Mapped[int | None] = mapped_column(BigInteger)
    revoked_ns: Mapped[int | None] = mapped_column(BigInteger)


class BackupCode(Base):
    __tablename__ = "backup_codes"

    factor_id: Mapped[str] = mapped_column(ForeignKey("mfa_factors.id"), primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    code_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    used_ns: Mapped[int | None] = mapped_column(BigInteger)


class Device(Base):
    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary(32))
    name: Mapped[str] = mapped_column(String(120))
    created_ns: Mapped[int] = mapped_column(BigInteger)
    authorized_ns: Mapped[int | None] = mapped_column(BigInteger)
    revoked_ns: Mapped[int | None] = mapped_column(BigInteger)
    last_seen_ns: Mapped[int] = mapped_column(BigInteger)
    last_ip: Mapped[str | None] = mapped_column(String(45))


class AuthSession(Base):
    __tablename__ = "auth_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    device_id: Mapped[str | None] = mapped_column(ForeignKey("devices.id"))
    amr: Mapped[str] = mapped_column(String(200))
    created_ns: Mapped[int] = mapped_column(BigInteger)
    last_seen_ns: Mapped[int] = mapped_column(BigInteger)
    expires_ns: Mapped[int] = mapped_column(BigInteger)
    mfa_verified_ns: Mapped[int | None] = mapped_column(BigInteger)
    revoked_ns: Mapped[int | None] = mapped_column(BigInteger)
    revoke_reason: Mapped[str | None] = mapped_column(String(40))
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(256))


class RefreshToken(Base):
    __tablename__ = "refresh_tokens"

    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("auth_sessions.id"), index=True)
    issued_ns: Mapped[int] = mapped_column(BigInteger)
    spent_ns: Mapped[int | None] = mapped_column(BigInteger)
    # The token that replaced this one, encrypted: a parallel refresh inside the grace window
    # gets this same successor instead of starting a second chain.
    successor_enc: Mapped[bytes | None] = mapped_column(LargeBinary)


class AuthTicket(Base):
    """Short-lived single-use secrets: MFA tickets, email links, OTP and WebAuthn challenges."""

    __tablename__ = "auth_tickets"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    kind: Mapped[str] = mapped_column(String(30))
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"), index=True)
    payload: Mapped[str] = mapped_column(Text, default="{}")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_ns: Mapped[int] = mapped_column(BigInteger)
    expires_ns: Mapped[int] = mapped_column(BigInteger)
    used_ns: Mapped[int | None] = mapped_column(BigInteger)


class AuthThrottle(Base):
    """Failure counters per account and per client IP, for back-off and temporary locks."""

    __tablename__ = "auth_throttle"

    key: Mapped[str] = mapped_column(String(120), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    window_start_ns: Mapped[int] = mapped_column(BigInteger)
    blocked_until_ns: Mapped[int | None] = mapped_column(BigInteger)


Index("ix_auth_tickets_expires", AuthTicket.expires_ns)
# Beneficial-owner linking reads sign-ins by time and devices by fingerprint (surveillance).
Index("ix_auth_sessions_created_ns", AuthSession.created_ns)
Index("ix_devices_fingerprint", Device.fingerprint)
