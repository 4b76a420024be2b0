"""The trading core shared by every transport: auth, limits, validation, the matcher link."""
