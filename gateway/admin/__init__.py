"""The localhost admin HTTP API."""
