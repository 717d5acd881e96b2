"""Pre-trade risk controls (SEC Rule 15c3-5): checks, PDT, Reg SHO, restricted list, halts."""
