"""What the access use cases share: policy from settings, the actor, service-level authority
checks (RBAC-5), input checks, and the notices they send."""

from __future__ import annotations

import unicodedata
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tradeguard.access import repository
from tradeguard.access.domain import (
    STAFF_ROLES,
    AccessEvent,
    AccessLevel,
    GrantKind,
    GrantStatus,
    GrantTarget,
    LiveGrant,
    Permission,
    effective_with_grants,
    standing_permissions,
)
from tradeguard.access.models import AccessGrant
from tradeguard.config import Settings
from tradeguard.core.clock import NS_PER_SECOND, Clock, ns_to_iso
from tradeguard.core.errors import Forbidden, InvalidInput, NotFound, PermissionMissing
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import unit_of_work
from tradeguard.identity import staff
from tradeguard.identity.staff import Member
from tradeguard.ledger.domain import LedgerEvent, Party
from tradeguard.ledger.service import Ledger
from tradeguard.notify.service import Notifier

T = TypeVar("T")

MIN_REASON_CHARS = 3
MAX_REASON_CHARS = 500
MAX_NOTE_CHARS = 2000
MINUTE_NS = 60 * NS_PER_SECOND
# A grant's customer scope names at most this many customers (IAC-4: a scope is for a case,
# not a population).
MAX_SCOPE_CUSTOMERS = 20
MAX_USER_ID_CHARS = 36


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    grant_max_minutes: int = 480
    request_ttl_minutes: int = 24 * 60
    breakglass_max_minutes: int = 60
    review_unused_days: int = 90

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessPolicy:
        return cls(
            grant_max_minutes=settings.access_grant_max_minutes,
            request_ttl_minutes=settings.access_request_ttl_minutes,
            breakglass_max_minutes=settings.access_breakglass_max_minutes,
            review_unused_days=settings.access_review_unused_days,
        )

    def grant_cap(self, target: GrantTarget) -> int:
        """The longest a requested grant of `target` may last, in minutes (0: not requestable)."""
        return min(target.cap_minutes(), self.grant_max_minutes)

    def breakglass_cap(self, target: GrantTarget) -> int:
        cap = target.cap_minutes()
        return min(cap, self.breakglass_max_minutes) if cap else 0


@dataclass(frozen=True, slots=True)
class AccessDeps:
    clock: Clock
    ids: IdGenerator
    ledger: Ledger
    notifier: Notifier
    policy: AccessPolicy
    sessions: async_sessionmaker[AsyncSession]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: a staff member (over the API, or named with --as at the CLI), or the operator
    at the CLI (`operator` is then the operating-system user).

    `verified_by` says how a staff member named at the CLI proved it was them
    ("hardware_key_session": a console code issued by their session signed in with a security
    key or passkey), and `code_session_id` which session issued it; both go into every audit
    event they cause.
    """

    user_id: str | None
    operator: str | None = None
    request_id: str | None = None
    verified_by: str | None = None
    code_session_id: str | None = None

    @property
    def party(self) -> Party:
        if self.user_id is not None:
            return Party("staff", self.user_id)
        return Party("operator", self.operator or "unknown")

    @property
    def label(self) -> str:
        if self.user_id is not None:
            return f"user:{self.user_id}"
        return f"operator:{self.operator or 'unknown'}"

    def audit_data(self) -> dict[str, str]:
        """How the action arrived, for its ledger event."""
        if not self.operator:
            return {"via": "api"}
        data = {"via": "cli", "operator": self.operator}
        if self.user_id is not None and self.verified_by is not None:
            data["staff_verified_by"] = self.verified_by
            if self.code_session_id is not None:
                data["staff_code_session_id"] = self.code_session_id
        return data


class AccessRefused(Forbidden):
    """A refusal the ledger must record although the action changed nothing (self-approval,
    authority that is not independent): the edge commits `audit` on its own."""

    def __init__(self, detail: str, *, audit: LedgerEvent) -> None:
        super().__init__(detail)
        self.audit = audit


async def in_transaction(deps: AccessDeps, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run one use case in one unit of work; a policy refusal commits its audit event alone."""
    try:
        async with unit_of_work(deps.sessions) as session:
            return await work(session)
    except AccessRefused as refused:
        async with unit_of_work(deps.sessions) as session:
            await deps.ledger.append(session, refused.audit)
        raise


@dataclass(frozen=True, slots=True)
class Authority:
    """What a user may do right now, read from the database (RBAC-5: the service checks again,
    whatever the route guard or the CLI decided)."""

    member: Member
    standing: frozenset[str]
    grants: tuple[LiveGrant, ...]
    permissions: frozenset[str] = field(default_factory=frozenset)
    via_grant: Mapping[str, str] = field(default_factory=dict)

    def holds(self, permission: Permission) -> bool:
        return self.member.active and permission.value in self.permissions

    def independent_sources(self, permission: Permission, *, not_from: str) -> list[str]:
        """Where `permission` comes from, leaving out what `not_from` approved and break-glass:
        "standing" or the ids of approved grants."""
        if not self.member.active:
            return []
        if permission.value in self.standing:
            return ["standing"]
        return [
            g.grant_id
            for g in self.grants
            if g.kind is GrantKind.REQUEST
            and g.approved_by not in {None, not_from}
            and permission.value in g.target.permissions(self.member.role)
        ]


async def authority(session: AsyncSession, user_id: str, now_ns: int) -> Authority | None:
    member = await staff.member(session, user_id)
    if member is None:
        return None
    standing = standing_permissions(member.role, member.level)
    grants: tuple[LiveGrant, ...] = ()
    via: Mapping[str, str] = {}
    held = standing
    if member.is_staff:
        grants = tuple(await repository.live_grants(session, user_id, now_ns))
        held, via = effective_with_grants(standing, member.role, grants, now_ns)
    return Authority(member, standing, grants, held, via)


async def approving_sources(
    session: AsyncSession, approver: Authority, *, requester: str, now_ns: int
) -> list[str]:
    """Where the approver's access:approve comes from, leaving out break-glass and whatever
    comes from the requester: a grant the requester approved, or one approved by an admin
    whose own approving authority comes (through any chain of live grants) only from the
    requester. "standing" or grant ids; empty: the approver may not decide this request."""
    sources = approver.independent_sources(Permission.ACCESS_APPROVE, not_from=requester)
    if sources == ["standing"]:
        return sources
    by_id = {g.grant_id: g for g in approver.grants}
    seen = frozenset({approver.member.user_id})
    kept: list[str] = []
    for grant_id in sources:
        lender = by_id[grant_id].approved_by
        if lender is None or not await _only_from(
            session, lender, requester=requester, now_ns=now_ns, seen=seen
        ):
            kept.append(grant_id)
    return kept


async def _only_from(
    session: AsyncSession, user_id: str, *, requester: str, now_ns: int, seen: frozenset[str]
) -> bool:
    """Whether `user_id`'s approving authority comes only from `requester` through live
    request grants. A user with standing authority, break-glass, or no live approving
    authority at all (the chain ends elsewhere) is independent; a cycle that never reaches
    an independent root counts as dependent."""
    if user_id == requester:
        return True
    if user_id in seen:
        return True
    found = await authority(session, user_id, now_ns)
    if found is None or not found.member.active:
        return False
    permission = Permission.ACCESS_APPROVE.value
    if permission in found.standing:
        return False
    supplying = [g for g in found.grants if permission in g.target.permissions(found.member.role)]
    if not supplying:
        return False
    for grant in supplying:
        if grant.kind is not GrantKind.REQUEST or grant.approved_by is None:
            return False
        if not await _only_from(
            session, grant.approved_by, requester=requester, now_ns=now_ns, seen=seen | {user_id}
        ):
            return False
    return True


async def acting_staff(session: AsyncSession, actor: Actor, now_ns: int) -> Authority:
    """The actor's authority; only an active staff member acts on their own behalf."""
    if actor.user_id is None:
        raise Forbidden("this action is taken by a named staff member")
    found = await authority(session, actor.user_id, now_ns)
    if found is None or not found.member.is_staff or not found.member.active:
        raise Forbidden("only active staff members can do this")
    return found


def require(found: Authority, permission: Permission, action: str) -> None:
    if not found.holds(permission):
        raise PermissionMissing(
            f"{action} needs the {permission.value} permission", permission=permission.value
        )


# Input -------------------------------------------------------------------------------------------


def clean_text(value: str | None, *, what: str, limit: int) -> str:
    """A reason or note: trimmed, at least a few characters, no control characters."""
    text = " ".join((value or "").split())
    if len(text) < MIN_REASON_CHARS:
        raise InvalidInput(f"give a {what} of at least {MIN_REASON_CHARS} characters")
    if len(text) > limit:
        raise InvalidInput(f"the {what} is longer than {limit} characters")
    if any(unicodedata.category(ch) in {"Cc", "Cf"} for ch in text):
        raise InvalidInput(f"the {what} contains control characters")
    return text


def parse_target(permission: str | None, level: str | None) -> GrantTarget:
    """One permission or one level, by name; unknown names are refused."""
    if (permission is None) == (level is None):
        raise InvalidInput("name exactly one of a permission or a level")
    if permission is not None:
        try:
            return GrantTarget(permission=Permission(permission))
        except ValueError:
            raise InvalidInput(
                "unknown permission; `tradeguard access catalogue` lists them"
            ) from None
    try:
        return GrantTarget(level=AccessLevel(level or ""))
    except ValueError:
        names = ", ".join(lv.value for lv in AccessLevel)
        raise InvalidInput(f"unknown level; the levels are {names}") from None


async def customer_scope(
    session: AsyncSession, customers: Sequence[str] | None
) -> list[str] | None:
    """A grant's customer scope: distinct ids of existing non-staff users, at most
    MAX_SCOPE_CUSTOMERS, in the order given; None when none are named (not limited)."""
    if not customers:
        return None
    wanted = list(dict.fromkeys(c.strip() for c in customers))
    if len(wanted) > MAX_SCOPE_CUSTOMERS:
        raise InvalidInput(f"a grant names at most {MAX_SCOPE_CUSTOMERS} customers")
    for user_id in wanted:
        if not user_id or len(user_id) > MAX_USER_ID_CHARS or not user_id.isprintable():
            raise InvalidInput("a customer is named by a user id")
        member = await staff.member(session, user_id)
        # Unknown and staff ids read the same: the refusal does not confirm who is staff.
        if member is None or member.is_staff:
            raise InvalidInput(
                "each customer must be the user id of an existing customer (not staff)"
            )
    return wanted


def check_minutes(minutes: int | None, cap: int, *, what: str) -> int:
    if cap <= 0:
        raise InvalidInput(f"{what} cannot be requested: it is held at every level or adds nothing")
    if minutes is None:
        return cap
    if isinstance(minutes, bool) or not isinstance(minutes, int) or minutes <= 0:
        raise InvalidInput("the duration must be a whole number of minutes above zero")
    if minutes > cap:
        raise InvalidInput(f"{what} can be granted for at most {cap} minutes")
    return minutes


def effective_status(row: AccessGrant, now_ns: int) -> GrantStatus:
    """The status as of now: pending past its deadline and approved past its end are expired,
    even before the expiry sweep writes it."""
    status = GrantStatus(row.status)
    if status is GrantStatus.PENDING and row.decide_by_ns <= now_ns:
        return GrantStatus.EXPIRED
    if status is GrantStatus.APPROVED and (row.expires_ns or 0) <= now_ns:
        return GrantStatus.EXPIRED
    return status


def grant_facts(row: AccessGrant) -> dict[str, Any]:
    """What a grant's ledger events say about it."""
    facts: dict[str, Any] = {
        "grant_id": row.id,
        "kind": row.kind,
        "minutes": row.duration_seconds // 60,
    }
    if row.permission is not None:
        facts["permission"] = row.permission
    if row.level is not None:
        facts["level"] = row.level
    if row.customers:
        facts["customers"] = list(row.customers)
    return facts


def grant_event(event: AccessEvent, row: AccessGrant, actor: Actor, **data: Any) -> LedgerEvent:
    return LedgerEvent(
        type=event,
        actor=actor.party,
        subject=Party("user", row.user_id),
        data={**grant_facts(row), **actor.audit_data(), **data},
        request_id=actor.request_id,
    )


def target_label(row: AccessGrant) -> str:
    return row.permission if row.permission is not None else f"the {row.level} level"


def when(ns: int | None) -> str:
    return ns_to_iso(ns)[:19] + "Z" if ns is not None else "-"


async def notify(
    deps: AccessDeps,
    session: AsyncSession,
    member: Member,
    *,
    template: str,
    subject: str,
    body: str,
) -> None:
    """Queue one notice in the caller's transaction (the outbox sends it after commit)."""
    await deps.notifier.enqueue_email(
        session, to=member.email, template=template, subject=subject, body=body
    )


async def active_staff(session: AsyncSession, *roles: str) -> list[Member]:
    wanted = frozenset(r for r in STAFF_ROLES if r.value in roles)
    return [m for m in await staff.staff_members(session, wanted) if m.active]


async def find_member(session: AsyncSession, user_ref: str) -> Member:
    """A user by id or username; 404 when there is none."""
    found = await staff.member(session, user_ref) if len(user_ref) == 36 else None
    if found is None:
        found = await staff.member_by_username(session, user_ref)
    if found is None:
        raise NotFound("no such user")
    return found
