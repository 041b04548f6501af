"""Time every strategy on the workload and check its outputs against the serial reference."""

from __future__ import annotations

from strategies import RunResult
from strategies.equivalence import first_mismatch

from .harness import opened
from .results import Measurement


def test_strategy(benchmark, case, workload, reference, model_facts, workload_config, pytestconfig, record):
    runs: list[RunResult] = []
    with opened(case.strategy, workload, case.settings) as strategy:
        # Sessions, pools, processes and event loops are built on opening, before the clock.
        benchmark.pedantic(lambda: runs.append(strategy.run()), rounds=pytestconfig.getoption("rounds"),
                           warmup_rounds=pytestconfig.getoption("warmup"), iterations=1)
        providers = set(strategy.providers_used)
    timed = runs[-pytestconfig.getoption("rounds"):]
    mismatch = next((m for m in (first_mismatch(reference, run.outputs, workload.names) for run in runs) if m), None)
    measurement = Measurement.from_runs(
        timed, strategy=case.strategy.name, settings=case.settings, models=workload.names,
        batch=workload_config.batch, provider="/".join(sorted(providers)), mismatch=mismatch,
        provider_options=workload.provider_options, **model_facts)
    benchmark.extra_info.update(measurement.extra_info())
    record(measurement)
    assert mismatch is None, f"{case.id}: outputs differ from the serial reference: {mismatch}"
