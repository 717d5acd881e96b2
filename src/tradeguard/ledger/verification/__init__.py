"""Verifying the audit ledger's hash chain over ranges, in this process or in worker processes.

Kept free of SQLAlchemy and the rest of tradeguard so that a worker process starts quickly:
it imports only the standard library, the chain constants and its database driver.
"""
