"""The data model: commands, events, queries, result codes, instruments, numbers."""
