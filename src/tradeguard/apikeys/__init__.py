"""API keys and signed requests for programmatic access (issue #14: API-1, API-3, ACCT-3)."""
