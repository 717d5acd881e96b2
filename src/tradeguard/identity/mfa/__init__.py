"""Multi-factor authenticators: TOTP, WebAuthn, out-of-band one-time codes, backup codes."""
