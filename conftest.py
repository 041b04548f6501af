"""fanbench's plugins: options, RunOptions and hooks (bench/plugin.py); the session fixtures (fixtures/plugin.py);
--interleave's runner (bench/interleave.py)."""

pytest_plugins = ["bench.plugin", "fixtures.plugin", "bench.interleave"]
