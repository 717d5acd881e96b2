"""The card vault (PCI-2, PCI-3): card numbers tokenized on a database of their own."""
