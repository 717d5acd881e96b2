"""Access tokens: the happy path and every known JWT attack refused; refresh tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from tradeguard.core.clock import NS_PER_SECOND, FrozenClock
from tradeguard.identity.errors import InvalidToken
from tradeguard.identity.signing_keys import SigningKey, SigningKeyRing
from tradeguard.identity.tokens import (
    REFRESH_TOKEN_PREFIX,
    AccessTokenIssuer,
    AccessTokenVerifier,
    TokenRefusal,
    hash_refresh_token,
    new_refresh_token,
)

ISSUER = "https://tradeguard.test"
AUDIENCE = "tradeguard-api"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _segment(obj: dict[str, Any]) -> str:
    return _b64(json.dumps(obj, separators=(",", ":")).encode())


class TokenLab:
    """A ring, an issuer and a verifier on one frozen clock, plus a forger for attacks."""

    def __init__(self, clock: FrozenClock, algorithm: str = "EdDSA") -> None:
        self.clock = clock
        self.ring = SigningKeyRing.generate(algorithm)  # type: ignore[arg-type]
        self.issuer = AccessTokenIssuer(
            keys=self.ring, clock=clock, issuer=ISSUER, audience=AUDIENCE
        )
        self.verifier = AccessTokenVerifier(
            keys=self.ring, clock=clock, issuer=ISSUER, audience=AUDIENCE
        )

    def issue(self) -> str:
        return self.issuer.issue(
            subject="user-1",
            session_id="session-1",
            role="TRADER",
            permissions=["order:place", "account:view"],
            amr=["pwd", "otp"],
        ).token

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = self.clock.now_ns() // NS_PER_SECOND
        payload: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "user-1",
            "iat": now,
            "nbf": now,
            "exp": now + 900,
            "jti": "jti-1",
            "sid": "session-1",
            "role": "TRADER",
            "permissions": ["order:place"],
            "amr": ["pwd"],
        }
        payload.update(overrides)
        return {k: v for k, v in payload.items() if v is not None}

    def sign(
        self,
        payload: dict[str, Any] | None = None,
        *,
        key: SigningKey | None = None,
        headers: dict[str, Any] | None = None,
    ) -> str:
        key = key or self.ring.active
        header: dict[str, Any] = {"kid": key.kid, "typ": "at+jwt"}
        header.update(headers or {})
        return jwt.encode(
            payload if payload is not None else self.claims(),
            key.private_key,
            algorithm=key.algorithm,
            headers={k: v for k, v in header.items() if v is not None},
        )

    def sign_raw(self, header: dict[str, Any], payload: dict[str, Any]) -> str:
        """Sign any header, even ones PyJWT refuses to produce, with the active key."""
        key = self.ring.active
        signing_input = f"{_segment(header)}.{_segment(payload)}"
        algorithm = jwt.get_algorithm_by_name(key.algorithm)
        signature = algorithm.sign(signing_input.encode(), key.private_key)
        return f"{signing_input}.{_b64(signature)}"

    def refused(self, token: str) -> InvalidToken:
        with pytest.raises(InvalidToken) as caught:
            self.verifier.verify(token)
        return caught.value


@pytest.fixture(params=["EdDSA", "ES256"])
def lab(clock: FrozenClock, request: pytest.FixtureRequest) -> TokenLab:
    return TokenLab(clock, request.param)


@pytest.mark.spec("SESS-1", "RBAC-3")
class TestAccessTokens:
    def test_an_issued_token_verifies_with_role_permissions_and_session(
        self, lab: TokenLab
    ) -> None:
        claims = lab.verifier.verify(lab.issue())

        assert claims.subject == "user-1"
        assert claims.session_id == "session-1"
        assert claims.role == "TRADER"
        assert claims.permissions == ("order:place", "account:view")
        assert claims.amr == ("pwd", "otp")
        assert claims.expires_at - claims.issued_at == 15 * 60
        assert claims.key_id == lab.ring.active.kid

    def test_the_header_names_the_key_and_the_access_token_type(self, lab: TokenLab) -> None:
        header = jwt.get_unverified_header(lab.issue())

        assert header == {
            "alg": lab.ring.active.algorithm,
            "kid": lab.ring.active.kid,
            "typ": "at+jwt",
        }

    def test_a_token_expires_after_fifteen_minutes(self, lab: TokenLab) -> None:
        token = lab.issue()
        lab.clock.advance(seconds=15 * 60 - 1)
        lab.verifier.verify(token)

        lab.clock.advance(seconds=1)

        lab.refused(token)

    def test_leeway_extends_expiry_by_at_most_its_seconds(self, lab: TokenLab) -> None:
        verifier = AccessTokenVerifier(
            keys=lab.ring, clock=lab.clock, issuer=ISSUER, audience=AUDIENCE, leeway_seconds=30
        )
        token = lab.issue()
        lab.clock.advance(seconds=15 * 60 + 29)
        verifier.verify(token)

        lab.clock.advance(seconds=1)

        with pytest.raises(InvalidToken):
            verifier.verify(token)

    @pytest.mark.parametrize("leeway", [-1, 31])
    def test_leeway_outside_zero_to_thirty_seconds_is_refused(
        self, lab: TokenLab, leeway: int
    ) -> None:
        with pytest.raises(ValueError, match="leeway"):
            AccessTokenVerifier(
                keys=lab.ring,
                clock=lab.clock,
                issuer=ISSUER,
                audience=AUDIENCE,
                leeway_seconds=leeway,
            )

    def test_the_injected_clock_not_the_system_clock_decides_validity(self) -> None:
        far_future = FrozenClock(4_102_444_800 * NS_PER_SECOND)  # 2100-01-01
        lab = TokenLab(far_future)
        token = lab.issue()

        assert lab.verifier.verify(token).issued_at == 4_102_444_800
        far_future.advance(seconds=900)
        lab.refused(token)

    def test_alg_none_is_refused(self, lab: TokenLab) -> None:
        header = {"alg": "none", "typ": "at+jwt", "kid": lab.ring.active.kid}
        unsigned = f"{_segment(header)}.{_segment(lab.claims(role='ADMIN'))}."

        lab.refused(unsigned)

    @pytest.mark.parametrize("encoding", ["pem", "raw"])
    def test_hs256_signed_with_the_public_key_as_hmac_secret_is_refused(
        self, lab: TokenLab, encoding: str
    ) -> None:
        public = lab.ring.active.public_key
        secret = (
            public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            if encoding == "pem"
            else public.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        header = {"alg": "HS256", "typ": "at+jwt", "kid": lab.ring.active.kid}
        signing_input = f"{_segment(header)}.{_segment(lab.claims(role='ADMIN'))}"
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()

        lab.refused(f"{signing_input}.{_b64(mac)}")

    def test_a_token_whose_alg_does_not_match_its_key_is_refused(self, lab: TokenLab) -> None:
        other = "ES256" if lab.ring.active.algorithm == "EdDSA" else "EdDSA"
        foreign = SigningKey.generate(other)  # type: ignore[arg-type]
        token = lab.sign(key=foreign, headers={"kid": lab.ring.active.kid})

        lab.refused(token)

    def test_a_token_not_yet_valid_is_refused(self, lab: TokenLab) -> None:
        now = lab.clock.now_ns() // NS_PER_SECOND

        lab.refused(lab.sign(lab.claims(nbf=now + 60)))

    def test_a_token_issued_in_the_future_is_refused(self, lab: TokenLab) -> None:
        now = lab.clock.now_ns() // NS_PER_SECOND

        lab.refused(lab.sign(lab.claims(iat=now + 60, exp=now + 900)))

    def test_a_token_living_longer_than_policy_is_refused(self, lab: TokenLab) -> None:
        now = lab.clock.now_ns() // NS_PER_SECOND

        lab.refused(lab.sign(lab.claims(exp=now + 3600)))

    @pytest.mark.parametrize(
        "override",
        [
            {"aud": "another-api"},
            {"aud": [AUDIENCE, "another-api"]},
            {"iss": "https://evil.test"},
        ],
    )
    def test_a_token_for_another_audience_or_from_another_issuer_is_refused(
        self, lab: TokenLab, override: dict[str, Any]
    ) -> None:
        lab.refused(lab.sign(lab.claims(**override)))

    @pytest.mark.parametrize("typ", ["JWT", "jwt", "at+JWS", None])
    def test_a_token_of_the_wrong_type_is_refused(self, lab: TokenLab, typ: str | None) -> None:
        lab.refused(lab.sign(headers={"typ": typ}))

    def test_the_media_type_form_of_the_type_is_accepted(self, lab: TokenLab) -> None:
        assert lab.verifier.verify(lab.sign(headers={"typ": "application/at+jwt"}))

    @pytest.mark.parametrize("kid", [None, "unknown-kid", 42, ["kid"]])
    def test_a_token_without_a_known_kid_is_refused(self, lab: TokenLab, kid: object) -> None:
        header = {"alg": lab.ring.active.algorithm, "typ": "at+jwt", "kid": kid}

        lab.refused(lab.sign_raw({k: v for k, v in header.items() if v is not None}, lab.claims()))

    def test_the_raw_signer_used_by_these_tests_makes_valid_tokens(self, lab: TokenLab) -> None:
        header = {"alg": lab.ring.active.algorithm, "typ": "at+jwt", "kid": lab.ring.active.kid}

        assert lab.verifier.verify(lab.sign_raw(header, lab.claims()))

    def test_a_tampered_payload_is_refused(self, lab: TokenLab) -> None:
        header, _, signature = lab.issue().split(".")
        forged = f"{header}.{_segment(lab.claims(role='ADMIN', permissions=['admin:users']))}.{signature}"

        lab.refused(forged)

    def test_a_token_signed_by_a_key_outside_the_ring_is_refused(self, lab: TokenLab) -> None:
        outsider = SigningKey.generate(lab.ring.active.algorithm)

        lab.refused(lab.sign(key=outsider))
        lab.refused(lab.sign(key=outsider, headers={"kid": lab.ring.active.kid}))

    def test_a_rotated_out_but_kept_key_still_verifies_until_dropped(self, lab: TokenLab) -> None:
        token = lab.issue()
        old_kid = lab.ring.active.kid
        lab.ring.rotate()

        assert lab.verifier.verify(token).key_id == old_kid
        assert lab.verifier.verify(lab.issue()).key_id == lab.ring.active.kid

        lab.ring.drop(old_kid)
        lab.refused(token)

    @pytest.mark.parametrize(
        "override",
        [
            {"sid": None},
            {"role": None},
            {"jti": None},
            {"sub": None},
            {"exp": None},
            {"permissions": "order:place"},
            {"amr": [1, 2]},
            {"exp": "tomorrow"},
            {"exp": True},
            {"role": ""},
        ],
    )
    def test_a_token_missing_or_mistyping_a_claim_is_refused(
        self, lab: TokenLab, override: dict[str, Any]
    ) -> None:
        lab.refused(lab.sign(lab.claims(**override)))

    @pytest.mark.parametrize(
        "token",
        ["", "garbage", "a.b", "a.b.c.d", "!!!.e30.x", "W10.e30.x", "x" * 10_000],
    )
    def test_malformed_tokens_are_refused(self, lab: TokenLab, token: str) -> None:
        lab.refused(token)

    def test_the_error_never_contains_the_token(self, lab: TokenLab) -> None:
        token = lab.issue()
        lab.clock.advance(seconds=3600)

        error = lab.refused(token)

        assert error.status == 401
        assert error.slug == "invalid-token"
        assert token not in str(error.to_problem())
        assert token not in str(error)

    @pytest.mark.parametrize("algorithms", [["HS256"], ["none"], ["EdDSA", "RS256"], []])
    def test_only_supported_asymmetric_algorithms_can_be_configured(
        self, lab: TokenLab, algorithms: list[str]
    ) -> None:
        with pytest.raises(ValueError, match="algorithms"):
            AccessTokenVerifier(
                keys=lab.ring,
                clock=lab.clock,
                issuer=ISSUER,
                audience=AUDIENCE,
                algorithms=algorithms,
            )

    def test_an_algorithm_outside_the_configured_list_is_refused(self, clock: FrozenClock) -> None:
        lab = TokenLab(clock, "ES256")
        eddsa_only = AccessTokenVerifier(
            keys=lab.ring, clock=clock, issuer=ISSUER, audience=AUDIENCE, algorithms=["EdDSA"]
        )

        with pytest.raises(InvalidToken):
            eddsa_only.verify(lab.issue())

    @pytest.mark.parametrize("ttl", [0, 901])
    def test_the_issuer_refuses_a_lifetime_beyond_fifteen_minutes(
        self, lab: TokenLab, ttl: int
    ) -> None:
        with pytest.raises(ValueError, match="15 minutes"):
            AccessTokenIssuer(
                keys=lab.ring, clock=lab.clock, issuer=ISSUER, audience=AUDIENCE, ttl_seconds=ttl
            )

    def test_the_issued_token_is_not_in_the_repr(self, lab: TokenLab) -> None:
        issued = lab.issuer.issue(
            subject="user-1", session_id="s", role="TRADER", permissions=[], amr=["pwd"]
        )

        assert issued.token not in repr(issued)


@pytest.mark.spec("SESS-2")
class TestRefreshTokens:
    def test_a_refresh_token_carries_256_random_bits(self) -> None:
        token, _ = new_refresh_token()

        body = token.removeprefix(REFRESH_TOKEN_PREFIX)
        assert token.startswith(REFRESH_TOKEN_PREFIX)
        assert len(base64.urlsafe_b64decode(body + "=")) == 32

    def test_refresh_tokens_are_unique(self) -> None:
        assert len({new_refresh_token()[0] for _ in range(100)}) == 100

    def test_the_stored_hash_is_sha256_of_the_token(self) -> None:
        token, digest = new_refresh_token()

        assert digest == hashlib.sha256(token.encode()).digest()
        assert hash_refresh_token(token) == digest
        assert token.encode() not in digest


class TestVerifiedTokenCache:
    """A token verified once costs a lookup next time, never a weaker check."""

    def test_a_repeated_token_skips_the_signature_but_not_expiry(self) -> None:
        lab = TokenLab(FrozenClock())
        token = lab.issue()
        first = lab.verifier.verify(token)
        calls: list[int] = []
        original = lab.verifier._verify

        def counting(value: str) -> Any:
            calls.append(1)
            return original(value)

        lab.verifier._verify = counting  # type: ignore[method-assign]
        assert lab.verifier.verify(token) == first
        assert calls == []
        lab.clock.advance(seconds=15 * 60)
        with pytest.raises(InvalidToken):
            lab.verifier.verify(token)

    def test_a_tampered_copy_of_a_cached_token_is_still_refused(self) -> None:
        lab = TokenLab(FrozenClock())
        token = lab.issue()
        lab.verifier.verify(token)
        header, payload, signature = token.split(".")
        forged = ".".join(
            [header, payload, signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")]
        )
        with pytest.raises(InvalidToken):
            lab.verifier.verify(forged)

    def test_forgetting_a_session_forces_a_full_check_again(self) -> None:
        lab = TokenLab(FrozenClock())
        token = lab.issue()
        lab.verifier.verify(token)
        lab.verifier.forget_sessions(["session-1"])
        calls: list[int] = []
        original = lab.verifier._verify

        def counting(value: str) -> Any:
            calls.append(1)
            return original(value)

        lab.verifier._verify = counting  # type: ignore[method-assign]
        lab.verifier.verify(token)
        assert calls == [1]

    def test_a_token_whose_key_left_the_ring_stops_verifying_from_the_cache(self) -> None:
        lab = TokenLab(FrozenClock())
        token = lab.issue()
        kid = lab.verifier.verify(token).key_id
        lab.ring.rotate()
        lab.ring.drop(kid)
        with pytest.raises(InvalidToken):
            lab.verifier.verify(token)


class TestRefusalReasons:
    """Each refusal is reported with its reason for the security metrics (web/metrics.py),
    while the client always gets the same InvalidToken."""

    @staticmethod
    def watched(lab: TokenLab) -> list[TokenRefusal]:
        seen: list[TokenRefusal] = []
        lab.verifier.on_refused = seen.append
        return seen

    def test_a_forged_signature_is_reported_as_a_signature_refusal(self, lab: TokenLab) -> None:
        seen = self.watched(lab)
        header, payload, signature = lab.issue().split(".")
        raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
        raw[10] ^= 0x01
        assert lab.refused(f"{header}.{payload}.{_b64(bytes(raw))}").to_problem()["status"] == 401
        assert seen == [TokenRefusal.SIGNATURE]

    def test_a_token_from_a_key_not_in_the_ring_is_an_unknown_key(self, lab: TokenLab) -> None:
        seen = self.watched(lab)
        stranger = SigningKeyRing.generate(lab.ring.active.algorithm)  # type: ignore[arg-type]
        lab.refused(lab.sign(key=stranger.active))
        assert seen == [TokenRefusal.UNKNOWN_KEY]

    def test_an_expired_token_is_reported_as_expired_even_after_it_was_cached(
        self, lab: TokenLab
    ) -> None:
        seen = self.watched(lab)
        token = lab.issue()
        lab.verifier.verify(token)
        lab.clock.advance(seconds=15 * 60)
        lab.refused(token)
        assert seen == [TokenRefusal.EXPIRED]

    @pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b.c", "x" * 9000])
    def test_garbage_is_reported_as_malformed(self, lab: TokenLab, token: str) -> None:
        seen = self.watched(lab)
        lab.refused(token)
        assert seen == [TokenRefusal.MALFORMED]

    def test_a_valid_token_reports_nothing(self, lab: TokenLab) -> None:
        seen = self.watched(lab)
        lab.verifier.verify(lab.issue())
        assert seen == []
