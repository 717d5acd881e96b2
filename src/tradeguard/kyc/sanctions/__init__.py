"""Sanctions screening (KYC-2): list versions, name matching, hits and their review."""
