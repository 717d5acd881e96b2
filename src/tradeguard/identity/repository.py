"""Every query of the identity domain."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import case, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.identity.models import (
    AuthSession,
    AuthThrottle,
    AuthTicket,
    BackupCode,
    Device,
    MfaFactor,
    RefreshToken,
    User,
)

ACTIVE = "active"


async def user_by_id(session: AsyncSession, user_id: str) -> User | None:
    return await session.get(User, user_id)


async def roles_by_id(session: AsyncSession, user_ids: Sequence[str]) -> dict[str, str]:
    """The role of each existing user among `user_ids`."""
    if not user_ids:
        return {}
    rows = await session.execute(select(User.id, User.role).where(User.id.in_(list(user_ids))))
    return {row.id: row.role for row in rows}


async def active_users_with_roles(
    session: AsyncSession, roles: Sequence[str]
) -> Sequence[tuple[str, str]]:
    """(id, email) of every active user holding one of `roles`, by id."""
    rows = await session.execute(
        select(User.id, User.email)
        .where(User.role.in_(list(roles)), User.status == ACTIVE)
        .order_by(User.id)
    )
    return [(row.id, row.email) for row in rows]


async def user_by_login(session: AsyncSession, login: str) -> User | None:
    """Find by username or email (both stored case-folded)."""
    key = login.strip().casefold()
    column = User.email if "@" in key else User.username
    return (await session.execute(select(User).where(column == key))).scalar_one_or_none()


async def user_by_email(session: AsyncSession, email: str) -> User | None:
    return (await session.execute(select(User).where(User.email == email))).scalar_one_or_none()


async def username_taken(session: AsyncSession, username: str) -> bool:
    query = select(func.count()).where(User.username == username)
    return int((await session.execute(query)).scalar_one()) > 0


async def email_taken(session: AsyncSession, email: str) -> bool:
    query = select(func.count()).where(User.email == email)
    return int((await session.execute(query)).scalar_one()) > 0


def add(session: AsyncSession, row: object) -> None:
    session.add(row)


# Throttling -------------------------------------------------------------------------------


async def throttle(session: AsyncSession, key: str) -> AuthThrottle | None:
    return await session.get(AuthThrottle, key)


async def locked_throttle(session: AsyncSession, key: str, now_ns: int) -> AuthThrottle | None:
    """The throttle row of `key`, locked until the transaction ends (created empty if need
    be, so there is a row to lock): parallel attempts on one key queue, and each sees the
    failures the ones before it counted. SQLite transactions are serialized already."""
    if session.get_bind().dialect.name != "postgresql":
        return await throttle(session, key)
    await session.execute(
        pg_insert(AuthThrottle)
        .values(key=key, failures=0, window_start_ns=now_ns, blocked_until_ns=None)
        .on_conflict_do_nothing(index_elements=["key"])
    )
    query = select(AuthThrottle).where(AuthThrottle.key == key).with_for_update()
    query = query.execution_options(populate_existing=True)
    return (await session.execute(query)).scalar_one_or_none()


async def increment_throttle(
    session: AsyncSession, key: str, *, now_ns: int, window_ns: int
) -> int:
    """Count one failure atomically (concurrent failures are all counted); returns the count."""
    count, _ = await count_use(session, key, now_ns=now_ns, window_ns=window_ns)
    return count


async def count_use(
    session: AsyncSession, key: str, *, now_ns: int, window_ns: int
) -> tuple[int, int]:
    """Count one use atomically; returns the count in the window and the window's start.

    An expired window starts over at 1. The upsert takes the row lock, so parallel requests
    cannot each read the same old count and write it back plus one.
    """
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    upsert: Any = (
        pg_insert(AuthThrottle) if dialect == "postgresql" else sqlite_insert(AuthThrottle)
    )
    table = AuthThrottle.__table__.c
    expired = table.window_start_ns < now_ns - window_ns
    statement = (
        upsert.values(key=key, failures=1, window_start_ns=now_ns, blocked_until_ns=None)
        .on_conflict_do_update(
            index_elements=["key"],
            set_={
                "failures": case((expired, 1), else_=table.failures + 1),
                "window_start_ns": case((expired, now_ns), else_=table.window_start_ns),
            },
        )
        .returning(table.failures, table.window_start_ns)
    )
    row = (await session.execute(statement)).one()
    return int(row[0]), int(row[1])


async def block_throttle(session: AsyncSession, key: str, until_ns: int) -> None:
    await session.execute(
        update(AuthThrottle).where(AuthThrottle.key == key).values(blocked_until_ns=until_ns)
    )


async def reserve_ticket_attempt(
    session: AsyncSession, ticket_id: str, max_attempts: int
) -> int | None:
    """Take one guess from a ticket atomically; None when no guess is left."""
    result = await session.execute(
        update(AuthTicket)
        .where(AuthTicket.id == ticket_id, AuthTicket.attempts < max_attempts)
        .values(attempts=AuthTicket.attempts + 1)
        .returning(AuthTicket.attempts)
    )
    value = result.scalar_one_or_none()
    return None if value is None else int(value)


async def clear_throttle(session: AsyncSession, key: str) -> None:
    await session.execute(delete(AuthThrottle).where(AuthThrottle.key == key))


# Tickets ----------------------------------------------------------------------------------


async def ticket_by_hash(session: AsyncSession, token_hash: bytes, kind: str) -> AuthTicket | None:
    query = select(AuthTicket).where(AuthTicket.token_hash == token_hash, AuthTicket.kind == kind)
    return (await session.execute(query)).scalar_one_or_none()


async def open_ticket(
    session: AsyncSession, token_hash: bytes, kind: str, now_ns: int
) -> AuthTicket | None:
    """An unspent, unexpired ticket of this kind, looked up by its secret's hash."""
    row = await ticket_by_hash(session, token_hash, kind)
    if row is None or row.used_ns is not None or row.expires_ns <= now_ns:
        return None
    return row


async def recent_tickets(
    session: AsyncSession, user_id: str, kind: str, *, since_ns: int
) -> Sequence[AuthTicket]:
    query = (
        select(AuthTicket)
        .where(
            AuthTicket.user_id == user_id,
            AuthTicket.kind == kind,
            AuthTicket.created_ns >= since_ns,
        )
        .order_by(AuthTicket.created_ns)
    )
    return (await session.execute(query)).scalars().all()


async def ticket_by_id(session: AsyncSession, ticket_id: str, kind: str) -> AuthTicket | None:
    query = select(AuthTicket).where(AuthTicket.id == ticket_id, AuthTicket.kind == kind)
    return (await session.execute(query)).scalar_one_or_none()


async def spend_ticket(session: AsyncSession, ticket_id: str, now_ns: int) -> bool:
    """Mark a ticket used; False if another request used it first (single use under races)."""
    result = await session.execute(
        update(AuthTicket)
        .where(AuthTicket.id == ticket_id, AuthTicket.used_ns.is_(None))
        .values(used_ns=now_ns)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def delete_tickets_expired_before(session: AsyncSession, cutoff_ns: int) -> int:
    result = await session.execute(delete(AuthTicket).where(AuthTicket.expires_ns < cutoff_ns))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def spend_open_tickets(session: AsyncSession, user_id: str, kind: str, now_ns: int) -> None:
    await session.execute(
        update(AuthTicket)
        .where(AuthTicket.user_id == user_id, AuthTicket.kind == kind, AuthTicket.used_ns.is_(None))
        .values(used_ns=now_ns)
    )


# Factors ----------------------------------------------------------------------------------


async def factors_of(
    session: AsyncSession, user_id: str, *, status: str | None = ACTIVE
) -> Sequence[MfaFactor]:
    query = select(MfaFactor).where(MfaFactor.user_id == user_id, MfaFactor.revoked_ns.is_(None))
    if status is not None:
        query = query.where(MfaFactor.status == status)
    return (await session.execute(query.order_by(MfaFactor.created_ns))).scalars().all()


async def factor_of(session: AsyncSession, user_id: str, factor_id: str) -> MfaFactor | None:
    query = select(MfaFactor).where(
        MfaFactor.id == factor_id, MfaFactor.user_id == user_id, MfaFactor.revoked_ns.is_(None)
    )
    return (await session.execute(query)).scalar_one_or_none()


async def pending_factors(
    session: AsyncSession, user_id: str, *, since_ns: int
) -> Sequence[MfaFactor]:
    """A user's enrolments started since `since_ns` and not yet confirmed, oldest first."""
    query = select(MfaFactor).where(
        MfaFactor.user_id == user_id,
        MfaFactor.status == "pending",
        MfaFactor.revoked_ns.is_(None),
        MfaFactor.created_ns >= since_ns,
    )
    return (await session.execute(query.order_by(MfaFactor.created_ns))).scalars().all()


async def expire_pending_factors(
    session: AsyncSession, *, started_before_ns: int, now_ns: int
) -> int:
    """Retire enrolments nobody confirmed in time; returns how many."""
    result = await session.execute(
        update(MfaFactor)
        .where(
            MfaFactor.status == "pending",
            MfaFactor.revoked_ns.is_(None),
            MfaFactor.created_ns < started_before_ns,
        )
        .values(status="expired", revoked_ns=now_ns)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def factor_by_credential(session: AsyncSession, credential_id: bytes) -> MfaFactor | None:
    query = select(MfaFactor).where(
        MfaFactor.credential_id == credential_id,
        MfaFactor.revoked_ns.is_(None),
        MfaFactor.status == ACTIVE,
    )
    return (await session.execute(query)).scalar_one_or_none()


async def advance_totp_step(session: AsyncSession, factor_id: str, step: int, now_ns: int) -> bool:
    """Record a used TOTP step; False if an equal or later step was already used (replay)."""
    result = await session.execute(
        update(MfaFactor)
        .where(
            MfaFactor.id == factor_id,
            (MfaFactor.last_used_step.is_(None)) | (MfaFactor.last_used_step < step),
        )
        .values(last_used_step=step, last_used_ns=now_ns)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def advance_sign_count(
    session: AsyncSession, factor_id: str, *, previous: int, new: int, now_ns: int
) -> bool:
    """Store a WebAuthn signature counter only if nobody stored another since we read it."""
    counter = func.coalesce(MfaFactor.sign_count, 0)
    result = await session.execute(
        update(MfaFactor)
        .where(MfaFactor.id == factor_id, counter == previous)
        .values(sign_count=new, last_used_ns=now_ns)
        .execution_options(synchronize_session="fetch")
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def backup_codes(session: AsyncSession, factor_id: str) -> Sequence[BackupCode]:
    query = select(BackupCode).where(BackupCode.factor_id == factor_id).order_by(BackupCode.idx)
    return (await session.execute(query)).scalars().all()


async def spend_backup_code(session: AsyncSession, factor_id: str, idx: int, now_ns: int) -> bool:
    result = await session.execute(
        update(BackupCode)
        .where(
            BackupCode.factor_id == factor_id, BackupCode.idx == idx, BackupCode.used_ns.is_(None)
        )
        .values(used_ns=now_ns)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


# Devices ----------------------------------------------------------------------------------


async def device_by_token(session: AsyncSession, user_id: str, token_hash: bytes) -> Device | None:
    query = select(Device).where(
        Device.user_id == user_id, Device.token_hash == token_hash, Device.revoked_ns.is_(None)
    )
    return (await session.execute(query)).scalar_one_or_none()


async def device_with_token(session: AsyncSession, token_hash: bytes) -> Device | None:
    """The live device holding a token, whoever it belongs to (the caller checks the owner)."""
    query = select(Device).where(Device.token_hash == token_hash, Device.revoked_ns.is_(None))
    return (await session.execute(query)).scalar_one_or_none()


async def devices_with_fingerprint(
    session: AsyncSession, user_id: str, fingerprint: bytes, *, seen_since_ns: int
) -> Sequence[Device]:
    """A user's live devices with this fingerprint seen since `seen_since_ns`, newest first."""
    query = (
        select(Device)
        .where(
            Device.user_id == user_id,
            Device.fingerprint == fingerprint,
            Device.revoked_ns.is_(None),
            Device.last_seen_ns >= seen_since_ns,
        )
        .order_by(Device.last_seen_ns.desc())
    )
    return (await session.execute(query)).scalars().all()


async def devices_of(session: AsyncSession, user_id: str) -> Sequence[Device]:
    query = (
        select(Device)
        .where(Device.user_id == user_id, Device.revoked_ns.is_(None))
        .order_by(Device.created_ns)
    )
    return (await session.execute(query)).scalars().all()


async def shared_fingerprint_devices(session: AsyncSession, *, max_users: int) -> Sequence[Device]:
    """Every device (revoked ones too: past use is still evidence) whose fingerprint at least
    two and at most `max_users` distinct users hold, by fingerprint then user."""
    shared = (
        select(Device.fingerprint)
        .group_by(Device.fingerprint)
        .having(func.count(func.distinct(Device.user_id)).between(2, max_users))
    )
    query = (
        select(Device)
        .where(Device.fingerprint.in_(shared))
        .order_by(Device.fingerprint, Device.user_id, Device.id)
    )
    return (await session.execute(query)).scalars().all()


async def sign_in_counts(session: AsyncSession, device_ids: Sequence[str]) -> dict[str, int]:
    """How many sessions (sign-ins) each of these devices started."""
    if not device_ids:
        return {}
    query = (
        select(AuthSession.device_id, func.count())
        .where(AuthSession.device_id.in_(sorted(set(device_ids))))
        .group_by(AuthSession.device_id)
    )
    return {str(row[0]): int(row[1]) for row in await session.execute(query)}


async def sign_ins_between(
    session: AsyncSession,
    *,
    since_ns: int,
    until_ns: int,
    after: tuple[int, str] | None,
    limit: int,
) -> Sequence[tuple[str, str, str, int]]:
    """(session id, user id, client address, time) of sessions started in [since, until)
    with a known address, in (time, id) order after `after` (keyset paging)."""
    query = select(
        AuthSession.id, AuthSession.user_id, AuthSession.ip, AuthSession.created_ns
    ).where(
        AuthSession.created_ns >= since_ns,
        AuthSession.created_ns < until_ns,
        AuthSession.ip.is_not(None),
    )
    if after is not None:
        at, last_id = after
        query = query.where(
            (AuthSession.created_ns > at)
            | ((AuthSession.created_ns == at) & (AuthSession.id > last_id))
        )
    query = query.order_by(AuthSession.created_ns, AuthSession.id).limit(limit)
    return [(r.id, r.user_id, r.ip, r.created_ns) for r in await session.execute(query)]


async def device_of(session: AsyncSession, user_id: str, device_id: str) -> Device | None:
    query = select(Device).where(
        Device.id == device_id, Device.user_id == user_id, Device.revoked_ns.is_(None)
    )
    return (await session.execute(query)).scalar_one_or_none()


# Sessions and refresh tokens ----------------------------------------------------------------


async def auth_session(session: AsyncSession, session_id: str) -> AuthSession | None:
    return await session.get(AuthSession, session_id)


async def sessions_of(session: AsyncSession, user_id: str, now_ns: int) -> Sequence[AuthSession]:
    query = (
        select(AuthSession)
        .where(
            AuthSession.user_id == user_id,
            AuthSession.revoked_ns.is_(None),
            AuthSession.expires_ns > now_ns,
        )
        .order_by(AuthSession.created_ns)
    )
    return (await session.execute(query)).scalars().all()


async def revoke_sessions(
    session: AsyncSession,
    *,
    user_id: str,
    now_ns: int,
    reason: str,
    session_id: str | None = None,
    device_id: str | None = None,
) -> list[str]:
    """Revoke one session, a device's sessions, or all of a user's; returns the ids revoked."""
    query = select(AuthSession.id).where(
        AuthSession.user_id == user_id, AuthSession.revoked_ns.is_(None)
    )
    if session_id is not None:
        query = query.where(AuthSession.id == session_id)
    if device_id is not None:
        query = query.where(AuthSession.device_id == device_id)
    ids = list((await session.execute(query)).scalars().all())
    if ids:
        await session.execute(
            update(AuthSession)
            .where(AuthSession.id.in_(ids))
            .values(revoked_ns=now_ns, revoke_reason=reason)
        )
    return ids


async def refresh_token(session: AsyncSession, token_hash: bytes) -> RefreshToken | None:
    return await session.get(RefreshToken, token_hash)


async def spend_refresh_token(
    session: AsyncSession, token_hash: bytes, now_ns: int, *, successor_enc: bytes
) -> bool:
    """Spend a refresh token and name its successor in one step; False if already spent."""
    result = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.token_hash == token_hash, RefreshToken.spent_ns.is_(None))
        .values(spent_ns=now_ns, successor_enc=successor_enc)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def refresh_token_as_committed(
    session: AsyncSession, token_hash: bytes
) -> RefreshToken | None:
    """Read a refresh token again from the database (a concurrent refresh may have spent it)."""
    query = (
        select(RefreshToken)
        .where(RefreshToken.token_hash == token_hash)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(query)).scalar_one_or_none()


async def live_refresh_tokens(session: AsyncSession, session_id: str) -> Sequence[RefreshToken]:
    """The unspent refresh tokens of a session: its chain's heads (one, unless forked)."""
    query = select(RefreshToken).where(
        RefreshToken.session_id == session_id, RefreshToken.spent_ns.is_(None)
    )
    return (await session.execute(query)).scalars().all()


async def open_tickets_of_kind(
    session: AsyncSession, kind: str, now_ns: int
) -> Sequence[AuthTicket]:
    """Every unspent, unexpired ticket of one kind (for kinds issued rarely: invitations)."""
    query = select(AuthTicket).where(
        AuthTicket.kind == kind, AuthTicket.used_ns.is_(None), AuthTicket.expires_ns > now_ns
    )
    return (await session.execute(query.order_by(AuthTicket.created_ns))).scalars().all()


# Staff administration (identity/administration.py) --------------------------------------------


async def users_by_username_prefix(
    session: AsyncSession, prefix: str, *, roles: Sequence[str] | None, limit: int
) -> Sequence[User]:
    """Users whose username starts with `prefix` (LIKE wildcards in it match literally)."""
    query = select(User).where(User.username.startswith(prefix, autoescape=True))
    if roles is not None:
        query = query.where(User.role.in_(list(roles)))
    return (await session.execute(query.order_by(User.username).limit(limit))).scalars().all()


async def users_page(
    session: AsyncSession,
    *,
    roles: Sequence[str] | None,
    status: str | None,
    after_username: str | None,
    limit: int,
) -> Sequence[User]:
    """Users in username order, after `after_username` (keyset pagination)."""
    query = select(User)
    if roles is not None:
        query = query.where(User.role.in_(list(roles)))
    if status is not None:
        query = query.where(User.status == status)
    if after_username is not None:
        query = query.where(User.username > after_username)
    return (await session.execute(query.order_by(User.username).limit(limit))).scalars().all()


async def locked_user(session: AsyncSession, user_id: str) -> User | None:
    """A user row locked for the rest of the transaction (concurrent staff changes queue)."""
    query = (
        select(User)
        .where(User.id == user_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.execute(query)).scalar_one_or_none()


async def recent_sessions(
    session: AsyncSession, user_id: str, *, limit: int
) -> Sequence[AuthSession]:
    """A user's latest sessions (one per sign-in), ended ones included, newest first."""
    query = (
        select(AuthSession)
        .where(AuthSession.user_id == user_id)
        .order_by(AuthSession.created_ns.desc(), AuthSession.id.desc())
        .limit(limit)
    )
    return (await session.execute(query)).scalars().all()


async def revoke_factors(session: AsyncSession, user_id: str, now_ns: int) -> Sequence[MfaFactor]:
    """Revoke every factor of a user, enrolments in progress included; returns them."""
    rows = (
        (
            await session.execute(
                select(MfaFactor).where(
                    MfaFactor.user_id == user_id, MfaFactor.revoked_ns.is_(None)
                )
            )
        )
        .scalars()
        .all()
    )
    for row in rows:
        row.status = "revoked"
        row.revoked_ns = now_ns
    return rows


# Staff access (access/ reads and changes these through identity/staff.py) --------------------


async def users_with_roles(session: AsyncSession, roles: Iterable[str]) -> Sequence[User]:
    query = select(User).where(User.role.in_(list(roles))).order_by(User.username)
    return (await session.execute(query)).scalars().all()


async def bump_permissions_version(
    session: AsyncSession, user_id: str, *, access_level: str | None = None
) -> int | None:
    """Add one to the user's permissions version (and set their level); the new version."""
    values: dict[str, Any] = {"permissions_version": User.permissions_version + 1}
    if access_level is not None:
        values["access_level"] = access_level
    result = await session.execute(
        update(User)
        .where(User.id == user_id)
        .values(**values)
        .returning(User.permissions_version)
        .execution_options(synchronize_session=False)
    )
    version = result.scalar_one_or_none()
    return None if version is None else int(version)
