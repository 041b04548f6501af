"""What `pytest bench` gives every benchmark (bench/measure/run.py RunInputs), built for a test's workload,
and the RunOptions of a command line (`parse_args`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from bench.measure.equivalence import Calibration, ModelCheck
from bench.measure.limits import PackingLimit
from bench.measure.run import RunInputs
from bench.options import RunOptions, add_options, build_run_options
from fixtures.options import given_flags
from strategies import Outputs, Workload

# pytest-benchmark's options RunOptions reads, at their defaults (for parse_args).
BENCHMARK_DEFAULTS = {"benchmark_disable": False, "benchmark_skip": False, "benchmark_compare_fail": None,
                      "benchmark_storage": "file://./.benchmarks", "benchmark_netrc": "", "benchmark_save": None,
                      "benchmark_autosave": False, "benchmark_compare": None}


def parse_args(args: Sequence[str]) -> RunOptions:
    """RunOptions of a command line of fanbench's options alone, built as `pytest bench` builds it."""
    parser = argparse.ArgumentParser()
    add_options(parser.add_argument)
    values = {**BENCHMARK_DEFAULTS, **vars(parser.parse_args(list(args)))}
    return build_run_options(values, given_flags(args, "", ()))


def run_inputs(workload: Workload, reference: Sequence[Sequence[Outputs]], *options: str,
               tolerance: float = 1e-4) -> RunInputs:
    """RunInputs of `workload` under fanbench's command-line `options`, its runs checked against `reference`
    (serial's outputs) within `tolerance` times each output's largest magnitude."""
    names = workload.names
    calibration = Calibration(tuple(ModelCheck(name, noise=0.0, separation=float("inf"), separation_median=0.0,
                                               tolerance=tolerance, pairs=0, identical_pairs=0, pairs_within_noise=0)
                                    for name in names), second_way="none (a test's given tolerance)", precision="float32")
    return RunInputs(parse_args(list(options)), workload, reference, calibration,
                     {"model_flops": [None] * len(names), "model_set_hash": "test"},
                     PackingLimit((0.01,) * len(names), 1), "a unit test: no GPU")
