"""Signing keys: thumbprint key ids, PEM round trips, rotation and the JWK Set."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tradeguard.identity.signing_keys import SigningKey, SigningKeyRing, jwk_thumbprint


def _pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.mark.spec("SESS-1")
class TestSigningKeys:
    def test_the_thumbprint_matches_rfc_8037_appendix_a3(self) -> None:
        jwk = {"crv": "Ed25519", "kty": "OKP", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}

        assert jwk_thumbprint(jwk) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"

    @pytest.mark.parametrize("algorithm", ["EdDSA", "ES256"])
    def test_a_key_survives_a_pem_round_trip_with_its_kid(self, algorithm: str) -> None:
        key = SigningKey.generate(algorithm)  # type: ignore[arg-type]

        loaded = SigningKey.from_pem(key.to_pem())

        assert loaded.kid == key.kid
        assert loaded.algorithm == algorithm
        assert loaded.public_jwk() == key.public_jwk()

    def test_a_password_protected_pem_needs_its_password(self) -> None:
        key = SigningKey.generate()
        pem = key.to_pem(password=b"correct horse")

        assert b"ENCRYPTED" in pem
        assert SigningKey.from_pem(pem, password=b"correct horse").kid == key.kid
        with pytest.raises(TypeError):
            SigningKey.from_pem(pem)

    def test_keys_of_other_types_are_refused(self) -> None:
        with pytest.raises(ValueError, match="Ed25519 or ECDSA P-256"):
            SigningKey.from_private_key(ec.generate_private_key(ec.SECP384R1()))
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        with pytest.raises(ValueError, match="Ed25519 or ECDSA P-256"):
            SigningKey.from_pem(_pem(rsa_key))
        with pytest.raises(ValueError, match="unsupported"):
            SigningKey.generate("HS256")  # type: ignore[arg-type]

    def test_the_private_key_is_not_in_the_repr(self) -> None:
        assert "private_key" not in repr(SigningKey.generate())

    def test_rotation_makes_a_new_active_key_and_keeps_the_old_for_verification(self) -> None:
        ring = SigningKeyRing.generate()
        old = ring.active

        new = ring.rotate()

        assert ring.active is new
        assert new.kid != old.kid
        assert ring.retired == (old,)
        assert ring.verification_key(old.kid) is old
        assert ring.verification_key(new.kid) is new

    def test_rotation_can_change_the_algorithm(self) -> None:
        ring = SigningKeyRing.generate("EdDSA")

        assert ring.rotate("ES256").algorithm == "ES256"

    def test_a_dropped_key_is_no_longer_trusted(self) -> None:
        ring = SigningKeyRing.generate()
        old = ring.active
        ring.rotate()

        ring.drop(old.kid)

        assert ring.verification_key(old.kid) is None
        with pytest.raises(ValueError, match="active key"):
            ring.drop(ring.active.kid)

    def test_the_jwks_lists_every_kept_public_key_and_no_private_material(self) -> None:
        ring = SigningKeyRing.generate("EdDSA")
        ring.rotate("ES256")
        ring.rotate("EdDSA")

        jwks = ring.jwks()

        assert [k["kid"] for k in jwks["keys"]] == [
            ring.active.kid,
            *(k.kid for k in ring.retired),
        ]
        assert {k["alg"] for k in jwks["keys"]} == {"EdDSA", "ES256"}
        for jwk in jwks["keys"]:
            assert set(jwk) <= {"kty", "crv", "x", "y", "kid", "alg", "use"}
            assert jwk["use"] == "sig"
            assert jwk_thumbprint(jwk) == jwk["kid"]
        assert '"d"' not in json.dumps(jwks)

    def test_a_ring_round_trips_through_pem_files(self) -> None:
        ring = SigningKeyRing.generate()
        ring.rotate()

        loaded = SigningKeyRing.from_pems(ring.active.to_pem(), [k.to_pem() for k in ring.retired])

        assert loaded.jwks() == ring.jwks()
