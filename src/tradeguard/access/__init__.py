"""Roles, permissions and policy decisions (RBAC)."""
