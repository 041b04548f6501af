"""Time every strategy on the workload and check its outputs against the serial reference."""

from __future__ import annotations

import pytest

from strategies import RunResult, RunTimeout
from strategies.equivalence import first_mismatch

from .limits import time_limit
from .results import Measurement


def test_strategy(benchmark, case, workload, reference, model_facts, workload_config, pytestconfig, record):
    runs: list[RunResult] = []
    limit = time_limit(pytestconfig.getoption("time_limit"), workload.frame_count, len(workload.models))
    timed_out: RunTimeout | None = None
    with case.strategy(workload, case.settings) as strategy:
        # Sessions, pools, processes and event loops were built by `with`, before the clock.
        try:
            benchmark.pedantic(lambda: runs.append(strategy.run(time_limit=limit)), rounds=pytestconfig.getoption("rounds"),
                               warmup_rounds=pytestconfig.getoption("warmup"), iterations=1)
        except RunTimeout as error:  # leaving `with` stops the strategy: lanes end, workers are killed
            timed_out = error
        providers = set(strategy.providers_used)
    if timed_out is not None:
        pytest.fail(f"{case.id}: {timed_out} Raise the limit with --time-limit SECONDS if the run is just slow.", pytrace=False)
    timed = runs[-pytestconfig.getoption("rounds"):]
    mismatch = next((m for m in (first_mismatch(reference, run.outputs, workload.names) for run in runs) if m), None)
    measurement = Measurement.from_runs(
        timed, strategy=case.strategy.name, settings=case.settings, models=workload.names,
        batch=workload_config.batch, provider="/".join(sorted(providers)), mismatch=mismatch, **model_facts)
    benchmark.extra_info.update(measurement.extra_info())
    record(measurement)
    assert mismatch is None, f"{case.id}: outputs differ from the serial reference: {mismatch}"
