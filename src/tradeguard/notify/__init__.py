"""Notifications: a transactional outbox, email over SMTP, SMS providers."""
