"""Encrypted, signed database backups: create, verify, restore (ENC-1; docs/backups.md)."""
