"""fanbench's plugins: options, RunOptions and hooks (bench/plugin.py); the session fixtures (fixtures/plugin.py)."""

pytest_plugins = ["bench.plugin", "fixtures.plugin"]
