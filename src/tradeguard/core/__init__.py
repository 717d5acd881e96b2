"""Shared kernel: clock, ids, money, errors, event types. Imports nothing from the project."""
