"""Instruments, accounts, orders, positions and executions."""
