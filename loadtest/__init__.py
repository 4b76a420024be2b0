"""Open-loop load generator for the exchange."""
