"""Staff tools over customer accounts: the masked support view and admin user management."""
