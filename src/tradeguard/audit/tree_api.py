"""The audit ledger's checkpoints and proofs under /api/v1/audit (compliance:audit).

What a third party needs to verify the ledger offline: the latest signed checkpoint (or the
one at a size), an event's inclusion proof, a consistency proof between two tree sizes, and
the public keys. Thin: parse, authorize (the guard), call the tree service, shape.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from tradeguard.access.domain import Permission
from tradeguard.audit import tree_schemas as s
from tradeguard.identity.guard import guarded, problems
from tradeguard.ledger.tree.service import LedgerTree

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])

UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
# Tree sizes and chain positions are unsigned 63-bit integers (BIGINT in both databases).
MAX_SIZE = 2**63 - 1
TreeSize = Annotated[int, Path(ge=0, le=MAX_SIZE, description="A tree size (number of leaves).")]
OptionalSize = Annotated[
    int | None,
    Query(ge=1, le=MAX_SIZE, description="Tree size; default: the latest checkpoint's."),
]
EventId = Annotated[str | None, Query(min_length=36, max_length=36, pattern=UUID_PATTERN)]
Seq = Annotated[int | None, Query(ge=1, le=MAX_SIZE, description="The event's chain position.")]
First = Annotated[int, Query(ge=0, le=MAX_SIZE, description="The earlier tree size.")]
Second = Annotated[int, Query(ge=0, le=MAX_SIZE, description="The later tree size.")]


def _tree(request: Request) -> LedgerTree:
    tree: LedgerTree = request.app.state.ledger_tree
    return tree


@router.get("/checkpoints/latest", responses=problems(404), **guarded(Permission.COMPLIANCE_AUDIT))
async def latest_audit_checkpoint(request: Request) -> s.CheckpointOut:
    """The latest signed checkpoint (C2SP tlog-checkpoint) of the audit ledger."""
    return s.checkpoint_out(await _tree(request).latest_checkpoint())


@router.post(
    "/checkpoints",
    status_code=201,
    responses={200: {"model": s.CheckpointCreated, "description": "The tree has not grown"}},
    **guarded(Permission.COMPLIANCE_AUDIT),
)
async def sign_audit_checkpoint(request: Request, response: Response) -> s.CheckpointCreated:
    """Sign a checkpoint of the tree as it stands now (201), or return the latest one when
    the tree has not grown since (200)."""
    checkpoint, created = await _tree(request).sign_checkpoint()
    if not created:
        response.status_code = 200
    return s.CheckpointCreated(**s.checkpoint_out(checkpoint).model_dump(), created=created)


@router.get(
    "/checkpoints/{tree_size}", responses=problems(404), **guarded(Permission.COMPLIANCE_AUDIT)
)
async def audit_checkpoint_at(tree_size: TreeSize, request: Request) -> s.CheckpointOut:
    """The checkpoint signed at exactly this tree size (404 when none was)."""
    return s.checkpoint_out(await _tree(request).checkpoint_at(tree_size))


@router.get(
    "/proofs/inclusion",
    responses=problems(404, 409),
    **guarded(Permission.COMPLIANCE_AUDIT),
)
async def audit_inclusion_proof(
    request: Request,
    event_id: EventId = None,
    seq: Seq = None,
    tree_size: OptionalSize = None,
) -> s.InclusionProofOut:
    """An event's inclusion proof (RFC 9162 section 2.1.3), by event_id or seq, in the tree
    of tree_size leaves (default: the latest checkpoint's size)."""
    proof = await _tree(request).inclusion(event_id=event_id, seq=seq, tree_size=tree_size)
    return s.inclusion_out(proof)


@router.get("/proofs/consistency", **guarded(Permission.COMPLIANCE_AUDIT))
async def audit_consistency_proof(
    request: Request, first: First, second: Second
) -> s.ConsistencyProofOut:
    """A consistency proof (RFC 9162 section 2.1.4) that the tree of `second` leaves extends
    the tree of `first` leaves."""
    return s.consistency_out(await _tree(request).consistency(first, second))


@router.get("/keys", **guarded(Permission.COMPLIANCE_AUDIT))
async def audit_public_keys(request: Request) -> s.PublicKeysOut:
    """The public keys that sign checkpoints (vkey format), the active one first; retired
    keys stay listed so older checkpoints keep verifying."""
    tree = _tree(request)
    keys = tree.keys()
    return s.public_keys_out(tree.origin, keys.verifiers, keys.active.key.id)
