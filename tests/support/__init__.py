"""Test support code: factories, protocol peers and fixtures shared across test packages."""
