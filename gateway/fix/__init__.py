"""FIX 4.4 order entry: codec, session layer and the mapping onto engine commands."""
