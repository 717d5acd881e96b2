"""Verifying a secret-scanning partner's leak report (GitHub's format).

GitHub signs the raw request body with ECDSA P-256 / SHA-256 and sends the base64 DER
signature in `Github-Public-Key-Signature` and the id of its signing key in
`Github-Public-Key-Identifier`; the public keys are published at
https://api.github.com/meta/public_keys/secret_scanning. The platform is configured with the
PEM of the key to trust (TRADEGUARD_APIKEYS_LEAK_REPORT_PUBLIC_KEY).
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from tradeguard.core.errors import ConfigurationError, Unauthorized

SIGNATURE_HEADER: Final = "github-public-key-signature"
KEY_ID_HEADER: Final = "github-public-key-identifier"
MAX_SIGNATURE_CHARS: Final = 200


class LeakReportRefused(Unauthorized):
    slug = "unauthorized"


def load_public_key(pem: str) -> ec.EllipticCurvePublicKey:
    try:
        key = load_pem_public_key(pem.encode())
    except ValueError:
        raise ConfigurationError("the leak report public key is not a PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigurationError("the leak report public key must be an ECDSA key")
    return key


def verify_report(key: ec.EllipticCurvePublicKey | None, body: bytes, signature: str) -> None:
    """Raise LeakReportRefused unless `signature` (base64 DER) signs `body` under `key`."""
    if key is None or not signature or len(signature) > MAX_SIGNATURE_CHARS:
        raise LeakReportRefused("the report's signature does not verify")
    try:
        der = base64.b64decode(signature, validate=True)
        key.verify(der, body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError):
        raise LeakReportRefused("the report's signature does not verify") from None
