"""Keys and encryption: envelope AES-256-GCM with a separate key per data class."""
