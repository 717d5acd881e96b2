"""Errors of the Merkle tree, its checkpoints and proofs (rendered as RFC 9457 problems)."""

from __future__ import annotations

from tradeguard.core.errors import Conflict, InvalidInput, LedgerIntegrityError, NotFound


class TreeSizeOutOfRange(InvalidInput):
    """A tree size beyond the tree, or a range of sizes the wrong way round."""

    slug = "tree-size-out-of-range"
    title = "The tree size is outside the audit ledger's tree"


class UnknownEvent(NotFound):
    """No chained event has this id or sequence number (yet)."""

    slug = "unknown-event"
    title = "No such event in the audit ledger's tree"


class EventNotCheckpointed(Conflict):
    """The event is chained but newer than the latest checkpoint."""

    slug = "event-not-checkpointed"
    title = "The event is not yet covered by a signed checkpoint"


class NoCheckpoint(NotFound):
    slug = "no-checkpoint"
    title = "No signed checkpoint at this tree size"


class MalformedNote(InvalidInput):
    """Text that is not a well-formed signed note, checkpoint or verifier key."""

    slug = "malformed-signed-note"
    title = "Not a well-formed signed note"


class NoteNotVerified(InvalidInput):
    """No signature of a trusted key verifies, or one of them fails."""

    slug = "signature-not-verified"
    title = "The note is not signed by a trusted key"


class InconsistentTree(LedgerIntegrityError):
    """The tree does not extend the last signed checkpoint: it was rewritten. Never signed."""

    slug = "inconsistent-tree"
    title = "The audit ledger's tree is inconsistent with a signed checkpoint"


class SignerStateUnreadable(LedgerIntegrityError):
    """The last signed checkpoint kept beside the signing key is unreadable or not this
    log's: the signer cannot know what it signed before, so it signs nothing."""

    slug = "signer-state-unreadable"
    title = "The checkpoint signer's record of its last checkpoint is unusable"


class LeafMismatch(LedgerIntegrityError):
    """An event's body does not hash to its leaf in the tree: the body was altered."""

    slug = "leaf-mismatch"
    title = "The event's body does not match its leaf in the audit ledger's tree"


class WitnessConflict(Conflict):
    """A witness holds a different checkpoint at a size we signed: evidence of a fork."""

    slug = "witness-conflict"
    title = "The witness holds a different checkpoint at this size"


class UnverifiedChain(LedgerIntegrityError):
    """The chain does not verify over the range a new checkpoint would cover (or chain rows
    are missing below it): the ledger was rewritten behind the triggers. Never signed."""

    slug = "chain-does-not-verify"
    title = "The audit ledger's chain does not verify; no checkpoint is signed over it"
