"""Personal data inside ledger events: sealed under per-subject keys, erasable by destroying
the key (crypto-shredding) while the chain still verifies."""
