"""API bodies of the audit ledger's checkpoints and proofs (pydantic v2).

Hashes are standard base64 (RFC 4648 section 4), as in C2SP checkpoints; a proof lists its
hashes from the leaf's level upward (RFC 9162 section 2.1.3), or as section 2.1.4 orders a
consistency proof.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from tradeguard.core.clock import ns_to_iso
from tradeguard.ledger.tree.note import VerifierKey
from tradeguard.ledger.tree.service import (
    ConsistencyProof,
    InclusionProof,
    SignedCheckpoint,
    b64,
)

Base64Hash = str


class CheckpointOut(BaseModel):
    origin: str
    tree_size: int
    root_hash: Base64Hash = Field(description="RFC 9162 root hash, base64.")
    key_name: str
    key_id: str = Field(description="The signing key's 4-byte ID in hex (signed-note spec).")
    signed_at: str = Field(description="RFC 3339 UTC, nanoseconds.")
    note: str = Field(
        description="The C2SP signed note, verbatim: origin, size, root, blank line, "
        "signature lines. Verify this, not the fields above."
    )


class CheckpointCreated(CheckpointOut):
    created: bool = Field(description="False when the tree had not grown since the last one.")


class InclusionProofOut(BaseModel):
    event_id: str
    seq: int = Field(description="The event's chain position; its leaf index is seq - 1.")
    leaf_index: int
    tree_size: int
    leaf_hash: Base64Hash = Field(description="SHA-256(0x00 || event_body).")
    root_hash: Base64Hash
    proof: list[Base64Hash]
    event_body: str = Field(description="The event's canonical JSON (RFC 8785), base64.")
    checkpoint: CheckpointOut | None = Field(
        description="The signed checkpoint at tree_size, when one was signed at that size."
    )


class ConsistencyProofOut(BaseModel):
    first: int
    second: int
    first_root: Base64Hash
    second_root: Base64Hash
    proof: list[Base64Hash]
    first_checkpoint: CheckpointOut | None
    second_checkpoint: CheckpointOut | None


class PublicKeyOut(BaseModel):
    name: str
    key_id: str
    vkey: str = Field(description="<name>+<key ID hex>+<base64(0x01 || Ed25519 public key)>.")
    active: bool


class PublicKeysOut(BaseModel):
    origin: str
    keys: list[PublicKeyOut]


def checkpoint_out(checkpoint: SignedCheckpoint) -> CheckpointOut:
    return CheckpointOut(
        origin=checkpoint.checkpoint.origin,
        tree_size=checkpoint.size,
        root_hash=b64(checkpoint.root),
        key_name=checkpoint.key_name,
        key_id=checkpoint.key_id,
        signed_at=ns_to_iso(checkpoint.signed_ns),
        note=checkpoint.note,
    )


def _optional(checkpoint: SignedCheckpoint | None) -> CheckpointOut | None:
    return None if checkpoint is None else checkpoint_out(checkpoint)


def inclusion_out(proof: InclusionProof) -> InclusionProofOut:
    return InclusionProofOut(
        event_id=proof.event_id,
        seq=proof.seq,
        leaf_index=proof.leaf_index,
        tree_size=proof.tree_size,
        leaf_hash=b64(proof.leaf_hash),
        root_hash=b64(proof.root),
        proof=[b64(h) for h in proof.proof],
        event_body=b64(proof.event_body),
        checkpoint=_optional(proof.checkpoint),
    )


def consistency_out(proof: ConsistencyProof) -> ConsistencyProofOut:
    return ConsistencyProofOut(
        first=proof.first,
        second=proof.second,
        first_root=b64(proof.first_root),
        second_root=b64(proof.second_root),
        proof=[b64(h) for h in proof.proof],
        first_checkpoint=_optional(proof.first_checkpoint),
        second_checkpoint=_optional(proof.second_checkpoint),
    )


def public_keys_out(origin: str, keys: list[VerifierKey], active_id: bytes) -> PublicKeysOut:
    return PublicKeysOut(
        origin=origin,
        keys=[
            PublicKeyOut(name=k.name, key_id=k.id_hex, vkey=k.vkey, active=k.id == active_id)
            for k in keys
        ],
    )
