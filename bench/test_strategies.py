"""Time every strategy on the workload and check its outputs against the serial reference."""

from __future__ import annotations

import pytest

from bench.measure.capacity_case import search_in_benchmark
from bench.measure.harness import HarnessOverhead, bare_loop, frame_seconds, opened
from bench.measure.limits import time_limit
from bench.measure.measurement import build_measurement
from bench.measure.scenarios import STREAMING
from strategies import RoundCheck, RunResult, RunTimeout, StrategyError
from strategies.streams import stream_reference


def test_strategy(benchmark, case, scenario, workload, reference, calibration, model_facts, run_options, run_state,
                  record, packing_limit, round_hooks, gpu_probe):
    if scenario.name == STREAMING and not case.strategy.per_frame:
        pytest.skip(f"{case.strategy.name} has no per-frame completion (per_frame = False): it cannot serve a stream.")
    runs: list[RunResult] = []
    schedule = scenario.schedule(workload.frame_count)  # several cameras (None: one, or offline)
    # A stream takes frames / fps by design: the limit counts from when the last frame arrives.
    limit = time_limit(run_options.time_limit, workload.frame_count * scenario.streams, len(workload.models)) \
        + workload.frame_count * scenario.period
    failed: StrategyError | None = None
    bare: list[list[float]] = []  # serial only: the same sessions over the same arrays, no harness (frame times)
    # Each round's outputs are checked once it is done, outside the timer, then dropped.
    check = RoundCheck(stream_reference(reference, schedule), workload.names, calibration.tolerances)
    round_hooks.after_round = lambda: check(runs)
    with opened(case.strategy, workload, case.settings, **dict(case.options)) as strategy:
        if case.strategy.name == "serial" and scenario.period == 0:
            frames = [model.frames for model in workload.models]
            round_hooks.before_timed_round = lambda: bare.append(
                bare_loop(strategy.sessions, strategy.input_names, frames))
        # Sessions, pools, processes and event loops are built on opening, before the clock.
        # round_hooks sample resources and advance the progress bar outside the timed region.
        try:
            benchmark.pedantic(lambda: runs.append(strategy.run(period=scenario.period, time_limit=limit, schedule=schedule)),
                               setup=round_hooks.setup, teardown=round_hooks.teardown,
                               rounds=run_options.rounds, warmup_rounds=run_options.warmup,
                               iterations=1)
        except StrategyError as error:  # leaving `with` stops the strategy: lanes end, workers are killed
            failed = error  # a model that failed, a worker that died or hung, the time limit: said in one line
        capacity = None if failed is not None else search_in_benchmark(
            strategy, case, scenario, workload, reference, calibration, run_options, run_state, runs, check, round_hooks)
        providers = set(strategy.providers_used)
        strategy_info = strategy.info()
    if failed is not None:
        advice = " Raise the limit with --time-limit SECONDS if the run is just slow." if isinstance(failed, RunTimeout) else ""
        pytest.fail(f"{case.id}: {failed}{advice}", pytrace=False)
    check(runs)  # rounds no teardown saw (--benchmark-disable runs once, without one)
    timed = runs[-run_options.rounds:]
    mismatch = check.mismatch
    overhead = HarnessOverhead.of([frame_seconds(run) for run in timed], bare, [run.wall_s for run in timed]) \
        if bare else None
    measurement = build_measurement(
        timed, strategy=case.strategy.name, settings=case.settings, strategy_options=dict(case.options),
        scenario=scenario, per_frame=case.strategy.per_frame, models=workload.names, batch=run_options.workload.batch,
        provider="/".join(sorted(providers)), mismatch=mismatch, **model_facts,
        provider_options=workload.provider_options, tolerance=str(calibration), equivalence=calibration.as_dict(),
        resources=round_hooks.resources(), sample_rate=run_options.sample_rate,
        gpu_absent=gpu_probe.reason, packing_limit=packing_limit, overhead=overhead,
        strategy_info=strategy_info, workload_frames=workload.frame_count, capacity=capacity)
    benchmark.extra_info.update(measurement.extra_info())
    if overhead is not None:
        run_state.overhead_lines.append(overhead.line(case.id))
    record(measurement)
    assert mismatch is None, f"{case.id}: outputs differ from the serial reference: {mismatch}"
