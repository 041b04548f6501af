"""Time every strategy on the workload and check its outputs against the serial reference."""

from __future__ import annotations

import contextlib

import pytest

from bench.interleave import round_limit
from bench.measure.capacity_case import search_in_benchmark
from bench.measure.equivalence import RoundCheck
from bench.measure.harness import HarnessOverhead, bare_loop, frame_seconds, opened
from bench.measure.measurement import build_measurement
from bench.measure.scenarios import stream_reference
from strategies import RunResult, RunTimeout, StrategyError


def test_strategy(benchmark, case, scenario, workload, reference, calibration, model_facts, run_options, run_state,
                  record, packing_limit, round_hooks, gpu_probe, request):
    if run_options.interleave:  # every benchmark's rounds were run in turns (bench/interleave.py); take this one's
        interleaved = request.getfixturevalue("interleaved")
        rounds = interleaved.take(request.node.nodeid)
        if rounds.skipped is not None:
            pytest.skip(rounds.skipped)
        failed = rounds.failed
        with contextlib.suppress(StrategyError):  # reported below, as a failure of the sequential path is
            interleaved.replay(benchmark, rounds)
        benchmark.extra_info["interleaved_round_starts_s"] = rounds.starts
        timed, bare, mismatch = rounds.timed, rounds.bare, rounds.mismatch
        providers, strategy_info, resources = rounds.providers, rounds.strategy_info, rounds.resources
        capacity = None  # --interleave turns the search off (bench/options.py)
    else:
        timed, bare, mismatch, providers, strategy_info, failed, capacity = _rounds_in_a_row(
            benchmark, case, scenario, workload, reference, calibration, model_facts, run_options, run_state,
            round_hooks)
        resources = round_hooks.resources() if failed is None else None
    if failed is not None:
        advice = " Raise the limit with --time-limit SECONDS if the run is just slow." if isinstance(failed, RunTimeout) else ""
        pytest.fail(f"{case.id}: {failed}{advice}", pytrace=False)
    overhead = HarnessOverhead.of([frame_seconds(run) for run in timed], bare, [run.wall_s for run in timed]) \
        if bare else None
    measurement = build_measurement(
        timed, strategy=case.strategy.name, settings=case.settings, strategy_options=dict(case.options),
        scenario=scenario, models=workload.names, batch=run_options.workload.batch,
        provider="/".join(sorted(providers)), mismatch=mismatch, **model_facts,
        provider_options=workload.provider_options, tolerance=str(calibration), equivalence=calibration.as_dict(),
        resources=resources, sample_rate=run_options.sample_rate,
        gpu_absent=gpu_probe.reason, packing_limit=packing_limit, overhead=overhead,
        strategy_info=strategy_info, workload_frames=workload.frame_count, capacity=capacity)
    benchmark.extra_info.update(measurement.extra_info())
    if overhead is not None:
        run_state.overhead_lines.append(overhead.line(case.id))
    record(measurement)
    assert mismatch is None, f"{case.id}: outputs differ from the serial reference: {mismatch}"


def _rounds_in_a_row(benchmark, case, scenario, workload, reference, calibration, model_facts, run_options, run_state,
                     round_hooks):
    """This benchmark's rounds, timed by pedantic, then its capacity search on the same opened strategy:
    (timed runs, bare loops, mismatch, providers, info, failure, capacity)."""
    runs: list[RunResult] = []
    failed: StrategyError | None = None
    capacity = None
    bare: list[list[float]] = []  # serial only: the same sessions over the same arrays, no harness (frame times)
    schedule = scenario.schedule(workload.frame_count)  # several cameras (None: one, or offline)
    # Each round's outputs are checked once it is done, outside the timer, then dropped.
    check = RoundCheck(stream_reference(reference, schedule), workload.names, calibration.tolerances)
    round_hooks.after_round = lambda: check(runs)
    limit = round_limit(run_options, workload, scenario)
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
        if failed is None:  # outside the timer and the sampler: probes of more cameras (docs/capacity.md)
            capacity = search_in_benchmark(strategy, case, scenario, workload, reference, calibration, run_options,
                                           run_state, runs, check, round_hooks)
        providers = set(strategy.providers_used)
        strategy_info = strategy.info()
    check(runs)  # rounds no teardown saw (--benchmark-disable runs once, without one)
    return runs[-run_options.rounds:], bare, check.mismatch, providers, strategy_info, failed, capacity

