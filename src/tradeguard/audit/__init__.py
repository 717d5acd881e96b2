"""The audit ledger's HTTP API for compliance (compliance:audit): checkpoints, proofs and
search."""
