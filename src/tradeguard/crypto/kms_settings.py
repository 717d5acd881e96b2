"""The settings of the AWS KMS key-encrypting key (crypto/kms.py), apart from it: reading
them does not load botocore."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# The prefix of an AWS KMS key-encrypting key's public id (crypto/kms.py): "aws-kms:<ARN>".
KMS_KEK_PREFIX: Final = "aws-kms:"


@dataclass(frozen=True, slots=True)
class KmsSettings:
    key_id: str
    region: str | None = None
    endpoint_url: str | None = None
    connect_timeout_seconds: float = 5.0
    read_timeout_seconds: float = 10.0
    max_attempts: int = 3
