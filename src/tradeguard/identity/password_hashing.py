"""Argon2id password hashing (RFC 9106, NIST SP 800-63B-4 section 3.1.1.2 storage rules).

Default parameters: m = 47,104 KiB (46 MiB), t = 1, p = 1, the highest-memory row of the OWASP
Password Storage Cheat Sheet's equivalent Argon2id settings. Memory is what makes each guess
expensive on GPUs and ASICs, so of the equivalent rows this one buys the most. RFC 9106's
second recommendation (t = 3, 64 MiB) and t = 2 at 64 MiB measured 150 ms and 120 ms per
verify on the project's reference machine (2-core AMD EPYC VM), above the ~60 ms login
budget; m = 46 MiB, t = 1 measured 55-60 ms median (bench/auth.py), about 17 logins per
second per core, just above Keycloak's sizing figure of 15 per vCPU. Each concurrent hash
holds 46 MiB, so the service caps the number of hashes in flight. Stored hashes carry their
parameters; `needs_rehash` upgrades them at the next successful login when defaults change.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from dataclasses import dataclass

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from tradeguard.identity.passwords import normalize_password

# Inputs above this are refused before hashing. PasswordPolicy refuses them at enrolment; this
# cap stops a multi-megabyte "password" on the login form from costing more than a normal one.
MAX_PASSWORD_UTF8_BYTES = 1024


@dataclass(frozen=True, slots=True)
class Argon2Parameters:
    time_cost: int = 1
    memory_cost_kib: int = 47_104
    parallelism: int = 1
    hash_len: int = 32
    salt_len: int = 16


class PasswordHasher:
    """Hash and verify NFKC-normalized passwords with Argon2id."""

    def __init__(
        self, parameters: Argon2Parameters | None = None, *, max_concurrent: int | None = None
    ) -> None:
        self.parameters = parameters or Argon2Parameters()
        self._hasher = argon2.PasswordHasher(
            time_cost=self.parameters.time_cost,
            memory_cost=self.parameters.memory_cost_kib,
            parallelism=self.parameters.parallelism,
            hash_len=self.parameters.hash_len,
            salt_len=self.parameters.salt_len,
            type=argon2.Type.ID,
        )
        # A hash of a random password nobody knows, with the same parameters as real hashes:
        # verifying against it costs what a real verify costs, so a login for an unknown user
        # takes as long as one for a known user with a wrong password (no enumeration by time).
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(32))
        self._slots = asyncio.Semaphore(max_concurrent or max(2, os.cpu_count() or 2))

    def hash(self, password: str) -> str:
        """The PHC-format Argon2id hash of the normalized password."""
        encoded = normalize_password(password).encode("utf-8")
        if len(encoded) > MAX_PASSWORD_UTF8_BYTES:
            raise ValueError("password exceeds the maximum length")
        return self._hasher.hash(encoded)

    def verify(self, stored_hash: str, password: str) -> bool:
        """True on a match; False on a mismatch or a malformed stored hash. Never raises."""
        encoded = normalize_password(password).encode("utf-8")
        if len(encoded) > MAX_PASSWORD_UTF8_BYTES:
            # Spend the normal time anyway, so the length cap is not a timing oracle.
            self.verify_dummy()
            return False
        try:
            return self._hasher.verify(stored_hash, encoded)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def verify_dummy(self) -> bool:
        """Spend one verify's worth of time for a user that does not exist; always False."""
        with contextlib.suppress(VerifyMismatchError):
            self._hasher.verify(self._dummy_hash, b"not-the-password")
        return False

    # Async forms for request handlers: a hash takes ~55 ms of CPU, which on the event loop
    # would stall every other request in the process. argon2-cffi releases the GIL, so worker
    # threads run hashes in parallel; the semaphore caps how many run at once (each holds
    # 46 MiB), so a burst of logins queues instead of exhausting memory.

    async def hash_async(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self.hash, password)

    async def verify_async(self, stored_hash: str, password: str) -> bool:
        async with self._slots:
            return await asyncio.to_thread(self.verify, stored_hash, password)

    async def verify_dummy_async(self) -> bool:
        async with self._slots:
            return await asyncio.to_thread(self.verify_dummy)

    def needs_rehash(self, stored_hash: str) -> bool:
        """True if the stored hash was made with other parameters (or is not Argon2id)."""
        try:
            return self._hasher.check_needs_rehash(stored_hash)
        except (InvalidHashError, ValueError):
            return True
