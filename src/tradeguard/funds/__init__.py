"""Money movement: bank accounts, deposits, withdrawals with limits and review (issue #11)."""
