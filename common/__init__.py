"""The ground floor: what every layer uses (the error type, atomic file writes, hashing)."""
