"""One benchmark, from opening its strategy to its Measurement: `BenchmarkRun`.

Whatever runs a benchmark's strategy goes through it: the timed rounds (pytest-benchmark's `pedantic`,
or in turns: bench/interleave.py) and each capacity probe (capacity.py `Probe`) run a schedule through
`runner` (the one call a timed round times) and check the outputs against serial's with `check_of`.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from bench.cases import Case
from bench.measure import harness
from bench.measure.capacity import (
    MIN_INTERARRIVAL_S,
    Probe,
    ProbeProgress,
    expected_probes,
    rounds_probe,
    search,
    upper_bound,
)
from bench.measure.equivalence import Calibration, RoundCheck
from bench.measure.harness import HarnessOverhead, bare_loop, frame_seconds
from bench.measure.limits import PackingLimit, time_limit
from bench.measure.measurement import Measurement, build_measurement
from bench.measure.metrics import frame_latencies
from bench.measure.rounds import RoundHooks, warmup_frames
from bench.measure.sampler import ResourceSummary
from bench.measure.scenarios import OFFLINE, SPREAD, STREAMING, Scenario, stream_reference
from bench.options import RunOptions
from strategies import Outputs, RunResult, RunTimeout, Schedule, Strategy, StrategyError, Workload


@dataclass(frozen=True)
class RunInputs:
    """What every benchmark of one `pytest bench` run is given (fixture `run_inputs`, bench/conftest.py)."""

    options: RunOptions
    workload: Workload
    reference: Sequence[Sequence[Outputs]]  # serial's outputs per model per workload frame
    calibration: Calibration  # what "equal to serial" allows, per model
    model_facts: Mapping[str, Any]  # model_flops, model_set_hash
    packing_limit: PackingLimit
    gpu_absent: str | None  # why the GPU metrics are absent
    recorded: Sequence[Measurement] = ()  # the run's measurements so far: the capacity search's ceiling


def round_limit(options: RunOptions, workload: Workload, scenario: Scenario) -> float:
    """A round's time limit, counted from when a stream's last frame arrives."""
    return time_limit(options.time_limit, workload.frame_count * scenario.streams, len(workload.models)) \
        + workload.frame_count * scenario.period


@dataclass
class Rounds:
    """What a benchmark's rounds gave, run in a row (`BenchmarkRun.in_a_row`) or in turns (bench/interleave.py)."""

    check: RoundCheck
    warm_check: RoundCheck  # the warm-up rounds' check: serial's outputs of their first frames
    runs: list[RunResult] = field(default_factory=list)  # every full round: the check goes through them
    warmups: list[RunResult] = field(default_factory=list)  # the warm-up rounds (WARMUP_FRAMES a camera)
    timed: list[RunResult] = field(default_factory=list)
    walls: list[float] = field(default_factory=list)  # in turns: the timer's seconds around each timed run
    starts: list[float] = field(default_factory=list)  # in turns: when each timed round began, s after the first
    bare: list[list[float]] = field(default_factory=list)  # serial offline: a bare loop before each timed round
    providers: set[str] = field(default_factory=set)
    strategy_info: dict[str, Any] = field(default_factory=dict)
    resources: ResourceSummary | None = None
    skipped: str | None = None  # in turns: StrategyUnavailable's reason
    failed: StrategyError | None = None
    capacity: dict[str, Any] | None = None

    @property
    def mismatch(self) -> str | None:
        return self.check.mismatch or self.warm_check.mismatch


class BenchmarkRun:
    """One benchmark (a case in a scenario), from opening its strategy to its Measurement. `rounds`: rounds
    already run elsewhere (in turns); by default it collects its own."""

    def __init__(self, inputs: RunInputs, case: Case, scenario: Scenario, rounds: Rounds | None = None) -> None:
        self.inputs, self.case, self.scenario = inputs, case, scenario
        self.schedule = scenario.schedule(inputs.workload.frame_count)  # several cameras (None: one, or offline)
        cameras = scenario.streams if self.schedule is not None else 1
        run_frames = len(self.schedule) if self.schedule is not None else inputs.workload.frame_count
        self.warmup_frames = warmup_frames(run_frames // cameras, cameras)
        self.rounds = rounds if rounds is not None else Rounds(self.check_of(self.schedule),
                                                               self.check_of(self.schedule, self.warmup_frames))
        self.strategy: Strategy | None = None
        self.overhead: HarnessOverhead | None = None

    @contextlib.contextmanager
    def opened(self) -> Iterator[Strategy]:
        """The strategy open for the block; skips the test with the reason where it cannot run here."""
        with harness.opened(self.case.strategy, self.inputs.workload, self.case.settings,
                            **dict(self.case.options)) as strategy:
            self.strategy = strategy
            try:
                yield strategy
            finally:
                self.strategy = None

    def open(self) -> None:
        """Open the strategy outside pytest (the rounds in turns); what `open` raises (StrategyUnavailable
        where it cannot run here) propagates, the strategy closed."""
        strategy = self.case.strategy(self.inputs.workload, self.case.settings, **dict(self.case.options))
        try:
            strategy.open()
        except BaseException:
            strategy.close()
            raise
        self.strategy = strategy

    def close(self) -> None:
        """Stop (lanes still running end at their next frame) and close the strategy `open` opened. Idempotent."""
        strategy, self.strategy = self.strategy, None
        if strategy is not None:
            try:
                strategy.stop()
            finally:
                strategy.close()

    def runner(self, schedule: Schedule | None, *, time_limit: float, period: float = 0.0,
               late_after: float | None = None, late_budget: int = 0, frames: int | None = None) -> Callable[[], RunResult]:
        """One run of the opened strategy on `schedule`'s arrivals (its first `frames`), bound before any clock
        starts: a timed round times this call and nothing else."""
        if self.strategy is None:
            raise RuntimeError(f"{self.case.id}: the strategy is not open; run it inside `opened()` or after `open()`.")
        return functools.partial(self.strategy.run, period=period, time_limit=time_limit, schedule=schedule,
                                 late_after=late_after, late_budget=late_budget, frames=frames)

    def check_of(self, schedule: Schedule | None, frames: int | None = None) -> RoundCheck:
        """The check of runs on `schedule` (its first `frames`) against serial's outputs of the frames they carry."""
        inputs = self.inputs
        reference = stream_reference(inputs.reference, schedule)
        if frames is not None:
            reference = [model[:frames] for model in reference]
        return RoundCheck(reference, inputs.workload.names, inputs.calibration.tolerances)

    def round_runner(self, warmup: bool = False) -> Callable[[], RunResult]:
        """One round: the scenario's arrivals within the round's time limit (a warm-up round: its first frames)."""
        return self.runner(self.schedule, period=self.scenario.period,
                           time_limit=round_limit(self.inputs.options, self.inputs.workload, self.scenario),
                           frames=self.warmup_frames if warmup else None)

    def check(self) -> None:
        """Check the rounds not yet checked (outside the timer), then drop their outputs."""
        self.rounds.check(self.rounds.runs)
        self.rounds.warm_check(self.rounds.warmups)

    @property
    def takes_bare_loops(self) -> bool:
        """serial offline: its timed rounds are paired with bare loops (HarnessOverhead)."""
        return self.case.strategy.name == "serial" and self.scenario.period == 0

    def bare_loop(self) -> None:
        """The same sessions over the same arrays with nothing around them, before a timed round."""
        frames = [model.frames for model in self.inputs.workload.models]
        self.rounds.bare.append(bare_loop(self.strategy.sessions, self.strategy.input_names, frames))

    def note_strategy(self) -> None:
        """What the opened strategy reports of itself: the providers it really ran on, its own set-up."""
        self.rounds.providers = set(self.strategy.providers_used)
        self.rounds.strategy_info = self.strategy.info()

    def in_a_row(self, benchmark: Any, hooks: RoundHooks) -> None:
        """Open the strategy, time its warm-up and timed rounds with `benchmark.pedantic`, search its capacity
        on the same opened strategy, and close it. The timed region is the strategy's run alone: `hooks` take
        serial's bare loops, sample, draw the progress bar and check outputs in pedantic's setup and teardown."""
        rounds, options = self.rounds, self.inputs.options
        hooks.after_round = self.check
        with self.opened():
            if self.takes_bare_loops:
                hooks.before_timed_round = self.bare_loop
            run, warm = self.round_runner(), self.round_runner(warmup=True)
            # --benchmark-disable calls the target once, as its only round (and never `teardown`).
            warms = not options.benchmark_disabled

            def one_round() -> None:
                if warms and hooks.warming_up:
                    rounds.warmups.append(warm())
                else:
                    rounds.runs.append(run())

            try:
                benchmark.pedantic(one_round, setup=hooks.setup, teardown=hooks.teardown,
                                   rounds=options.rounds, warmup_rounds=options.warmup, iterations=1)
            except StrategyError as error:  # leaving `with` stops the strategy: lanes end, workers are killed
                rounds.failed = error  # a model that failed, a worker that died or hung, the time limit: one line
            if rounds.failed is None:  # outside the timer and the sampler: probes of more cameras (docs/capacity.md)
                rounds.capacity = self.search_capacity(hooks)
            self.note_strategy()
        self.check()  # rounds no teardown saw (--benchmark-disable runs once, without one)
        rounds.timed = rounds.runs[-options.rounds:]
        rounds.resources = hooks.resources() if rounds.failed is None else None

    def search_capacity(self, hooks: RoundHooks) -> dict[str, Any] | None:
        """Capacity.as_dict() of this streaming benchmark (None where no search is asked for). Its own rounds are
        the search's first probe; the offline benchmark of the same case, recorded just before, gives the ceiling."""
        inputs, scenario, case, rounds = self.inputs, self.scenario, self.case, self.rounds
        options, workload = inputs.options, inputs.workload
        if not options.capacity or scenario.name != STREAMING or not rounds.runs:
            return None
        self.check()  # every round checked (and its outputs dropped) before the probes start
        fps, deadline = scenario.fps, scenario.deadline_s
        offline = [m.timing.fps for m in inputs.recorded if m.settings.scenario == OFFLINE
                   and m.key == f"{case.strategy.name}-{case.settings.label}" and m.equivalence.equivalent]
        upper = upper_bound(offline[-1] if offline else None, fps)
        latencies = np.concatenate([frame_latencies(run, scenario.period, self.schedule)
                                    for run in rounds.runs[-options.rounds:]])
        known = rounds_probe(scenario.streams, latencies, deadline, rounds.mismatch)
        if upper is not None and known.passed:
            upper = max(upper, scenario.streams)
        if scenario.phase == SPREAD:  # no more cameras than the OS timers can pace apart
            most = int(1 / (fps * MIN_INTERARRIVAL_S))
            upper = most if upper is None else min(upper, most)
        probe = Probe(fps=fps, deadline_s=deadline, seconds=options.probe_seconds, phase=scenario.phase,
                      workload_frames=workload.frame_count,
                      time_limit_s=time_limit(options.time_limit, workload.frame_count, len(workload.models)),
                      videos=scenario.videos)
        progress = ProbeProgress(hooks.progress, expected_probes(upper)) if hooks.progress is not None else None
        try:
            found = search(lambda cameras: probe(self, cameras), upper, fps=fps, deadline_s=deadline,
                           phase=scenario.phase, known={scenario.streams: known},
                           known_confirmed=options.rounds >= 2, on_probe=progress)
        except StrategyError as error:  # a model that failed, a worker that died: as in the timed rounds
            pytest.fail(f"{case.id}: capacity probe: {error}", pytrace=False)
        finally:
            with contextlib.suppress(Exception):
                if progress is not None:
                    progress.close()
        return found.as_dict()

    def measure(self, benchmark: Any) -> Measurement:
        """This benchmark's Measurement, stored into `benchmark.extra_info`; a failed round fails the test here."""
        rounds, case, inputs = self.rounds, self.case, self.inputs
        if rounds.failed is not None:
            advice = " Raise the limit with --time-limit SECONDS if the run is just slow." \
                if isinstance(rounds.failed, RunTimeout) else ""
            pytest.fail(f"{case.id}: {rounds.failed}{advice}", pytrace=False)
        if rounds.bare:
            self.overhead = HarnessOverhead.of([frame_seconds(run) for run in rounds.timed], rounds.bare,
                                               [run.wall_s for run in rounds.timed])
        workload, calibration = inputs.workload, inputs.calibration
        measurement = build_measurement(
            rounds.timed, strategy=case.strategy.name, settings=case.settings, strategy_options=dict(case.options),
            scenario=self.scenario, models=workload.names,
            batch=inputs.options.workload.batch, provider="/".join(sorted(rounds.providers)), mismatch=rounds.mismatch,
            **inputs.model_facts, provider_options=workload.provider_options, tolerance=str(calibration),
            equivalence=calibration.as_dict(), resources=rounds.resources, sample_rate=inputs.options.sample_rate,
            gpu_absent=inputs.gpu_absent, packing_limit=inputs.packing_limit, overhead=self.overhead,
            strategy_info=rounds.strategy_info, workload_frames=workload.frame_count, capacity=rounds.capacity)
        benchmark.extra_info.update(measurement.extra_info())
        return measurement

    def overhead_line(self) -> str | None:
        """serial offline: what the harness costs, as the summary prints it after the table (None elsewhere)."""
        return self.overhead.line(self.case.id) if self.overhead is not None else None
