"""Offline audit bundles: a range of the ledger with the signed checkpoints and proofs that let
anyone verify it with nothing but the log's public key (format: docs/audit-bundle.md)."""
