"""Market surveillance (MAN-1 to MAN-5, PRE-3): detectors over the ledger's trading events."""
