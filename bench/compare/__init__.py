"""bench/compare."""
