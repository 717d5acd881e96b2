"""The audit ledger: append-only, hash-chained events written in the caller's transaction."""
