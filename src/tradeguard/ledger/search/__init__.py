"""Indexed search of the audit ledger (AUD-3 "indexed for search", AUD-2 "instant retrieval")."""
