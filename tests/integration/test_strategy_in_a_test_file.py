"""A strategy defined outside strategies/ (here: in a test's plugin file) runs through the whole
harness, from `--strategy` to the table: adding a strategy is one class plus one registry line."""

from __future__ import annotations

import json

import pytest

from tests.helpers.run_bench import TINY_RUN, bench_pytester_subprocess

pytest_plugins = ["pytester"]

ECHO_PLUGIN = '''
from strategies import STRATEGIES
from strategies.serial import Serial


class Echo(Serial):
    """serial under another name: nothing but the class and the registry line below is new."""

    name = "echo"


STRATEGIES[Echo.name] = Echo
'''


@pytest.mark.slow
def test_a_strategy_defined_in_a_test_file_is_benchmarked_checked_and_tabled(pytester: pytest.Pytester):
    pytester.makepyfile(echo_plugin=ECHO_PLUGIN)
    saved = pytester.path / "run.json"

    result = bench_pytester_subprocess(pytester, "-p", "echo_plugin", *TINY_RUN, "--strategy", "echo",
                                       "--scenario", "offline", f"--benchmark-json={saved}")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str() + result.stderr.str()
    benchmarks = json.loads(saved.read_text())["benchmarks"]
    assert benchmarks, result.stdout.str()
    assert {benchmark["extra_info"]["strategy"] for benchmark in benchmarks} == {"echo"}
    assert all(benchmark["extra_info"]["equivalence"]["equivalent"] for benchmark in benchmarks)
    assert all(benchmark["name"].startswith("test_strategy[echo-") for benchmark in benchmarks)
    result.assert_outcomes(passed=len(benchmarks))
    # Its row in fanbench's table (the offline one, then the resources one), checked equal to serial.
    table = result.stdout.str().split("= fanbench =")[-1]
    rows = [line.split() for line in table.splitlines() if line.startswith("echo ")]
    assert len(rows) == 2 * len(benchmarks), table
    assert rows[0][-1] == "yes", table
