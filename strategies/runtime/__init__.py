"""strategies/runtime."""
