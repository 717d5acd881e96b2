"""Fraud and account-takeover defence (ATO-1, ATO-2, ACCT-5): signals, responses, reviews."""
