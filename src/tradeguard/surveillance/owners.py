"""Beneficial owners: which accounts one person (or one household) controls (pure).

For now an owner is a user with all of their accounts, joined with other users wherever
compliance linked two of their accounts (a link says: these two accounts have one
beneficial owner). Links are transitive, so the owners are the connected groups of users;
each group is named by its smallest user id, which stays the same whichever way the links
were added. Linking by shared devices, bank accounts or networks is for later (docs).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


class BeneficialOwners:
    def __init__(
        self, account_users: Mapping[str, str], links: Iterable[tuple[str, str]] = ()
    ) -> None:
        self._users = account_users
        self._parent: dict[str, str] = {}
        for account_a, account_b in links:
            self._union(self.user_of(account_a), self.user_of(account_b))

    def user_of(self, account_id: str) -> str:
        """The account's user; the account itself when its user is not known."""
        return self._users.get(account_id, account_id)

    def _find(self, node: str) -> str:
        parent = self._parent
        root = node
        while parent.get(root, root) != root:
            root = parent[root]
        while node != root:  # path compression
            parent[node], node = root, parent[node]
        return root

    def _union(self, a: str, b: str) -> None:
        root_a, root_b = self._find(a), self._find(b)
        if root_a == root_b:
            return
        # The smaller id names the group, so the name does not depend on the link order.
        low, high = sorted((root_a, root_b))
        self._parent[high] = low
        self._parent.setdefault(low, low)

    def owner(self, account_id: str) -> str:
        return self._find(self.user_of(account_id))
