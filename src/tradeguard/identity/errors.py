"""Identity errors with stable slugs; none of them carries a secret, a token or a password."""

from __future__ import annotations

from tradeguard.core.errors import Forbidden, InvalidInput, ServiceUnavailable, Unauthorized


class WeakPassword(InvalidInput):
    """The password fails the NIST SP 800-63B-4 verifier checks; detail names the rule."""

    slug = "weak-password"
    title = "The password is not acceptable"


class BreachCheckUnavailable(ServiceUnavailable):
    """The breached-password service could not be asked; the caller fails open or closed."""

    slug = "breach-check-unavailable"
    title = "The breached-password check is unavailable"


class InvalidToken(Unauthorized):
    """Any access-token failure; one type and one detail so callers learn nothing about why."""

    slug = "invalid-token"
    title = "The access token is not valid"
    bearer_error = "invalid_token"


class WebAuthnRegistrationRejected(InvalidInput):
    """The authenticator's registration response failed verification."""

    slug = "webauthn-registration-rejected"
    title = "The security key or passkey could not be registered"


class WebAuthnAuthenticationRejected(Unauthorized):
    """The authenticator's assertion failed verification."""

    slug = "webauthn-authentication-rejected"
    title = "The security key or passkey could not be verified"


class AuthenticatorNotAllowed(Forbidden):
    """The authenticator model (AAGUID) is not on the relying party's allow-list."""

    slug = "authenticator-not-allowed"
    title = "This authenticator model is not allowed"


class ClonedAuthenticator(Unauthorized):
    """A correctly signed assertion did not advance the signature counter (WebAuthn 7.2 #22)."""

    slug = "cloned-authenticator"
    title = "The authenticator may have been cloned"


class AttestationNotTrusted(AuthenticatorNotAllowed):
    """A staff authenticator's attestation does not prove an allow-listed model (IAC-3).

    `reason` is an `AttestationRefusal` code for the audit ledger; the client is told only
    that the model is not allowed.
    """

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
