"""`--interleave`: the rounds of every selected benchmark in turns (A1 B1 C1 A2 B2 C2 ...), as asv's
`--interleave-rounds`: a change of load from other jobs lands on every strategy's rounds alike, not only
on the strategies timed after it started.

The first benchmark test asks for the session fixture `interleaved`: every selected benchmark's
BenchmarkRun (bench/measure/run.py) opens its strategy before any clock, all run the warm-up then the timed
rounds in turns (bare loop, arrivals, time limit, check against serial), and all are closed. Each test then
hands its own walls to pytest-benchmark through the `benchmark` marker's `timer` (a clock replaying them to
`benchmark.pedantic`), so every saved record holds its own rounds, walls, latencies, resources and check.
Every strategy is open at once (one per turn would restart workers and make every round a cold one), so a
run whose memory estimate does not fit is refused before anything opens."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from bench.cases import Case
from bench.measure.rounds import Progress, warmup_frames
from bench.measure.run import BenchmarkRun, Rounds, RunInputs
from bench.measure.sampler import SamplerProcess
from bench.measure.scenarios import Scenario
from bench.plugin import options_of, progress_bar, state_of
from fixtures.workloads import _size, available_memory, estimate_memory
from strategies import StrategyError, StrategyUnavailable, Workload


@dataclass(frozen=True)
class Entry:
    key: str  # the test's node id
    case: Case
    scenario: Scenario


def memory_refusal(workload: Workload, strategies: int, available: int | None = None) -> str | None:
    """One line when `strategies` open at once would not fit in memory, else None. Each holds sessions of
    every model (two per model with lanes) and, for the process strategies, a copy of the frames; the
    workload and serial's reference are already in memory (so out of `available`)."""
    arrays = {id(model.frames): model.frames for model in workload.models}
    estimate = estimate_memory(workload.frame_count, [array.shape[1:] for array in arrays.values()], (0,),
                               [model.path.stat().st_size for model in workload.models])
    per_strategy = estimate.session_bytes + estimate.frames * estimate.input_bytes
    needed = strategies * per_strategy
    available = available_memory() if available is None else available
    if needed <= available:
        return None
    return (f"--interleave: opening the {strategies} benchmarks' strategies at once needs about {_size(needed)} of "
            f"memory (about {_size(per_strategy)} each: sessions and a copy of the frames) but only "
            f"{_size(available)} is available; select fewer with --strategy, lower --frames, or drop --interleave.")


def run_in_turns(entries: Sequence[Entry], inputs: RunInputs, *, sampler: SamplerProcess | None = None,
                 progress: Progress | None = None, clock: Callable[[], float] = time.perf_counter,
                 order: list[tuple[str, str, int]] | None = None) -> dict[str, Rounds]:
    """Open every entry's strategy, run warm-up then timed rounds in turns, close them all; `order` receives
    (key, "warmup" | "timed", round number) as each round starts. A strategy that cannot run here is skipped;
    one whose round fails stops there, its failure kept. Anything else (Ctrl-C, SIGTERM) ends the run, every
    opened strategy closed."""
    runs = {entry.key: BenchmarkRun(inputs, entry.case, entry.scenario) for entry in entries}
    with contextlib.ExitStack() as stack:
        opened: dict[str, BenchmarkRun] = {}
        for key, run in runs.items():
            try:
                run.open()
            except StrategyUnavailable as reason:
                run.rounds.skipped = str(reason)
                continue
            stack.callback(run.close)
            opened[key] = run
        runners = {(key, timed): run.round_runner(warmup=not timed) for key, run in opened.items() for timed in (False, True)}
        if sampler is not None:
            for key in opened:
                sampler.new(key)  # one sampler per benchmark in the shared process, selected before each use
        start = clock()
        for timed, count in ((False, inputs.options.warmup), (True, inputs.options.rounds)):
            for number in range(1, count + 1):
                for key, run in list(opened.items()):
                    rounds = run.rounds
                    if timed and run.takes_bare_loops:
                        run.bare_loop()
                    if order is not None:
                        order.append((key, "timed" if timed else "warmup", number))
                    if timed and sampler is not None:
                        sampler.select(key)
                        sampler.start()
                    try:
                        began = clock()
                        result = runners[key, timed]()
                        ended = clock()
                    except StrategyError as error:
                        rounds.failed = error
                        del opened[key]
                        run.close()
                        continue
                    finally:
                        if timed and sampler is not None:
                            sampler.stop()
                    (rounds.runs if timed else rounds.warmups).append(result)
                    run.check()  # outside the timer, then its outputs are dropped
                    if timed:
                        rounds.timed.append(result)
                        rounds.walls.append(ended - began)
                        rounds.starts.append(began - start)
                    if progress is not None:
                        frames = inputs.workload.frame_count
                        progress.advance(frames if timed else warmup_frames(frames))
        for key, run in opened.items():
            run.note_strategy()
            if sampler is not None and run.rounds.timed:
                sampler.select(key)
                run.rounds.resources = sampler.summary()
    return {key: run.rounds for key, run in runs.items()}


class ReplayClock:
    """A timer for pytest-benchmark that replays stored walls: `pedantic` reads it before and after
    each round, and the difference is the wall. Given through the public `benchmark` marker."""

    def __init__(self) -> None:
        self.readings: list[float] = []

    def load(self, walls: Sequence[float]) -> None:
        if self.readings:
            raise RuntimeError(f"the replay clock still holds {len(self.readings)} readings; a benchmark did not replay.")
        self.readings = [reading for wall in walls for reading in (0.0, wall)]

    def __call__(self) -> float:
        return self.readings.pop(0)

    __name__ = "interleaved_replay"  # what pytest-benchmark saves as the run's timer

    @property
    def done(self) -> bool:
        return not self.readings


REPLAY = pytest.StashKey[ReplayClock]()


def is_benchmark(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    return callspec is not None and {"case", "scenario"} <= set(callspec.params) \
        and getattr(item, "originalname", None) == "test_strategy"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not options_of(config).interleave:
        return
    clock = config.stash[REPLAY] = ReplayClock()
    for item in items:
        if is_benchmark(item):
            item.add_marker(pytest.mark.benchmark(timer=clock))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Say that the memory columns are not one strategy's: every strategy was open during every round."""
    measured = len(state_of(config).measurements)
    if options_of(config).interleave and measured:
        terminalreporter.write_line(
            f"fanbench: --interleave: the rounds of {measured} benchmarks ran in turns, every strategy open at once: "
            "the memory columns (PSS, USS, GPU MB) are of all of them together, not of one strategy; "
            "run without --interleave to measure a strategy's memory.")


@dataclass
class Interleaved:
    results: dict[str, Rounds]
    clock: ReplayClock

    def replayed(self, benchmark: Any, key: str) -> Rounds:
        """The rounds of the benchmark test `key`, taken, their walls handed to pytest-benchmark (unless its
        strategy could not run here). A failed one's failure is for its measurement to report, as in a row."""
        rounds = self.results.pop(key)
        if rounds.skipped is None:
            with contextlib.suppress(StrategyError):
                self.replay(benchmark, rounds)
            benchmark.extra_info["interleaved_round_starts_s"] = rounds.starts
        return rounds

    def replay(self, benchmark: Any, rounds: Rounds) -> None:
        """Hand one benchmark's walls to pytest-benchmark, whose `benchmark` marker gave it the replaying clock.
        A failure is raised in `pedantic`'s setup, before any reading, so pytest-benchmark marks it failed."""
        if (failure := rounds.failed) is not None:
            def raise_failure() -> None:
                raise failure
            benchmark.pedantic(lambda: None, setup=raise_failure, rounds=1, iterations=1)
        self.clock.load(rounds.walls)
        benchmark.pedantic(lambda: None, rounds=len(rounds.walls), iterations=1)
        if not self.clock.done:
            raise RuntimeError(f"pytest-benchmark read {len(rounds.walls) - len(self.clock.readings) // 2} of "
                               f"{len(rounds.walls)} interleaved rounds; its timer is not the replaying one.")


@pytest.fixture(scope="session")
def interleaved(request: pytest.FixtureRequest, run_inputs: RunInputs,
                sampler_process: SamplerProcess | None) -> Interleaved:
    """Every selected benchmark's rounds, run in turns when the first benchmark test asks for them."""
    entries = [Entry(item.nodeid, item.callspec.params["case"], item.callspec.params["scenario"])
               for item in request.session.items if is_benchmark(item)]
    workload, run_options = run_inputs.workload, run_inputs.options
    if refusal := memory_refusal(workload, len(entries)):
        pytest.exit(refusal, returncode=pytest.ExitCode.USAGE_ERROR)
    progress = progress_bar(request.config, run_options, workload.frame_count, f"{len(entries)} benchmarks in turns",
                            len(entries))
    try:
        results = run_in_turns(entries, run_inputs, sampler=sampler_process, progress=progress)
    finally:
        if progress is not None:
            progress.close()
    return Interleaved(results, request.config.stash[REPLAY])
