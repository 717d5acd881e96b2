"""RBAC-1/RBAC-2 roles and permissions, shaped `scope:action` as the spec names them."""

from __future__ import annotations

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
    # Staff views of a customer (issue #8): the profile with personal data masked, and
    # revealing one masked field with a stated reason (audited, shown to the customer).
    CUSTOMER_READ = "customer:read"
    CUSTOMER_UNMASK = "customer:unmask"


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
        }
    ),
    Role.ADMIN: frozenset(
        {
            Permission.ADMIN_USERS,
            Permission.ADMIN_CONFIG,
            Permission.ACCOUNT_VIEW,
            Permission.CUSTOMER_READ,
        }
    ),
    Role.COMPLIANCE: frozenset(
        {
            Permission.COMPLIANCE_AUDIT,
            Permission.COMPLIANCE_REPORT,
            Permission.ACCOUNT_VIEW,
            Permission.CUSTOMER_READ,
            Permission.CUSTOMER_UNMASK,
        }
    ),
    Role.SUPPORT: frozenset(
        {Permission.ACCOUNT_VIEW, Permission.CUSTOMER_READ, Permission.CUSTOMER_UNMASK}
    ),
}

STAFF_ROLES = frozenset({Role.ADMIN, Role.COMPLIANCE, Role.SUPPORT})


def permissions_for(role: Role) -> list[str]:
    """The sorted permission strings a role carries (as put into the access token)."""
    return sorted(p.value for p in ROLE_PERMISSIONS[role])
