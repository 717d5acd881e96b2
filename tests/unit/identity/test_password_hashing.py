"""Argon2id hashing: round trip, never raising on mismatch, rehash, dummy verify."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tradeguard.identity import password_hashing
from tradeguard.identity.password_hashing import Argon2Parameters, PasswordHasher

# Small parameters keep the suite fast; the production defaults are benchmarked in bench/auth.py.
FAST = Argon2Parameters(time_cost=1, memory_cost_kib=1024, parallelism=1)
PASSWORD = "violet tractor juggles quietly"


@pytest.fixture
def hasher() -> PasswordHasher:
    return PasswordHasher(FAST)


@pytest.mark.spec("AUTH-1")
class TestPasswordHasher:
    def test_a_hash_verifies_its_password_and_nothing_else(self, hasher: PasswordHasher) -> None:
        stored = hasher.hash(PASSWORD)

        assert stored.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
        assert PASSWORD not in stored
        assert hasher.verify(stored, PASSWORD)
        assert not hasher.verify(stored, PASSWORD + "!")

    def test_each_hash_has_its_own_salt(self, hasher: PasswordHasher) -> None:
        assert hasher.hash(PASSWORD) != hasher.hash(PASSWORD)

    def test_nfkc_equivalent_forms_verify_against_one_hash(self, hasher: PasswordHasher) -> None:
        stored = hasher.hash("ｖｉｏｌｅｔ tractor juggles quietly")

        assert hasher.verify(stored, PASSWORD)

    @pytest.mark.parametrize("stored", ["", "not a hash", "$argon2id$v=19$m=1024,t=1,p=1$bad$bad"])
    def test_a_malformed_stored_hash_verifies_false_without_raising(
        self, hasher: PasswordHasher, stored: str
    ) -> None:
        assert hasher.verify(stored, PASSWORD) is False

    def test_an_over_long_password_is_refused_before_hashing(self, hasher: PasswordHasher) -> None:
        with pytest.raises(ValueError, match="maximum length"):
            hasher.hash("x" * (password_hashing.MAX_PASSWORD_UTF8_BYTES + 1))

    def test_an_over_long_login_attempt_verifies_false(self, hasher: PasswordHasher) -> None:
        stored = hasher.hash(PASSWORD)

        assert hasher.verify(stored, "x" * 1_000_000) is False

    def test_a_hash_with_current_parameters_needs_no_rehash(self, hasher: PasswordHasher) -> None:
        assert not hasher.needs_rehash(hasher.hash(PASSWORD))

    def test_a_hash_with_old_parameters_or_another_scheme_needs_rehash(
        self, hasher: PasswordHasher
    ) -> None:
        old = PasswordHasher(Argon2Parameters(time_cost=1, memory_cost_kib=512)).hash(PASSWORD)

        assert hasher.needs_rehash(old)
        assert hasher.needs_rehash("$2b$12$abcdefghijklmnopqrstuv")
        assert hasher.needs_rehash("")

    def test_the_dummy_verify_for_unknown_users_is_always_false(
        self, hasher: PasswordHasher
    ) -> None:
        assert hasher.verify_dummy() is False

    def test_the_default_parameters_meet_the_owasp_argon2id_floor(self) -> None:
        defaults = Argon2Parameters()

        # OWASP's equivalent rows trade memory for passes; each row is m * t >= 46 MiB-passes.
        assert defaults.memory_cost_kib * defaults.time_cost >= 47_104
        assert defaults.memory_cost_kib >= 19_456
        assert defaults.salt_len >= 16


class TestAsyncHashing:
    @pytest.mark.spec("AUTH-1")
    async def test_hashing_runs_off_the_event_loop_and_is_capped(self) -> None:
        hasher = PasswordHasher(
            Argon2Parameters(time_cost=1, memory_cost_kib=1024), max_concurrent=2
        )
        loop_thread = threading.get_ident()
        seen: list[int] = []
        original = hasher.hash

        def spy(password: str) -> str:
            seen.append(threading.get_ident())
            return original(password)

        hasher.hash = spy  # type: ignore[method-assign]
        hashes = await asyncio.gather(
            *(hasher.hash_async("quiet meadow lantern 7931") for _ in range(4))
        )
        assert all(
            await asyncio.gather(
                *(hasher.verify_async(h, "quiet meadow lantern 7931") for h in hashes)
            )
        )
        assert await hasher.verify_dummy_async() is False
        assert loop_thread not in seen
