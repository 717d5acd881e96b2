"""Sealed archive of the audit ledger: write-once, encrypted, signed segments (AUD-2, ENC-3)."""
