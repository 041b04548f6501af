"""Time every strategy on the workload and check its outputs against the serial reference."""

from __future__ import annotations

import pytest

from bench.measure.run import BenchmarkRun


def test_strategy(benchmark, case, scenario, run_inputs, round_hooks, record, request):
    if run_inputs.options.interleave:  # every benchmark's rounds were run in turns (bench/interleave.py); take this one's
        rounds = request.getfixturevalue("interleaved").replayed(benchmark, request.node.nodeid)
        if rounds.skipped is not None:
            pytest.skip(rounds.skipped)
        run = BenchmarkRun(run_inputs, case, scenario, rounds)
    else:
        run = BenchmarkRun(run_inputs, case, scenario)
        run.in_a_row(benchmark, round_hooks)
    measurement = run.measure(benchmark)
    record(measurement, run.overhead_line())
    mismatch = measurement.equivalence.mismatch
    assert mismatch is None, f"{case.id}: outputs differ from the serial reference: {mismatch}"
