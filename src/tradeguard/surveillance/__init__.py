"""Market surveillance (MAN-1, MAN-2, PRE-3): detectors over the ledger's trading events."""
