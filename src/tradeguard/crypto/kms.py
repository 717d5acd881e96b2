"""AWS KMS as the key-encrypting key: data keys are wrapped and unwrapped by KMS `Encrypt` and
`Decrypt` under one symmetric KMS key, which never leaves KMS (PCI DSS 3.6.1.2).

Each wrapped key is bound to its slot (class, kind, version; or a pepper's purpose) by the
encryption context `{"tradeguard:slot": base64(slot)}`: KMS refuses to decrypt it with any
other context, so a wrapped key copied to another row does not open, and an IAM condition
on `kms:EncryptionContextKeys` can limit the key to tradeguard's use. `Decrypt` names the key
(KeyId pinned), and the answer's KeyId is checked as well: a ciphertext of another KMS key
is refused, not opened under it.

Credentials come from botocore's standard chain only (environment, shared files, the
instance or task role): never from tradeguard's settings. Calls run in a worker thread
(`asyncio.to_thread`), with connect and read timeouts and botocore's standard retry mode.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any, Final

import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from tradeguard.core.errors import ConfigurationError, ServiceUnavailable
from tradeguard.crypto.envelope import KEY_BYTES, EnvelopeBroken
from tradeguard.crypto.kms_settings import KMS_KEK_PREFIX, KmsSettings
from tradeguard.crypto.legacy import LegacyFieldKeys

KEK_ID_PREFIX: Final = KMS_KEK_PREFIX
CONTEXT_KEY: Final = "tradeguard:slot"
# Codes of a ciphertext that does not open under this key and context: a broken envelope.
_BROKEN: Final = frozenset({"InvalidCiphertextException", "IncorrectKeyException"})
# What to check for each refusal; the code is named, never AWS's text (which may quote
# request details) and never any key material.
_HINTS: Final = {
    "AccessDeniedException": "the IAM policy of the credentials in use must allow "
    "kms:Encrypt, kms:Decrypt and kms:DescribeKey on this key",
    "DisabledException": "the KMS key is disabled: enable it (aws kms enable-key)",
    "KMSInvalidStateException": "the KMS key is not enabled (pending deletion or import?)",
    "NotFoundException": "no such KMS key in this account and region: check "
    "TRADEGUARD_AWS_KMS_KEY_ID and TRADEGUARD_AWS_KMS_REGION",
    "KeyUnavailableException": "AWS KMS cannot reach the key just now; retry",
    "DependencyTimeoutException": "AWS KMS timed out; retry",
    "KMSInternalException": "AWS KMS failed internally; retry",
    "UnrecognizedClientException": "the AWS credentials are not valid for this region",
    "InvalidSignatureException": "the AWS credentials are not valid (secret key?)",
    "ExpiredTokenException": "the AWS session credentials have expired",
    "ThrottlingException": "AWS KMS throttled the calls; retry later or raise the quota",
}


class KmsUnavailable(ServiceUnavailable):
    slug = "kms-unavailable"
    title = "The key management service refused or did not answer"
    operator_detail = True  # names the key and the operation


def _client(settings: KmsSettings) -> Any:
    session = botocore.session.get_session()
    region = settings.region or session.get_config_variable("region")
    if not region:
        raise ConfigurationError(
            "no AWS region for KMS: set TRADEGUARD_AWS_KMS_REGION (or AWS_REGION)"
        )
    config = Config(
        connect_timeout=settings.connect_timeout_seconds,
        read_timeout=settings.read_timeout_seconds,
        retries={"mode": "standard", "total_max_attempts": settings.max_attempts},
        user_agent_appid="tradeguard",
    )
    try:
        return session.create_client(
            "kms", region_name=region, endpoint_url=settings.endpoint_url, config=config
        )
    except ValueError:
        raise ConfigurationError(
            f"TRADEGUARD_AWS_KMS_ENDPOINT_URL={settings.endpoint_url!r} is not a URL: give "
            "https://host[:port] (a VPC endpoint), or leave it unset"
        ) from None


def _failure(operation: str, exc: Exception, where: str) -> KmsUnavailable:
    """One line naming the call, AWS's error code and what to check; nothing else of it."""
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", "error"))
        hint = _HINTS.get(code, "check the key, its key policy and the IAM policy")
        return KmsUnavailable(f"AWS KMS {operation} on {where} failed ({code}): {hint}")
    if isinstance(exc, NoCredentialsError):
        return KmsUnavailable(
            f"AWS KMS {operation}: no AWS credentials found (environment, shared credentials "
            "file, or the instance/task role)"
        )
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError):
        return KmsUnavailable(
            f"AWS KMS {operation}: cannot reach the KMS endpoint ({type(exc).__name__}): "
            "check TRADEGUARD_AWS_KMS_REGION, TRADEGUARD_AWS_KMS_ENDPOINT_URL and the network"
        )
    return KmsUnavailable(f"AWS KMS {operation} failed ({type(exc).__name__})")


def encryption_context(associated_data: bytes) -> dict[str, str]:
    return {CONTEXT_KEY: base64.b64encode(associated_data).decode("ascii")}


class AwsKmsKek:
    """A KekProvider whose key-encrypting key is one symmetric AWS KMS key."""

    def __init__(self, client: Any, key_arn: str) -> None:
        self._client = client
        self._arn = key_arn

    @classmethod
    def connect(cls, settings: KmsSettings) -> AwsKmsKek:
        """Resolve the key (DescribeKey) and refuse one that cannot wrap keys. Blocking: call
        once at start (or through `asyncio.to_thread`)."""
        if not settings.key_id.strip():
            raise ConfigurationError(
                "TRADEGUARD_AWS_KMS_KEY_ID is empty: set it to the KMS key's ARN, id or alias"
            )
        client = _client(settings)
        try:
            metadata = client.describe_key(KeyId=settings.key_id)["KeyMetadata"]
        except Exception as exc:
            raise _failure("DescribeKey", exc, settings.key_id) from None
        arn = str(metadata["Arn"])
        state = metadata.get("KeyState")
        if not metadata.get("Enabled", False) or state != "Enabled":
            raise ConfigurationError(
                f"the KMS key {arn} is {state or 'not enabled'}: enable it "
                "(aws kms enable-key) or name another with TRADEGUARD_AWS_KMS_KEY_ID"
            )
        spec = metadata.get("KeySpec", metadata.get("CustomerMasterKeySpec"))
        # KeyUsage is always in AWS's answer; a peer that leaves it out is taken at its spec.
        usage = metadata.get("KeyUsage", "ENCRYPT_DECRYPT")
        if spec != "SYMMETRIC_DEFAULT" or usage != "ENCRYPT_DECRYPT":
            raise ConfigurationError(
                f"the KMS key {arn} is {spec}/{usage}: the key-encrypting key must be a "
                "SYMMETRIC_DEFAULT key for ENCRYPT_DECRYPT"
            )
        return cls(client, arn)

    @property
    def kek_id(self) -> str:
        return KEK_ID_PREFIX + self._arn

    @property
    def key_arn(self) -> str:
        return self._arn

    @property
    def legacy(self) -> LegacyFieldKeys | None:
        return None  # a KMS key never leaves KMS: nothing to derive HKDF keys from

    def _encrypt(self, key: bytes, associated_data: bytes) -> bytes:
        try:
            answer = self._client.encrypt(
                KeyId=self._arn,
                Plaintext=key,
                EncryptionContext=encryption_context(associated_data),
            )
        except Exception as exc:
            raise _failure("Encrypt", exc, self._arn) from None
        return bytes(answer["CiphertextBlob"])

    def _decrypt(self, wrapped: bytes, associated_data: bytes) -> bytes:
        try:
            answer = self._client.decrypt(
                KeyId=self._arn,
                CiphertextBlob=wrapped,
                EncryptionContext=encryption_context(associated_data),
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _BROKEN:
                raise EnvelopeBroken from None
            raise _failure("Decrypt", exc, self._arn) from None
        except Exception as exc:
            raise _failure("Decrypt", exc, self._arn) from None
        key = bytes(answer["Plaintext"])
        if answer.get("KeyId") != self._arn or len(key) != KEY_BYTES:
            raise EnvelopeBroken  # opened, but not by our key, or not one of our keys
        return key

    async def wrap(self, key: bytes, *, associated_data: bytes) -> bytes:
        if len(key) != KEY_BYTES:
            raise ValueError("only 32-byte keys are wrapped")
        return await asyncio.to_thread(self._encrypt, key, associated_data)

    async def unwrap(self, wrapped: bytes, *, associated_data: bytes) -> bytes:
        if not wrapped:
            raise EnvelopeBroken
        return await asyncio.to_thread(self._decrypt, wrapped, associated_data)
