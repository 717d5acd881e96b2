"""Beneficial owners: which accounts one person (or one household) controls (pure).

An owner is a user with all of their accounts, joined with other users wherever a live link
says two parties have one beneficial owner: a link between two accounts (compliance's
`manual` links, `bank_account` links from the funds package) joins the accounts' users; a
link between two users (`device` and `network` links derived from sign-ins,
surveillance/linkage.py) joins the users themselves. Links are transitive, so the owners are
the connected groups of users; each group is named by its smallest user id, which stays the
same whichever way the links were added. Dismissed links join nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# An alert names at most this many of the links that made its owner one group.
MAX_EVIDENCE_LINKS = 20


@dataclass(frozen=True, slots=True)
class OwnerLink:
    """A live link as the detectors see it: between two accounts or between two users."""

    id: str
    kind: str
    account_a: str | None = None
    account_b: str | None = None
    user_a: str | None = None
    user_b: str | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """What an alert's evidence says of the link (ids, kind, what was shared)."""
        between = (
            {"user_a": self.user_a, "user_b": self.user_b}
            if self.user_a is not None
            else {"account_a": self.account_a, "account_b": self.account_b}
        )
        return {"link_id": self.id, "kind": self.kind, **between, "evidence": dict(self.evidence)}


class BeneficialOwners:
    def __init__(
        self,
        account_users: Mapping[str, str],
        links: Iterable[tuple[str, str]] = (),
        *,
        owner_links: Iterable[OwnerLink] = (),
    ) -> None:
        self._users = account_users
        self._parent: dict[str, str] = {}
        self._links: list[tuple[str, OwnerLink]] = []
        for account_a, account_b in links:
            self._union(self.user_of(account_a), self.user_of(account_b))
        for link in owner_links:
            if link.user_a is not None and link.user_b is not None:
                a, b = link.user_a, link.user_b
            elif link.account_a is not None and link.account_b is not None:
                a, b = self.user_of(link.account_a), self.user_of(link.account_b)
            else:
                continue
            self._union(a, b)
            self._links.append((a, link))

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

    def links_of(self, owner: str) -> list[OwnerLink]:
        """The links (of those given as `owner_links`) that joined this owner's group, at
        most `MAX_EVIDENCE_LINKS`: the evidence an alert about the group names."""
        found = [link for party, link in self._links if self._find(party) == owner]
        return found[:MAX_EVIDENCE_LINKS]
