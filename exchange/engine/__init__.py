"""The pure, deterministic engine: books, matching, accounts, snapshots. No I/O."""
