"""The audit ledger's Merkle tree (RFC 9162), its signed checkpoints and their witnesses."""
