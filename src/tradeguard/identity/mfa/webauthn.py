"""W3C WebAuthn Level 3 ceremonies (sections 7.1 and 7.2) for passkeys and security keys.

Passkeys and platform biometrics (AUTH-2) and roaming security keys (AUTH-3), over py_webauthn.
Only ES256 (COSE -7) and EdDSA (COSE -8) credentials are accepted. Challenges are single-use:
the caller stores the challenge with the ceremony and deletes it before verifying.

Signature counter (section 7.2 step 22). py_webauthn 3.x refuses a non-increasing counter
itself, but *before* it checks the signature, and with the same exception as every other
failure. Here the check runs *after* the signature is verified, and raises its own
`ClonedAuthenticator`: only a response signed by the credential's private key can then flag
the credential as cloned, so an attacker holding just the credential id cannot get a user's
key disabled by sending a low counter. To do that, py_webauthn is given a stored count of 0,
which turns its own check off (its condition is `(new > 0 or stored > 0) and new <= stored`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import webauthn
from webauthn.helpers import options_to_json, parse_attestation_object, validate_certificate_chain
from webauthn.helpers.cose import COSEAlgorithmIdentifier
from webauthn.helpers.exceptions import InvalidCertificateChain, WebAuthnException
from webauthn.helpers.parse_authentication_credential_json import (
    parse_authentication_credential_json,
)
from webauthn.helpers.parse_registration_credential_json import (
    parse_registration_credential_json,
)
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AttestationFormat,
    AuthenticatorSelectionCriteria,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from tradeguard.identity.errors import (
    AttestationNotTrusted,
    AuthenticatorNotAllowed,
    ClonedAuthenticator,
    WebAuthnAuthenticationRejected,
    WebAuthnRegistrationRejected,
)
from tradeguard.identity.mfa.attestation import (
    AttestationRefusal,
    AuthenticatorCatalogue,
    certificate_refusal,
)

SUPPORTED_ALGORITHMS = [COSEAlgorithmIdentifier.ECDSA_SHA_256, COSEAlgorithmIdentifier.EDDSA]
DEFAULT_TIMEOUT_MS = 5 * 60 * 1000
# What py_webauthn and its parsers raise on malformed input besides its own exceptions
# (bad base64, CBOR or JSON shapes).
_MALFORMED = (WebAuthnException, ValueError, TypeError, KeyError)
# Formats whose trust path is an X.509 chain to roots we supply, and nothing else: py_webauthn
# adds Google's roots to "android-key" and Apple's to "apple", which would let those vendors'
# roots vouch for a model whose catalogue entry lists other roots. "fido-u2f" carries no
# AAGUID; "none" and self attestation prove no model at all.
ATTESTED_FORMATS = frozenset({AttestationFormat.PACKED, AttestationFormat.TPM})

ResponseJson = str | Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class CeremonyOptions:
    """Options to send to the browser and the challenge to keep server-side until verify."""

    challenge: bytes = field(repr=False)
    options_json: str


@dataclass(frozen=True, slots=True)
class RegisteredCredential:
    credential_id: bytes
    public_key: bytes  # COSE_Key, as py_webauthn verifies it later
    sign_count: int
    aaguid: str
    user_verified: bool
    backup_eligible: bool
    backed_up: bool
    transports: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VerifiedAssertion:
    credential_id: bytes
    new_sign_count: int
    user_verified: bool
    backed_up: bool


def registration_options(
    *,
    rp_id: str,
    rp_name: str,
    user_id: bytes,
    user_name: str,
    exclude_credential_ids: Sequence[bytes] = (),
    passkey: bool,
    user_display_name: str | None = None,
    attestation: AttestationConveyancePreference = AttestationConveyancePreference.NONE,
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
) -> CeremonyOptions:
    """Options for navigator.credentials.create().

    A passkey (AUTH-2) is a discoverable credential that verifies the user itself, so it can
    be a whole login: residentKey and userVerification are required. A security key used as
    a second factor (AUTH-3) only needs presence: residentKey discouraged, UV preferred.
    `user_id` is an opaque handle, never an email address (section 14.6.1).
    """
    selection = (
        AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        )
        if passkey
        else AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.DISCOURAGED,
            user_verification=UserVerificationRequirement.PREFERRED,
        )
    )
    options = webauthn.generate_registration_options(
        rp_id=rp_id,
        rp_name=rp_name,
        user_id=user_id,
        user_name=user_name,
        user_display_name=user_display_name,
        timeout=timeout_ms,
        attestation=attestation,
        authenticator_selection=selection,
        exclude_credentials=[PublicKeyCredentialDescriptor(id=c) for c in exclude_credential_ids],
        supported_pub_key_algs=list(SUPPORTED_ALGORITHMS),
    )
    return CeremonyOptions(challenge=options.challenge, options_json=options_to_json(options))


def verify_registration(
    *,
    response: ResponseJson,
    expected_challenge: bytes,
    expected_origin: str | Sequence[str],
    expected_rp_id: str,
    require_user_verification: bool,
    allowed_aaguids: Collection[str] | None = None,
    trusted_models: AuthenticatorCatalogue | None = None,
) -> RegisteredCredential:
    """Verify a navigator.credentials.create() response; refuse what fails any check.

    `allowed_aaguids` (lower-case GUID strings) restricts the authenticator models accepted.
    With attestation "none" the AAGUID is the authenticator's own unproven claim, so the list
    then only keeps honest users on approved models. `trusted_models` *enforces* a model
    (request "direct" attestation for it): the response must carry an attestation chain to a
    root listed for its AAGUID, from a model not reported revoked or compromised; otherwise
    `AttestationNotTrusted` names why.
    """
    attestation_roots: Mapping[AttestationFormat, list[bytes]] | None = None
    try:
        credential = parse_registration_credential_json(_as_json_text(response))
        if trusted_models is not None:
            attestation_roots = _trusted_roots(
                credential.response.attestation_object, trusted_models
            )
        verified = webauthn.verify_registration_response(
            credential=credential,
            expected_challenge=expected_challenge,
            expected_rp_id=expected_rp_id,
            expected_origin=_origins(expected_origin),
            require_user_presence=True,
            require_user_verification=require_user_verification,
            supported_pub_key_algs=list(SUPPORTED_ALGORITHMS),
            pem_root_certs_bytes_by_fmt=attestation_roots,
        )
    except _MALFORMED as exc:
        raise WebAuthnRegistrationRejected() from exc
    if allowed_aaguids is not None and verified.aaguid.lower() not in {
        a.lower() for a in allowed_aaguids
    }:
        raise AuthenticatorNotAllowed()
    transports = credential.response.transports or []
    return RegisteredCredential(
        credential_id=verified.credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        aaguid=verified.aaguid,
        user_verified=verified.user_verified,
        backup_eligible=verified.credential_device_type is CredentialDeviceType.MULTI_DEVICE,
        backed_up=verified.credential_backed_up,
        transports=tuple(t.value for t in transports),
    )


def _trusted_roots(
    attestation_object: bytes, catalogue: AuthenticatorCatalogue
) -> dict[AttestationFormat, list[bytes]]:
    """The roots this response's chain must lead to; raises if its model is not trusted.

    Runs before the full verification so the refusal can say why; the roots returned are
    handed to py_webauthn as well, which checks the chain and the signature again.
    """
    parsed = parse_attestation_object(attestation_object)
    attested = parsed.auth_data.attested_credential_data
    statement = parsed.att_stmt
    if (
        attested is None
        or parsed.fmt not in ATTESTED_FORMATS
        or statement is None
        or not statement.x5c
    ):
        raise AttestationNotTrusted(AttestationRefusal.NOT_ATTESTED)
    fmt = AttestationFormat(parsed.fmt)
    aaguid = str(uuid.UUID(bytes=attested.aaguid))
    model = catalogue.model(aaguid)
    if model is None or not model.root_certificates:
        raise AttestationNotTrusted(AttestationRefusal.UNKNOWN_MODEL)
    if model.revoked:
        raise AttestationNotTrusted(AttestationRefusal.REVOKED_MODEL)
    roots = model.roots_pem()
    try:
        validate_certificate_chain(x5c=statement.x5c, pem_root_certs_bytes=roots)
    except InvalidCertificateChain as exc:
        raise AttestationNotTrusted(AttestationRefusal.UNTRUSTED_CHAIN) from exc
    refusal = certificate_refusal(statement.x5c[0], fmt=fmt.value, aaguid=attested.aaguid)
    if refusal is not None:
        raise AttestationNotTrusted(refusal)
    return {fmt: roots}


def authentication_options(
    *,
    rp_id: str,
    allow_credential_ids: Sequence[bytes] = (),
    require_user_verification: bool,
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
) -> CeremonyOptions:
    """Options for navigator.credentials.get(); no credential ids means a passkey login."""
    options = webauthn.generate_authentication_options(
        rp_id=rp_id,
        timeout=timeout_ms,
        allow_credentials=[PublicKeyCredentialDescriptor(id=c) for c in allow_credential_ids],
        user_verification=(
            UserVerificationRequirement.REQUIRED
            if require_user_verification
            else UserVerificationRequirement.PREFERRED
        ),
    )
    return CeremonyOptions(challenge=options.challenge, options_json=options_to_json(options))


def assertion_credential_id(response: ResponseJson) -> bytes:
    """The credential id an assertion claims, to look the stored credential up by."""
    try:
        return parse_authentication_credential_json(_as_json_text(response)).raw_id
    except _MALFORMED as exc:
        raise WebAuthnAuthenticationRejected() from exc


def verify_authentication(
    *,
    response: ResponseJson,
    expected_challenge: bytes,
    expected_origin: str | Sequence[str],
    expected_rp_id: str,
    credential_id: bytes,
    credential_public_key: bytes,
    stored_sign_count: int,
    require_user_verification: bool,
) -> VerifiedAssertion:
    """Verify a navigator.credentials.get() response for the stored credential.

    Returns the new signature counter for the caller to store. Raises `ClonedAuthenticator`
    when a correctly signed response does not advance a counter that either side has started.
    """
    try:
        credential = parse_authentication_credential_json(_as_json_text(response))
        if credential.raw_id != credential_id:
            raise WebAuthnAuthenticationRejected()
        verified = webauthn.verify_authentication_response(
            credential=credential,
            expected_challenge=expected_challenge,
            expected_rp_id=expected_rp_id,
            expected_origin=_origins(expected_origin),
            credential_public_key=credential_public_key,
            # 0 disables py_webauthn's pre-signature counter check; ours follows below.
            credential_current_sign_count=0,
            require_user_verification=require_user_verification,
        )
    except _MALFORMED as exc:
        raise WebAuthnAuthenticationRejected() from exc
    new_count = verified.new_sign_count
    if (new_count > 0 or stored_sign_count > 0) and new_count <= stored_sign_count:
        raise ClonedAuthenticator()
    return VerifiedAssertion(
        credential_id=verified.credential_id,
        new_sign_count=new_count,
        user_verified=verified.user_verified,
        backed_up=verified.credential_backed_up,
    )


def _as_json_text(response: ResponseJson) -> str:
    return response if isinstance(response, str) else json.dumps(dict(response))


def _origins(expected_origin: str | Sequence[str]) -> str | list[str]:
    return expected_origin if isinstance(expected_origin, str) else list(expected_origin)
