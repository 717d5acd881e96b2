"""Identity: users, passwords, multi-factor authentication, sessions and tokens (AUTH, SESS)."""
