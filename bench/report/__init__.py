"""bench/report."""
