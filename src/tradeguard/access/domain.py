"""RBAC-1/RBAC-2 roles and permissions, shaped `scope:action` as the spec names them; IAC-2
access levels layered on the staff roles; the permission catalogue; time-limited grants.

Pure: no database, no framework. What a staff member may do is always bounded by their
role; their level says which kinds of the role's permissions they hold standing; a live
grant (approved or break-glass, IAC-1) adds a permission or a level of the same role until
it expires. Traders have no level: they hold their role's permissions.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    TRADER = "TRADER"
    ADMIN = "ADMIN"
    COMPLIANCE = "COMPLIANCE"
    SUPPORT = "SUPPORT"


class Permission(StrEnum):
    ORDER_PLACE = "order:place"
    ORDER_CANCEL = "order:cancel"
    ORDER_MODIFY = "order:modify"
    ACCOUNT_VIEW = "account:view"
    ACCOUNT_WITHDRAW = "account:withdraw"
    ADMIN_USERS = "admin:users"
    ADMIN_CONFIG = "admin:config"
    COMPLIANCE_AUDIT = "compliance:audit"
    COMPLIANCE_REPORT = "compliance:report"
    # Market surveillance (issue #12, MAN-1, MAN-2): alerts and their evidence.
    COMPLIANCE_SURVEILLANCE = "compliance:surveillance"
    # Surveillance cases and automatic actions (issue #12, MAN-5): working a case (assign,
    # annotate, escalate, close, record a filing), and the action policy and its reversals.
    COMPLIANCE_CASES = "compliance:cases"
    COMPLIANCE_ACTIONS = "compliance:actions"
    # Staff views of a customer (issue #8): the profile with personal data masked, and
    # revealing one masked field with a stated reason (audited, shown to the customer).
    CUSTOMER_READ = "customer:read"
    CUSTOMER_UNMASK = "customer:unmask"
    # Staff access control (issue #8, IAC-1, IAC-4).
    ACCESS_REQUEST = "access:request"
    ACCESS_BREAKGLASS = "access:breakglass"
    ACCESS_APPROVE = "access:approve"
    ACCESS_REVIEW = "access:review"
    ACCESS_ATTEST = "access:attest"
    # A customer's own stored cards (issue #10, PCI-2): add, list, remove. Detokenizing is
    # not a person's permission at all: only the payment service may (vault/domain.py).
    CARD_MANAGE = "card:manage"
    # Money movement (issue #11, WDL-3): the review queue of large or flagged withdrawals,
    # where two different staff members must approve (four-eyes).
    FUNDS_REVIEW = "funds:review"
    # Account-takeover defence (issue #11, ATO-2): reading reviews and freezes, working
    # reviews, and lifting a withdrawal freeze (one member asks, another approves).
    FRAUD_TAKEOVER = "fraud:takeover"
    FRAUD_REVIEW = "fraud:review"
    FRAUD_FREEZE = "fraud:freeze"
    # Account recovery after a takeover (ATO-3): open and work a recovery case; each
    # consequential step is proposed by one member and approved by another (four-eyes).
    FRAUD_RECOVER = "fraud:recover"
    # Onboarding (issue #13, KYC-1, KYC-2): a customer's own application and documents; staff
    # review of applications, documents and risk ratings.
    KYC_APPLY = "kyc:apply"
    KYC_REVIEW = "kyc:review"
    # Sanctions screening (issue #13, KYC-2): loading list versions and re-screening; working
    # screening hits (confirm, or clear a false positive).
    SANCTIONS_LIST = "sanctions:list"
    SANCTIONS_REVIEW = "sanctions:review"
    # Anti-money laundering (issue #13, AML-1..3): reading monitoring alerts and CTRs; working
    # AML cases; approving and exporting SAR and CTR filings.
    AML_ALERTS = "aml:alerts"
    AML_CASES = "aml:cases"
    AML_FILE = "aml:file"


# Least privilege (IAC-1): each role gets only what its job needs. ADMIN manages users and
# configuration and views all data, but does not trade or move money on a customer's behalf.
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.TRADER: frozenset(
        {
            Permission.ORDER_PLACE,
            Permission.ORDER_CANCEL,
            Permission.ORDER_MODIFY,
            Permission.ACCOUNT_VIEW,
            Permission.ACCOUNT_WITHDRAW,
            Permission.CARD_MANAGE,
            Permission.KYC_APPLY,
        }
    ),
    Role.ADMIN: frozenset(
        {
            Permission.ADMIN_USERS,
            Permission.ADMIN_CONFIG,
            Permission.ACCOUNT_VIEW,
            Permission.CUSTOMER_READ,
            Permission.ACCESS_REQUEST,
            Permission.ACCESS_BREAKGLASS,
            Permission.ACCESS_APPROVE,
            Permission.ACCESS_REVIEW,
            Permission.ACCESS_ATTEST,
        }
    ),
    Role.COMPLIANCE: frozenset(
        {
            Permission.COMPLIANCE_AUDIT,
            Permission.COMPLIANCE_REPORT,
            Permission.COMPLIANCE_SURVEILLANCE,
            Permission.COMPLIANCE_CASES,
            Permission.COMPLIANCE_ACTIONS,
            Permission.FUNDS_REVIEW,
            Permission.ACCOUNT_VIEW,
            Permission.CUSTOMER_READ,
            Permission.CUSTOMER_UNMASK,
            Permission.ACCESS_REQUEST,
            Permission.ACCESS_REVIEW,
            Permission.ACCESS_ATTEST,
            Permission.FRAUD_TAKEOVER,
            Permission.FRAUD_REVIEW,
            Permission.FRAUD_FREEZE,
            Permission.FRAUD_RECOVER,
            Permission.KYC_REVIEW,
            Permission.SANCTIONS_LIST,
            Permission.SANCTIONS_REVIEW,
            Permission.AML_ALERTS,
            Permission.AML_CASES,
            Permission.AML_FILE,
        }
    ),
    Role.SUPPORT: frozenset(
        {
            Permission.ACCOUNT_VIEW,
            Permission.CUSTOMER_READ,
            Permission.CUSTOMER_UNMASK,
            Permission.ACCESS_REQUEST,
        }
    ),
}

STAFF_ROLES = frozenset({Role.ADMIN, Role.COMPLIANCE, Role.SUPPORT})


def permissions_for(role: Role) -> list[str]:
    """The sorted permission strings a role carries (as put into the access token)."""
    return sorted(p.value for p in ROLE_PERMISSIONS[role])


# Access levels (IAC-2) ---------------------------------------------------------------------


class Kind(StrEnum):
    """What a permission lets its holder do; a level holds some kinds of its role's permissions."""

    # Asking for more or taking it in an emergency: held at every level, since it is how a
    # lower level reaches more.
    ELEVATE = "elevate"
    VIEW = "view"
    OPERATE = "operate"
    CONFIGURE = "configure"
    ADMINISTER = "administer"


class AccessLevel(StrEnum):
    READ_ONLY = "read-only"
    OPERATOR = "operator"
    ENGINEER = "engineer"
    ADMIN = "admin"


LEVEL_ORDER: tuple[AccessLevel, ...] = (
    AccessLevel.READ_ONLY,
    AccessLevel.OPERATOR,
    AccessLevel.ENGINEER,
    AccessLevel.ADMIN,
)
LEVEL_KINDS: dict[AccessLevel, frozenset[Kind]] = {
    AccessLevel.READ_ONLY: frozenset({Kind.ELEVATE, Kind.VIEW}),
    AccessLevel.OPERATOR: frozenset({Kind.ELEVATE, Kind.VIEW, Kind.OPERATE}),
    AccessLevel.ENGINEER: frozenset({Kind.ELEVATE, Kind.VIEW, Kind.OPERATE, Kind.CONFIGURE}),
    AccessLevel.ADMIN: frozenset(Kind),
}
LEVEL_DESCRIPTIONS: dict[AccessLevel, str] = {
    AccessLevel.READ_ONLY: "View data: the role's view permissions",
    AccessLevel.OPERATOR: "Execute operations: read-only plus the role's operate permissions",
    AccessLevel.ENGINEER: "Change configuration: operator plus the role's configure permissions",
    AccessLevel.ADMIN: "Full access: every permission of the role",
}
# Staff rows written before levels existed, and staff created without naming one, hold the
# admin level: exactly the whole role, what they held before levels existed.
DEFAULT_STAFF_LEVEL = AccessLevel.ADMIN
# A staff row with no level (a user whose role was changed to a staff role by code that does
# not know about levels) holds the least.
UNSET_STAFF_LEVEL = AccessLevel.READ_ONLY


def parse_level(value: str | None) -> AccessLevel | None:
    """A stored or typed level name; None when unset or unknown."""
    if value is None:
        return None
    try:
        return AccessLevel(value)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    permission: Permission
    kind: Kind
    description: str
    # The longest a just-in-time grant of this permission may last (0: not requestable).
    max_grant_minutes: int


def _entry(permission: Permission, kind: Kind, description: str) -> CatalogueEntry:
    return CatalogueEntry(permission, kind, description, GRANT_CAP_MINUTES[kind])


# Riskier kinds are lent for less time. ELEVATE is held at every level, so never requested.
GRANT_CAP_MINUTES: dict[Kind, int] = {
    Kind.ELEVATE: 0,
    Kind.VIEW: 480,
    Kind.OPERATE: 240,
    Kind.CONFIGURE: 120,
    Kind.ADMINISTER: 60,
}
LEVEL_CAP_MINUTES: dict[AccessLevel, int] = {
    AccessLevel.READ_ONLY: 0,  # the lowest level: nothing to request
    AccessLevel.OPERATOR: GRANT_CAP_MINUTES[Kind.OPERATE],
    AccessLevel.ENGINEER: GRANT_CAP_MINUTES[Kind.CONFIGURE],
    AccessLevel.ADMIN: GRANT_CAP_MINUTES[Kind.ADMINISTER],
}

CATALOGUE: dict[Permission, CatalogueEntry] = {
    entry.permission: entry
    for entry in (
        _entry(
            Permission.ACCOUNT_VIEW,
            Kind.VIEW,
            "See trading accounts, balances, positions, orders and executions",
        ),
        _entry(Permission.ORDER_PLACE, Kind.OPERATE, "Place orders and request locates"),
        _entry(Permission.ORDER_CANCEL, Kind.OPERATE, "Cancel open orders"),
        _entry(Permission.ORDER_MODIFY, Kind.OPERATE, "Replace open orders (price, quantity)"),
        _entry(Permission.ACCOUNT_WITHDRAW, Kind.OPERATE, "Withdraw money from an account"),
        _entry(
            Permission.CARD_MANAGE,
            Kind.OPERATE,
            "Add, list and remove one's own payment cards (stored as vault tokens)",
        ),
        _entry(
            Permission.ADMIN_USERS,
            Kind.ADMINISTER,
            "Manage user accounts: list, lock, change roles and access levels, reset factors",
        ),
        _entry(
            Permission.ADMIN_CONFIG,
            Kind.CONFIGURE,
            "Change trading configuration: instruments, restricted list, halts, accounts, "
            "limits, reconciliation",
        ),
        _entry(
            Permission.COMPLIANCE_AUDIT,
            Kind.VIEW,
            "Read the audit trail and risk and surveillance alerts",
        ),
        _entry(
            Permission.COMPLIANCE_REPORT, Kind.VIEW, "Produce regulatory and compliance reports"
        ),
        _entry(
            Permission.COMPLIANCE_SURVEILLANCE,
            Kind.VIEW,
            "Read market surveillance alerts with their evidence (orders, executions, book) "
            "and the beneficial-owner links with theirs",
        ),
        _entry(
            Permission.COMPLIANCE_CASES,
            Kind.OPERATE,
            "Open surveillance cases from alerts; assign, annotate, escalate and close them; "
            "record a report's filing; dismiss a derived owner link",
        ),
        _entry(
            Permission.COMPLIANCE_ACTIONS,
            Kind.OPERATE,
            "Set the automatic surveillance action policy and reverse automatic actions "
            "(suspensions, closing-only) with a reason",
        ),
        _entry(
            Permission.FUNDS_REVIEW,
            Kind.OPERATE,
            "Approve or refuse withdrawals held for review (large or flagged); two different "
            "staff members must approve one",
        ),
        _entry(
            Permission.FRAUD_TAKEOVER,
            Kind.VIEW,
            "Read account-takeover reviews, their signals and withdrawal freezes",
        ),
        _entry(
            Permission.FRAUD_REVIEW,
            Kind.OPERATE,
            "Assign and close account-takeover reviews",
        ),
        _entry(
            Permission.FRAUD_FREEZE,
            Kind.OPERATE,
            "Ask for, or approve another member's request, to lift a withdrawal freeze",
        ),
        _entry(
            Permission.FRAUD_RECOVER,
            Kind.OPERATE,
            "Recover a taken-over account: re-verify identity, propose or approve (another "
            "member's) credential reset, trade reversals and closing",
        ),
        _entry(
            Permission.KYC_APPLY,
            Kind.OPERATE,
            "Fill in and submit one's own account application and identity documents",
        ),
        _entry(
            Permission.KYC_REVIEW,
            Kind.OPERATE,
            "Review account applications and their documents: approve, refuse or ask for "
            "more; set and review customer risk ratings",
        ),
        _entry(
            Permission.SANCTIONS_LIST,
            Kind.CONFIGURE,
            "Load a new version of a sanctions list and re-screen the customer base",
        ),
        _entry(
            Permission.SANCTIONS_REVIEW,
            Kind.OPERATE,
            "Work sanctions screening hits: confirm a match or clear a false positive",
        ),
        _entry(
            Permission.AML_ALERTS,
            Kind.VIEW,
            "Read transaction-monitoring alerts with their evidence, and currency transaction "
            "reports",
        ),
        _entry(
            Permission.AML_CASES,
            Kind.OPERATE,
            "Open AML cases from alerts; assign, annotate and decide them",
        ),
        _entry(
            Permission.AML_FILE,
            Kind.OPERATE,
            "Approve and export SAR and CTR filings (FinCEN BSA XML)",
        ),
        _entry(
            Permission.CUSTOMER_READ,
            Kind.VIEW,
            "See a customer's profile with personal data masked",
        ),
        _entry(
            Permission.CUSTOMER_UNMASK,
            Kind.OPERATE,
            "Reveal one masked field of a customer's profile, with a reason (shown to the "
            "customer)",
        ),
        _entry(
            Permission.ACCESS_REQUEST,
            Kind.ELEVATE,
            "Ask for a time-limited grant of a permission or level; see and withdraw one's own",
        ),
        _entry(
            Permission.ACCESS_BREAKGLASS,
            Kind.ELEVATE,
            "Take emergency access without approval (short, alerted, reviewed afterwards)",
        ),
        _entry(
            Permission.ACCESS_APPROVE,
            Kind.ADMINISTER,
            "Approve, refuse or revoke other staff members' access grants",
        ),
        _entry(
            Permission.ACCESS_REVIEW,
            Kind.VIEW,
            "Read the access review, every grant and the break-glass review items",
        ),
        _entry(
            Permission.ACCESS_ATTEST,
            Kind.OPERATE,
            "Close another admin's break-glass review item with a note",
        ),
    )
}


def kind_of(permission: str) -> Kind | None:
    try:
        return CATALOGUE[Permission(permission)].kind
    except (ValueError, KeyError):
        return None


def _standing(role: Role, level: AccessLevel | None) -> frozenset[str]:
    if role not in STAFF_ROLES:
        return frozenset(p.value for p in ROLE_PERMISSIONS[role])
    kinds = LEVEL_KINDS[level or UNSET_STAFF_LEVEL]
    return frozenset(p.value for p in ROLE_PERMISSIONS[role] if CATALOGUE[p].kind in kinds)


# Every request asks this (and every grant evaluation): worked out once, looked up after.
_STANDING: dict[tuple[Role, AccessLevel | None], frozenset[str]] = {
    (role, level): _standing(role, level) for role in Role for level in (None, *LEVEL_ORDER)
}


def standing_permissions(role: Role, level: AccessLevel | None) -> frozenset[str]:
    """What a member of `role` at `level` holds without any grant (traders: their role)."""
    return _STANDING[role, level]


# Just-in-time grants (IAC-1) ---------------------------------------------------------------


class GrantStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"  # live until expires_ns
    REFUSED = "refused"
    WITHDRAWN = "withdrawn"
    REVOKED = "revoked"
    EXPIRED = "expired"


class GrantKind(StrEnum):
    REQUEST = "request"  # asked for, approved by another admin
    BREAKGLASS = "breakglass"  # taken in an emergency, reviewed afterwards


@dataclass(frozen=True, slots=True)
class GrantTarget:
    """What a grant is for: one permission or one level (exactly one is set)."""

    permission: Permission | None = None
    level: AccessLevel | None = None

    def __post_init__(self) -> None:
        if (self.permission is None) == (self.level is None):
            raise ValueError("a grant is for one permission or one level")

    @property
    def label(self) -> str:
        return self.permission.value if self.permission else f"level {self.level}"

    def permissions(self, role: Role) -> frozenset[str]:
        """What the target amounts to for `role` (always inside the role)."""
        return _target_permissions(self.permission, self.level, role)

    def cap_minutes(self) -> int:
        if self.permission is not None:
            return CATALOGUE[self.permission].max_grant_minutes
        return LEVEL_CAP_MINUTES[self.level] if self.level is not None else 0


@functools.lru_cache(maxsize=256)
def _target_permissions(
    permission: Permission | None, level: AccessLevel | None, role: Role
) -> frozenset[str]:
    if permission is not None:
        return (
            frozenset({permission.value}) if permission in ROLE_PERMISSIONS[role] else frozenset()
        )
    return standing_permissions(role, level)


@dataclass(frozen=True, slots=True)
class LiveGrant:
    """An approved (or break-glass) grant, as each request sees it."""

    grant_id: str
    target: GrantTarget
    expires_ns: int
    kind: GrantKind
    approved_by: str | None  # the approving admin's user id; None for break-glass
    # The customers (user ids) the grant was asked for; empty: not limited to customers.
    # Not enforced per request: a use naming another customer is an access alert (IAC-4).
    customers: frozenset[str] = frozenset()


def granted_permissions(
    role: Role, grants: Iterable[LiveGrant], now_ns: int
) -> dict[str, LiveGrant]:
    """Permissions that live grants add at `now_ns`, each with the grant that gives it.

    Expiry is decided here, against the clock of the request, so a grant ends on time even
    inside a cached session state or a still-valid access token.
    """
    added: dict[str, LiveGrant] = {}
    for grant in grants:
        if grant.expires_ns <= now_ns:
            continue
        for permission in grant.target.permissions(role):
            added.setdefault(permission, grant)
    return added


def grant_adds(role: Role, level: AccessLevel | None, target: GrantTarget) -> frozenset[str]:
    """What a grant of `target` would add to the standing permissions of role and level."""
    return target.permissions(role) - standing_permissions(role, level)


def effective_with_grants(
    standing: Iterable[str], role: Role, grants: Iterable[LiveGrant], now_ns: int
) -> tuple[frozenset[str], Mapping[str, str]]:
    """Standing permissions plus live grants; the second value names, for each permission held
    only through a grant, that grant's id (recorded with the permission check)."""
    held = frozenset(standing)
    via = {
        permission: grant.grant_id
        for permission, grant in granted_permissions(role, grants, now_ns).items()
        if permission not in held
    }
    return held | via.keys(), via


class AccessEvent(StrEnum):
    GRANT_REQUESTED = "access:grant:requested"
    GRANT_APPROVED = "access:grant:approved"
    GRANT_REFUSED = "access:grant:refused"
    GRANT_WITHDRAWN = "access:grant:withdrawn"
    GRANT_REVOKED = "access:grant:revoked"
    GRANT_EXPIRED = "access:grant:expired"
    # An approval the policy refused (self-approval, authority that is not independent):
    # committed on its own, since the approval itself changes nothing.
    APPROVAL_DENIED = "access:approval:denied"
    BREAKGLASS_TAKEN = "access:breakglass:taken"
    BREAKGLASS_REVIEWED = "access:breakglass:reviewed"
    LEVEL_CHANGED = "access:level:changed"
    REVIEW_PRODUCED = "access:review:produced"
