"""Market data as the matcher builds and publishes it (Redis or the link)."""
