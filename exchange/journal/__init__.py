"""The durable journal and snapshot files of a matcher data directory."""
