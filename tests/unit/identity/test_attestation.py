"""Staff authenticator attestation against a FIDO MDS3-style catalogue (IAC-3)."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from cryptography import x509
from webauthn.helpers.structs import AttestationConveyancePreference

from tests.support.webauthn_authenticator import (
    COSE_EDDSA,
    TEST_AAGUID,
    AttestationCA,
    SoftwareAuthenticator,
    default_metadata_document,
    metadata_document,
    metadata_entry,
    shared_attestation_ca,
)
from tradeguard.identity.authenticator_metadata import default_metadata_file, read_catalogue
from tradeguard.identity.errors import AttestationNotTrusted, WebAuthnRegistrationRejected
from tradeguard.identity.mfa import webauthn as ceremonies
from tradeguard.identity.mfa.attestation import (
    AttestationRefusal,
    AuthenticatorCatalogue,
    MetadataInvalid,
    certificate_refusal,
    parse_catalogue,
)
from tradeguard.identity.mfa.webauthn import RegisteredCredential

RP_ID = "tradeguard.test"
ORIGIN = "https://tradeguard.test"
YUBIKEY_5 = "cb69481e-8ff7-4039-93ec-0a2729a154a8"
YUBIKEY_5_NFC_2025 = "d7781e5d-e353-46aa-afe2-3ca49f13332a"
TITAN_V2 = "42b4fb4a-2866-43b2-9bf7-6c6669c2e5d3"


def _register_staff(
    authenticator: SoftwareAuthenticator, catalogue: AuthenticatorCatalogue
) -> RegisteredCredential:
    options = ceremonies.registration_options(
        rp_id=RP_ID,
        rp_name="Tradeguard",
        user_id=b"\x02" * 16,
        user_name="ada",
        passkey=False,
        attestation=AttestationConveyancePreference.DIRECT,
    )
    return ceremonies.verify_registration(
        response=authenticator.create(options.options_json, ORIGIN),
        expected_challenge=options.challenge,
        expected_origin=ORIGIN,
        expected_rp_id=RP_ID,
        require_user_verification=False,
        trusted_models=catalogue,
    )


def _refusal(authenticator: SoftwareAuthenticator, catalogue: AuthenticatorCatalogue) -> str:
    with pytest.raises(AttestationNotTrusted) as raised:
        _register_staff(authenticator, catalogue)
    return raised.value.reason


@pytest.fixture
def catalogue() -> AuthenticatorCatalogue:
    return parse_catalogue(default_metadata_document())


class TestCatalogue:
    def test_an_mds3_payload_becomes_models_by_aaguid_skipping_u2f_entries(self) -> None:
        ca = AttestationCA()
        u2f = {"attestationCertificateKeyIdentifiers": ["bf7bcaa0d0c6187a8c6abbdd16a15640e7c7bde2"]}
        document = metadata_document(metadata_entry(TEST_AAGUID, ca, description="Key"), u2f)

        catalogue = parse_catalogue(document)

        model = catalogue.model(str(uuid.UUID(bytes=TEST_AAGUID)).upper())
        assert len(catalogue) == 1
        assert model is not None
        assert model.description == "Key"
        assert model.status == "FIDO_CERTIFIED_L1"
        assert not model.revoked
        assert model.roots_pem()[0].startswith(b"-----BEGIN CERTIFICATE-----")
        assert catalogue.serial == 1

    @pytest.mark.parametrize(
        "status",
        [
            "REVOKED",
            "USER_VERIFICATION_BYPASS",
            "ATTESTATION_KEY_COMPROMISE",
            "USER_KEY_REMOTE_COMPROMISE",
            "USER_KEY_PHYSICAL_COMPROMISE",
        ],
    )
    def test_a_compromise_report_revokes_the_model_even_if_a_later_report_follows(
        self, status: str
    ) -> None:
        entry = metadata_entry(
            TEST_AAGUID,
            AttestationCA(),
            statuses=("FIDO_CERTIFIED_L1", status, "UPDATE_AVAILABLE"),
        )

        model = parse_catalogue(metadata_document(entry)).model(str(uuid.UUID(bytes=TEST_AAGUID)))

        assert model is not None
        assert model.revoked
        assert model.status == "UPDATE_AVAILABLE"

    def test_the_trimmed_form_with_one_status_per_model_is_read_too(self) -> None:
        ca = AttestationCA()
        entries = [
            {
                "aaguid": str(uuid.UUID(bytes=TEST_AAGUID)),
                "description": "Trimmed",
                "attestationRootCertificates": [ca.root_base64()],
                "status": "revoked",
            }
        ]

        model = parse_catalogue(json.dumps(entries)).model(str(uuid.UUID(bytes=TEST_AAGUID)))

        assert model is not None
        assert model.description == "Trimmed"
        assert model.revoked

    @pytest.mark.parametrize(
        ("document", "message"),
        [
            ("not json", "not JSON"),
            ('{"no": 1}', "expected"),
            ('{"entries": [1]}', "not an object"),
            ('{"entries": [{"aaguid": "nope"}]}', "not a GUID"),
            (
                '{"entries": [{"aaguid": "7e57ab1e-0000-4000-8000-00000000a77e",'
                ' "attestationRootCertificates": ["bm90IGEgY2VydA=="]}]}',
                "not base64 DER",
            ),
            (
                '{"entries": [{"aaguid": "7e57ab1e-0000-4000-8000-00000000a77e",'
                ' "statusReports": [{"effectiveDate": "2024-01-01"}]}]}',
                "statusReports",
            ),
        ],
    )
    def test_a_malformed_file_is_refused_whole(self, document: str, message: str) -> None:
        with pytest.raises(MetadataInvalid, match=message):
            parse_catalogue(document)

    def test_an_aaguid_listed_twice_is_refused(self) -> None:
        entry = metadata_entry(TEST_AAGUID, AttestationCA())

        with pytest.raises(MetadataInvalid, match="listed twice"):
            parse_catalogue(metadata_document(entry, entry))

    def test_the_shipped_catalogue_lists_current_yubikey_5_and_titan_models_with_their_roots(
        self,
    ) -> None:
        catalogue = read_catalogue(default_metadata_file())

        roots = {
            aaguid: {
                x509.load_der_x509_certificate(der).subject.rfc4514_string()
                for der in model.root_certificates
            }
            for aaguid in (YUBIKEY_5, YUBIKEY_5_NFC_2025, TITAN_V2)
            if (model := catalogue.model(aaguid)) is not None
        }

        assert roots[YUBIKEY_5] == {"CN=Yubico U2F Root CA Serial 457200631"}
        assert "CN=Yubico Attestation Root 1" in roots[YUBIKEY_5_NFC_2025]
        assert (
            "CN=Titan Security Key Root,OU=Authenticator Attestation,O=Google,C=US"
            in roots[TITAN_V2]
        )
        assert not any(m.revoked for m in catalogue.models.values())
        assert all(m.root_certificates for m in catalogue.models.values())
        assert catalogue.next_update is not None


@pytest.mark.spec("IAC-3")
class TestStaffAttestation:
    def test_a_key_attested_by_a_listed_root_is_registered(
        self, catalogue: AuthenticatorCatalogue
    ) -> None:
        credential = _register_staff(SoftwareAuthenticator(), catalogue)

        assert credential.aaguid == str(uuid.UUID(bytes=TEST_AAGUID))

    def test_an_ed25519_credential_attested_by_an_es256_certificate_is_registered(
        self, catalogue: AuthenticatorCatalogue
    ) -> None:
        credential = _register_staff(SoftwareAuthenticator(algorithm=COSE_EDDSA), catalogue)

        assert credential.aaguid == str(uuid.UUID(bytes=TEST_AAGUID))

    def test_the_same_key_claiming_an_unlisted_model_is_refused(
        self, catalogue: AuthenticatorCatalogue
    ) -> None:
        other = uuid.uuid4().bytes
        refused = _refusal(SoftwareAuthenticator(aaguid=other), catalogue)

        assert refused == AttestationRefusal.UNKNOWN_MODEL

    @pytest.mark.parametrize("attestation", ["self", "none"])
    def test_self_and_none_attestation_prove_no_model(
        self, catalogue: AuthenticatorCatalogue, attestation: str
    ) -> None:
        key = SoftwareAuthenticator(attestation=attestation)  # type: ignore[arg-type]

        assert _refusal(key, catalogue) == AttestationRefusal.NOT_ATTESTED

    def test_a_chain_to_a_root_the_model_does_not_list_is_refused(
        self, catalogue: AuthenticatorCatalogue
    ) -> None:
        impostor = SoftwareAuthenticator(attestation_ca=AttestationCA(name="Impostor Root"))

        assert _refusal(impostor, catalogue) == AttestationRefusal.UNTRUSTED_CHAIN

    def test_a_vendor_root_vouches_only_for_its_own_models(self) -> None:
        ours, theirs = AttestationCA(), AttestationCA(name="Other Vendor Root")
        other_model = uuid.uuid4().bytes
        catalogue = parse_catalogue(
            metadata_document(
                metadata_entry(TEST_AAGUID, ours), metadata_entry(other_model, theirs)
            )
        )
        # A key certified by the other vendor that claims our model.
        key = SoftwareAuthenticator(attestation_ca=theirs)

        assert _refusal(key, catalogue) == AttestationRefusal.UNTRUSTED_CHAIN

    def test_a_revoked_model_is_refused(self) -> None:
        catalogue = parse_catalogue(
            metadata_document(
                metadata_entry(
                    TEST_AAGUID,
                    shared_attestation_ca(),
                    statuses=("FIDO_CERTIFIED_L1", "REVOKED"),
                )
            )
        )

        assert _refusal(SoftwareAuthenticator(), catalogue) == AttestationRefusal.REVOKED_MODEL

    def test_a_model_listed_without_roots_cannot_be_trusted(self) -> None:
        entry = metadata_entry(TEST_AAGUID, shared_attestation_ca())
        entry["metadataStatement"]["attestationRootCertificates"] = []
        catalogue = parse_catalogue(metadata_document(entry))

        assert _refusal(SoftwareAuthenticator(), catalogue) == AttestationRefusal.UNKNOWN_MODEL

    def test_a_certificate_issued_for_another_model_is_refused(
        self, catalogue: AuthenticatorCatalogue
    ) -> None:
        key = SoftwareAuthenticator(certified_aaguid=uuid.uuid4().bytes)

        assert _refusal(key, catalogue) == AttestationRefusal.BAD_CERTIFICATE

    def test_a_forged_signature_under_a_good_chain_is_still_rejected(
        self, catalogue: AuthenticatorCatalogue
    ) -> None:
        options = ceremonies.registration_options(
            rp_id=RP_ID,
            rp_name="Tradeguard",
            user_id=b"\x02" * 16,
            user_name="ada",
            passkey=False,
            attestation=AttestationConveyancePreference.DIRECT,
        )
        response = json.loads(SoftwareAuthenticator().create(options.options_json, ORIGIN))

        with pytest.raises(WebAuthnRegistrationRejected):
            ceremonies.verify_registration(
                response=response,
                expected_challenge=b"another challenge" * 2,
                expected_origin=ORIGIN,
                expected_rp_id=RP_ID,
                require_user_verification=False,
                trusted_models=catalogue,
            )


class TestAttestationCertificate:
    """W3C WebAuthn Level 3 section 8.2.1, one broken requirement at a time."""

    def test_a_certificate_meeting_every_requirement_passes(self) -> None:
        _, der = AttestationCA().issue(TEST_AAGUID)

        assert certificate_refusal(der, fmt="packed", aaguid=TEST_AAGUID) is None

    def test_the_aaguid_extension_is_optional(self) -> None:
        _, der = AttestationCA().issue(None)

        assert certificate_refusal(der, fmt="packed", aaguid=TEST_AAGUID) is None

    @pytest.mark.parametrize(
        "broken",
        [
            {"organizational_unit": "Engineering"},
            {"ca": True},
            {"aaguid_critical": True},
        ],
        ids=["wrong-ou", "ca-certificate", "critical-aaguid"],
    )
    def test_a_certificate_breaking_a_requirement_is_refused(
        self, broken: dict[str, object]
    ) -> None:
        _, der = AttestationCA().issue(TEST_AAGUID, **broken)  # type: ignore[arg-type]

        assert (
            certificate_refusal(der, fmt="packed", aaguid=TEST_AAGUID)
            == AttestationRefusal.BAD_CERTIFICATE
        )

    def test_a_tpm_certificate_needs_no_packed_subject_but_the_same_aaguid(self) -> None:
        _, der = AttestationCA().issue(TEST_AAGUID, organizational_unit="TPM")

        assert certificate_refusal(der, fmt="tpm", aaguid=TEST_AAGUID) is None
        assert (
            certificate_refusal(der, fmt="tpm", aaguid=bytes(16))
            == AttestationRefusal.BAD_CERTIFICATE
        )

    def test_garbage_is_refused(self) -> None:
        assert (
            certificate_refusal(base64.b64decode("AAAA"), fmt="packed", aaguid=TEST_AAGUID)
            == AttestationRefusal.BAD_CERTIFICATE
        )
