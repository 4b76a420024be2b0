"""Benchmarks: the engine, the matcher over its link, market-data fan-out."""
