"""Matching engine, journal and matcher process."""
