"""Simulated exchange: matching engine, tick conversion and market-data model (pure, no I/O)."""
