"""WebAuthn ceremonies end to end against a software authenticator (ES256 and Ed25519)."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.support.webauthn_authenticator import (
    COSE_EDDSA,
    COSE_ES256,
    SoftwareAuthenticator,
)
from tradeguard.identity.errors import (
    AuthenticatorNotAllowed,
    ClonedAuthenticator,
    WebAuthnAuthenticationRejected,
    WebAuthnRegistrationRejected,
)
from tradeguard.identity.mfa import webauthn as ceremonies
from tradeguard.identity.mfa.webauthn import RegisteredCredential

RP_ID = "tradeguard.test"
ORIGIN = "https://tradeguard.test"
USER_ID = b"\x01" * 16


def _register(
    authenticator: SoftwareAuthenticator,
    *,
    passkey: bool = True,
    require_user_verification: bool = True,
    allowed_aaguids: list[str] | None = None,
) -> RegisteredCredential:
    options = ceremonies.registration_options(
        rp_id=RP_ID, rp_name="Tradeguard", user_id=USER_ID, user_name="alice", passkey=passkey
    )
    return ceremonies.verify_registration(
        response=authenticator.create(options.options_json, ORIGIN),
        expected_challenge=options.challenge,
        expected_origin=ORIGIN,
        expected_rp_id=RP_ID,
        require_user_verification=require_user_verification,
        allowed_aaguids=allowed_aaguids,
    )


def _authenticate(
    authenticator: SoftwareAuthenticator,
    credential: RegisteredCredential,
    *,
    stored_sign_count: int | None = None,
    require_user_verification: bool = True,
    origin: str = ORIGIN,
    rp_id: str | None = None,
) -> int:
    options = ceremonies.authentication_options(
        rp_id=RP_ID,
        allow_credential_ids=[credential.credential_id],
        require_user_verification=require_user_verification,
    )
    verified = ceremonies.verify_authentication(
        response=authenticator.get(options.options_json, origin, rp_id=rp_id),
        expected_challenge=options.challenge,
        expected_origin=ORIGIN,
        expected_rp_id=RP_ID,
        credential_id=credential.credential_id,
        credential_public_key=credential.public_key,
        stored_sign_count=(
            credential.sign_count if stored_sign_count is None else stored_sign_count
        ),
        require_user_verification=require_user_verification,
    )
    return verified.new_sign_count


@pytest.fixture(params=[COSE_ES256, COSE_EDDSA], ids=["ES256", "Ed25519"])
def authenticator(request: pytest.FixtureRequest) -> SoftwareAuthenticator:
    return SoftwareAuthenticator(algorithm=request.param)


@pytest.mark.spec("AUTH-2", "AUTH-3")
class TestWebAuthnRegistration:
    def test_registration_returns_the_credential_to_store(
        self, authenticator: SoftwareAuthenticator
    ) -> None:
        credential = _register(authenticator)

        assert credential.credential_id == authenticator.credential_id
        assert credential.sign_count == 0
        assert credential.user_verified
        assert credential.aaguid == str(uuid.UUID(bytes=authenticator.aaguid))
        assert credential.transports == ("usb",)
        assert not credential.backup_eligible

    def test_passkey_options_require_a_discoverable_credential_and_user_verification(
        self,
    ) -> None:
        options = ceremonies.registration_options(
            rp_id=RP_ID,
            rp_name="Tradeguard",
            user_id=USER_ID,
            user_name="alice",
            exclude_credential_ids=[b"old-key"],
            passkey=True,
        )
        body = json.loads(options.options_json)

        assert body["authenticatorSelection"]["residentKey"] == "required"
        assert body["authenticatorSelection"]["requireResidentKey"] is True
        assert body["authenticatorSelection"]["userVerification"] == "required"
        assert body["attestation"] == "none"
        assert [p["alg"] for p in body["pubKeyCredParams"]] == [-7, -8]
        assert [c["id"] for c in body["excludeCredentials"]] == ["b2xkLWtleQ"]
        assert len(options.challenge) >= 16

    def test_security_key_options_do_not_demand_a_discoverable_credential(self) -> None:
        options = ceremonies.registration_options(
            rp_id=RP_ID, rp_name="Tradeguard", user_id=USER_ID, user_name="alice", passkey=False
        )
        selection = json.loads(options.options_json)["authenticatorSelection"]

        assert selection["residentKey"] == "discouraged"
        assert selection["userVerification"] == "preferred"

    def test_backup_flags_are_reported_for_synced_passkeys(self) -> None:
        synced = SoftwareAuthenticator(backup_eligible=True, backed_up=True)

        credential = _register(synced)

        assert credential.backup_eligible
        assert credential.backed_up

    def test_a_response_from_another_origin_is_refused(
        self, authenticator: SoftwareAuthenticator
    ) -> None:
        options = ceremonies.registration_options(
            rp_id=RP_ID, rp_name="Tradeguard", user_id=USER_ID, user_name="alice", passkey=True
        )

        with pytest.raises(WebAuthnRegistrationRejected) as caught:
            ceremonies.verify_registration(
                response=authenticator.create(options.options_json, "https://evil.test"),
                expected_challenge=options.challenge,
                expected_origin=[ORIGIN, "https://app.tradeguard.test"],
                expected_rp_id=RP_ID,
                require_user_verification=True,
            )
        assert "origin" in str(caught.value.__cause__)

    def test_a_credential_scoped_to_another_rp_id_is_refused(
        self, authenticator: SoftwareAuthenticator
    ) -> None:
        options = ceremonies.registration_options(
            rp_id=RP_ID, rp_name="Tradeguard", user_id=USER_ID, user_name="alice", passkey=True
        )

        with pytest.raises(WebAuthnRegistrationRejected) as caught:
            ceremonies.verify_registration(
                response=authenticator.create(options.options_json, ORIGIN, rp_id="evil.test"),
                expected_challenge=options.challenge,
                expected_origin=ORIGIN,
                expected_rp_id=RP_ID,
                require_user_verification=True,
            )
        assert "RP ID" in str(caught.value.__cause__)

    def test_a_response_to_another_challenge_is_refused(
        self, authenticator: SoftwareAuthenticator
    ) -> None:
        first = ceremonies.registration_options(
            rp_id=RP_ID, rp_name="Tradeguard", user_id=USER_ID, user_name="alice", passkey=True
        )
        second = ceremonies.registration_options(
            rp_id=RP_ID, rp_name="Tradeguard", user_id=USER_ID, user_name="alice", passkey=True
        )

        with pytest.raises(WebAuthnRegistrationRejected) as caught:
            ceremonies.verify_registration(
                response=authenticator.create(first.options_json, ORIGIN),
                expected_challenge=second.challenge,
                expected_origin=ORIGIN,
                expected_rp_id=RP_ID,
                require_user_verification=True,
            )
        assert "challenge" in str(caught.value.__cause__)

    def test_registration_without_user_verification_is_refused_when_required(self) -> None:
        no_uv = SoftwareAuthenticator(user_verified=False)

        with pytest.raises(WebAuthnRegistrationRejected) as caught:
            _register(no_uv, require_user_verification=True)
        assert "verif" in str(caught.value.__cause__)

    def test_a_security_key_without_user_verification_is_accepted_as_a_second_factor(
        self,
    ) -> None:
        credential = _register(
            SoftwareAuthenticator(user_verified=False),
            passkey=False,
            require_user_verification=False,
        )

        assert not credential.user_verified

    def test_an_authenticator_model_outside_the_aaguid_allow_list_is_refused(self) -> None:
        unknown = SoftwareAuthenticator(aaguid=uuid.uuid4().bytes)

        with pytest.raises(AuthenticatorNotAllowed):
            _register(unknown, allowed_aaguids=[str(uuid.uuid4())])

    def test_an_authenticator_model_on_the_aaguid_allow_list_is_accepted(self) -> None:
        model = uuid.uuid4()
        approved = SoftwareAuthenticator(aaguid=model.bytes)

        credential = _register(approved, allowed_aaguids=[str(model).upper()])

        assert credential.aaguid == str(model)

    @pytest.mark.parametrize("response", ["not json", "{}", '{"id": "x", "rawId": "y"}'])
    def test_a_malformed_response_is_refused(self, response: str) -> None:
        with pytest.raises(WebAuthnRegistrationRejected):
            ceremonies.verify_registration(
                response=response,
                expected_challenge=b"c" * 32,
                expected_origin=ORIGIN,
                expected_rp_id=RP_ID,
                require_user_verification=True,
            )


@pytest.mark.spec("AUTH-2", "AUTH-3")
class TestWebAuthnAuthentication:
    def test_a_registered_credential_authenticates_and_advances_the_counter(
        self, authenticator: SoftwareAuthenticator
    ) -> None:
        credential = _register(authenticator)

        first = _authenticate(authenticator, credential)
        second = _authenticate(authenticator, credential, stored_sign_count=first)

        assert (first, second) == (1, 2)

    def test_authentication_options_require_user_verification_for_passkeys(self) -> None:
        options = ceremonies.authentication_options(rp_id=RP_ID, require_user_verification=True)
        body = json.loads(options.options_json)

        assert body["userVerification"] == "required"
        assert body["rpId"] == RP_ID
        assert body["allowCredentials"] == []

    def test_a_response_given_as_a_mapping_is_accepted(
        self, authenticator: SoftwareAuthenticator
    ) -> None:
        credential = _register(authenticator)
        options = ceremonies.authentication_options(rp_id=RP_ID, require_user_verification=True)

        verified = ceremonies.verify_authentication(
            response=json.loads(authenticator.get(options.options_json, ORIGIN)),
            expected_challenge=options.challenge,
            expected_origin=ORIGIN,
            expected_rp_id=RP_ID,
            credential_id=credential.credential_id,
            credential_public_key=credential.public_key,
            stored_sign_count=0,
            require_user_verification=True,
        )

        assert verified.user_verified

    def test_the_assertion_names_its_credential_for_lookup(
        self, authenticator: SoftwareAuthenticator
    ) -> None:
        _register(authenticator)
        options = ceremonies.authentication_options(rp_id=RP_ID, require_user_verification=True)

        response = authenticator.get(options.options_json, ORIGIN)

        assert ceremonies.assertion_credential_id(response) == authenticator.credential_id
        with pytest.raises(WebAuthnAuthenticationRejected):
            ceremonies.assertion_credential_id("{}")

    def test_an_assertion_from_another_origin_is_refused(
        self, authenticator: SoftwareAuthenticator
    ) -> None:
        credential = _register(authenticator)

        with pytest.raises(WebAuthnAuthenticationRejected) as caught:
            _authenticate(authenticator, credential, origin="https://evil.test")
        assert "origin" in str(caught.value.__cause__)

    def test_an_assertion_for_another_rp_id_is_refused(
        self, authenticator: SoftwareAuthenticator
    ) -> None:
        credential = _register(authenticator)

        with pytest.raises(WebAuthnAuthenticationRejected) as caught:
            _authenticate(authenticator, credential, rp_id="evil.test")
        assert "RP ID" in str(caught.value.__cause__)

    def test_a_replayed_assertion_is_refused_for_a_new_challenge(
        self, authenticator: SoftwareAuthenticator
    ) -> None:
        credential = _register(authenticator)
        first = ceremonies.authentication_options(rp_id=RP_ID, require_user_verification=True)
        response = authenticator.get(first.options_json, ORIGIN)
        second = ceremonies.authentication_options(rp_id=RP_ID, require_user_verification=True)

        with pytest.raises(WebAuthnAuthenticationRejected) as caught:
            ceremonies.verify_authentication(
                response=response,
                expected_challenge=second.challenge,
                expected_origin=ORIGIN,
                expected_rp_id=RP_ID,
                credential_id=credential.credential_id,
                credential_public_key=credential.public_key,
                stored_sign_count=0,
                require_user_verification=True,
            )
        assert "challenge" in str(caught.value.__cause__)

    def test_a_cloned_authenticator_is_detected_by_counter_regression(
        self, authenticator: SoftwareAuthenticator
    ) -> None:
        credential = _register(authenticator)
        clone = authenticator.clone()
        stored = _authenticate(authenticator, credential)
        stored = _authenticate(authenticator, credential, stored_sign_count=stored)

        with pytest.raises(ClonedAuthenticator) as caught:
            _authenticate(clone, credential, stored_sign_count=stored)
        assert caught.value.slug == "cloned-authenticator"

    def test_an_equal_counter_is_a_regression(self, authenticator: SoftwareAuthenticator) -> None:
        credential = _register(authenticator)
        stored = _authenticate(authenticator, credential)
        authenticator.sign_count -= 1  # the next assertion repeats the stored count

        with pytest.raises(ClonedAuthenticator):
            _authenticate(authenticator, credential, stored_sign_count=stored)

    def test_a_counter_dropping_to_zero_is_a_regression(self) -> None:
        authenticator = SoftwareAuthenticator(counter_step=0)
        credential = _register(authenticator)

        with pytest.raises(ClonedAuthenticator):
            _authenticate(authenticator, credential, stored_sign_count=5)

    def test_authenticators_that_never_count_are_accepted_repeatedly(self) -> None:
        passkey = SoftwareAuthenticator(counter_step=0)
        credential = _register(passkey)

        counts = [_authenticate(passkey, credential, stored_sign_count=0) for _ in range(3)]

        assert counts == [0, 0, 0]

    def test_a_forged_low_counter_cannot_flag_a_credential_as_cloned(
        self, authenticator: SoftwareAuthenticator
    ) -> None:
        credential = _register(authenticator)
        impostor = SoftwareAuthenticator(
            algorithm=authenticator.algorithm, credential_id=authenticator.credential_id
        )

        # Wrong key and a counter below the stored one: the signature fails first, so this is
        # an ordinary rejection, not a clone alarm that would disable the real user's key.
        with pytest.raises(WebAuthnAuthenticationRejected) as caught:
            _authenticate(impostor, credential, stored_sign_count=10)
        assert "signature" in str(caught.value.__cause__)

    def test_an_assertion_without_user_verification_is_refused_when_required(self) -> None:
        authenticator = SoftwareAuthenticator()
        credential = _register(authenticator)
        authenticator.user_verified = False

        with pytest.raises(WebAuthnAuthenticationRejected) as caught:
            _authenticate(authenticator, credential)
        assert "verif" in str(caught.value.__cause__)

    def test_user_presence_alone_is_enough_when_verification_is_not_required(self) -> None:
        authenticator = SoftwareAuthenticator(user_verified=False)
        credential = _register(authenticator, passkey=False, require_user_verification=False)

        assert _authenticate(authenticator, credential, require_user_verification=False) == 1

    def test_an_assertion_for_a_different_credential_is_refused(
        self, authenticator: SoftwareAuthenticator
    ) -> None:
        credential = _register(authenticator)
        other = SoftwareAuthenticator(algorithm=authenticator.algorithm)
        options = ceremonies.authentication_options(rp_id=RP_ID, require_user_verification=True)

        with pytest.raises(WebAuthnAuthenticationRejected):
            ceremonies.verify_authentication(
                response=other.get(options.options_json, ORIGIN),
                expected_challenge=options.challenge,
                expected_origin=ORIGIN,
                expected_rp_id=RP_ID,
                credential_id=credential.credential_id,
                credential_public_key=credential.public_key,
                stored_sign_count=0,
                require_user_verification=True,
            )

    def test_an_assertion_checked_against_another_public_key_is_refused(
        self, authenticator: SoftwareAuthenticator
    ) -> None:
        credential = _register(authenticator)
        other_key = _register(SoftwareAuthenticator(algorithm=authenticator.algorithm)).public_key
        options = ceremonies.authentication_options(rp_id=RP_ID, require_user_verification=True)

        with pytest.raises(WebAuthnAuthenticationRejected):
            ceremonies.verify_authentication(
                response=authenticator.get(options.options_json, ORIGIN),
                expected_challenge=options.challenge,
                expected_origin=ORIGIN,
                expected_rp_id=RP_ID,
                credential_id=credential.credential_id,
                credential_public_key=other_key,
                stored_sign_count=0,
                require_user_verification=True,
            )
