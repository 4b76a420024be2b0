"""The matcher process: the single-writer loop, recovery and the link's server end."""
