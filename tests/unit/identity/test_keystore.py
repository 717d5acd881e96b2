"""Signing keys on disk and the watcher that lets a running server pick up a rotation."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tradeguard.core.clock import FrozenClock
from tradeguard.identity.errors import InvalidToken
from tradeguard.identity.keystore import (
    SigningKeyWatcher,
    load_or_create_ring,
    rotate_ring,
    watch_signing_keys,
)
from tradeguard.identity.tokens import AccessTokenIssuer, AccessTokenVerifier

ISSUER = "https://localhost:8443"
AUDIENCE = "tradeguard-api"


def issue(issuer: AccessTokenIssuer) -> str:
    return issuer.issue(
        subject="u1", session_id="s1", role="TRADER", permissions=["account:view"], amr=["pwd"]
    ).token


class TestSigningKeyWatcher:
    def test_a_rotation_on_disk_is_adopted_by_the_live_issuer_and_verifier(
        self, tmp_path: Path
    ) -> None:
        directory = tmp_path / "jwt"
        ring = load_or_create_ring(directory)
        clock = FrozenClock()
        issuer = AccessTokenIssuer(keys=ring, clock=clock, issuer=ISSUER, audience=AUDIENCE)
        verifier = AccessTokenVerifier(keys=ring, clock=clock, issuer=ISSUER, audience=AUDIENCE)
        watcher = SigningKeyWatcher(directory, ring)
        first = watcher.changed_ring()
        assert first is not None
        assert not watcher.adopt(first)  # the first look re-reads the same keys
        old_token, old_kid = issue(issuer), ring.active.kid

        rotated = rotate_ring(directory)  # what `tradeguard keys rotate-jwt` does
        assert watcher.adopt(watcher.changed_ring() or ring)

        new_token = issue(issuer)
        assert verifier.verify(new_token).key_id == rotated.active.kid != old_kid
        assert verifier.verify(old_token).key_id == old_kid
        assert [key["kid"] for key in ring.jwks()["keys"]] == [rotated.active.kid, old_kid]

    def test_nothing_is_re_read_while_the_files_are_unchanged(self, tmp_path: Path) -> None:
        directory = tmp_path / "jwt"
        watcher = SigningKeyWatcher(directory, load_or_create_ring(directory))
        assert watcher.changed_ring() is not None
        assert watcher.changed_ring() is None

    def test_an_unreadable_key_file_keeps_the_loaded_keys_and_is_retried(
        self, tmp_path: Path
    ) -> None:
        directory = tmp_path / "jwt"
        ring = load_or_create_ring(directory)
        watcher = SigningKeyWatcher(directory, ring)
        watcher.changed_ring()
        good = (directory / "active.pem").read_bytes()
        (directory / "active.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\ngarbage\n")
        with pytest.raises(ValueError, match=r".+"):
            watcher.changed_ring()
        (directory / "active.pem").write_bytes(good)
        # The failed look recorded nothing, so the repaired files are read again.
        assert watcher.changed_ring() is not None

    async def test_the_watch_loop_adopts_a_rotation_and_stops_when_asked(
        self, tmp_path: Path
    ) -> None:
        directory = tmp_path / "jwt"
        ring = load_or_create_ring(directory)
        stop = asyncio.Event()
        task = asyncio.create_task(
            watch_signing_keys(SigningKeyWatcher(directory, ring), interval_seconds=0.01, stop=stop)
        )
        new_kid = rotate_ring(directory).active.kid
        async with asyncio.timeout(10):
            # The loop under test signals nothing; polling its effect is the observation.
            while ring.active.kid != new_kid:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        stop.set()
        async with asyncio.timeout(10):
            await task
        assert ring.verification_key(new_kid) is not None

    def test_a_token_signed_by_a_dropped_key_is_refused(self, tmp_path: Path) -> None:
        directory = tmp_path / "jwt"
        ring = load_or_create_ring(directory)
        clock = FrozenClock()
        token = issue(AccessTokenIssuer(keys=ring, clock=clock, issuer=ISSUER, audience=AUDIENCE))
        verifier = AccessTokenVerifier(keys=ring, clock=clock, issuer=ISSUER, audience=AUDIENCE)
        old_kid = ring.active.kid
        rotate_ring(directory)
        (directory / f"retired-{old_kid}.pem").unlink()  # an operator retires it for good
        watcher = SigningKeyWatcher(directory, ring)
        watcher.adopt(watcher.changed_ring() or ring)
        with pytest.raises(InvalidToken):
            verifier.verify(token)
