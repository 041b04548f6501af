"""`--interleave`: the rounds of every selected benchmark in turns (A1 B1 C1 A2 B2 C2 ...).

Benchmarks timed one after another see whatever load other jobs put on the machine while each
one runs: a job that starts halfway through slows only the later strategies. Taken in turns,
as asv's `--interleave-rounds` does, a change of load lands on every strategy's rounds alike.

How: the first benchmark test to run asks for the session fixture `interleaved`, which opens
every selected benchmark's strategy (before any clock, as the sequential path does), runs the
warm-up rounds in turns, then the timed rounds in turns, checks each round's outputs against
serial's as soon as it is done, and closes everything. Each test then takes its own rounds:
pytest-benchmark gets the walls through its public `benchmark` marker's `timer` (a clock that
replays them to `benchmark.pedantic`), and the measurement is built from the stored runs as
usual. So every saved record still holds its own rounds, walls, latencies, resources and check.

Every strategy is open at once: every one's sessions, worker processes and shared frames are in
memory together. Opening one per turn would restart workers (seconds) and make every timed round
a cold one, so the run is refused, before anything opens, when the estimate does not fit.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from bench.cases import Case
from bench.measure.equivalence import RoundCheck, ToleranceChoice
from bench.measure.harness import bare_loop
from bench.measure.limits import time_limit
from bench.measure.rounds import Progress
from bench.measure.sampler import ResourceSummary, SamplerProcess
from bench.measure.scenarios import Scenario, stream_reference
from bench.options import RunOptions
from bench.plugin import options_of, state_of
from fixtures.workloads import _size, available_memory, estimate_memory
from strategies import RunResult, Strategy, StrategyError, StrategyUnavailable, Workload


def round_limit(options: RunOptions, workload: Workload, scenario: Scenario) -> float:
    """A single round's time limit: a stream takes frames / fps by design, so its limit counts from
    when the last frame arrives."""
    return time_limit(options.time_limit, workload.frame_count * scenario.streams, len(workload.models)) \
        + workload.frame_count * scenario.period


@dataclass(frozen=True)
class Entry:
    key: str  # the test's node id
    case: Case
    scenario: Scenario


@dataclass
class BenchmarkRounds:
    """One benchmark's share of the run: what the sequential path would have collected."""

    check: RoundCheck
    runs: list[RunResult] = field(default_factory=list)  # every round, warm-ups too: the check goes through them
    timed: list[RunResult] = field(default_factory=list)
    walls: list[float] = field(default_factory=list)  # the timer's seconds around each timed run, as pedantic's
    starts: list[float] = field(default_factory=list)  # when each timed round began, s after the first round
    bare: list[list[float]] = field(default_factory=list)  # serial offline: a bare loop before each timed round
    providers: set[str] = field(default_factory=set)
    strategy_info: dict[str, Any] = field(default_factory=dict)
    resources: ResourceSummary | None = None
    skipped: str | None = None  # StrategyUnavailable's reason
    failed: StrategyError | None = None

    @property
    def mismatch(self) -> str | None:
        return self.check.mismatch


class _Keyed:
    """One benchmark's sampler in the shared sampler process (selected before each use)."""

    def __init__(self, process: SamplerProcess, key: str) -> None:
        self.process, self.key = process, key
        process.new(key)

    def start(self) -> None:
        self.process.select(self.key)
        self.process.start()

    def stop(self) -> None:
        self.process.stop()

    def summary(self) -> ResourceSummary:
        self.process.select(self.key)
        return self.process.summary()


def memory_refusal(workload: Workload, strategies: int, available: int | None = None) -> str | None:
    """One line when `strategies` open at once would not fit in memory, else None.

    Each open strategy holds sessions of every model (two per model where it has lanes) and, for
    the process strategies, a copy of the frames (shared memory or a Manager); the workload and
    serial's reference are already in memory (and so out of `available`)."""
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


def run_in_turns(entries: Sequence[Entry], workload: Workload, reference: Sequence[Any], names: Sequence[str],
                 tolerance: ToleranceChoice, *, rounds: int, warmup: int, limit: Callable[[Scenario], float],
                 sampler: SamplerProcess | None = None, progress: Progress | None = None,
                 clock: Callable[[], float] = time.perf_counter,
                 order: list[tuple[str, str, int]] | None = None) -> dict[str, BenchmarkRounds]:
    """Open every entry's strategy, run warm-up then timed rounds in turns, close them all.

    `order`, when given, receives (key, "warmup" | "timed", round number) as each round starts. A
    strategy that cannot run here is skipped with its reason; one whose round fails stops there
    (its failure kept) while the others go on. Anything else (Ctrl-C, SIGTERM) ends the run,
    every opened strategy stopped and closed."""
    schedules = {entry.key: entry.scenario.schedule(workload.frame_count) for entry in entries}  # several cameras
    results = {entry.key: BenchmarkRounds(RoundCheck(stream_reference(reference, schedules[entry.key]), names, tolerance))
               for entry in entries}
    with contextlib.ExitStack() as stack:
        opened: dict[str, Strategy] = {}
        for entry in entries:
            strategy = entry.case.strategy(workload, entry.case.settings, **dict(entry.case.options))
            try:
                strategy.open()
            except StrategyUnavailable as reason:
                strategy.close()
                results[entry.key].skipped = str(reason)
                continue
            except BaseException:
                strategy.close()
                raise
            stack.callback(_close, strategy)
            opened[entry.key] = strategy
        samplers = {key: _Keyed(sampler, key) for key in opened} if sampler is not None else {}
        start = clock()
        for kind, count in (("warmup", warmup), ("timed", rounds)):
            for number in range(1, count + 1):
                for entry in entries:
                    strategy = opened.get(entry.key)
                    if strategy is None:
                        continue
                    result = results[entry.key]
                    timed = kind == "timed"
                    if timed and entry.case.strategy.name == "serial" and entry.scenario.period == 0:
                        result.bare.append(bare_loop(strategy.sessions, strategy.input_names,
                                                     [model.frames for model in workload.models]))
                    if order is not None:
                        order.append((entry.key, kind, number))
                    each = samplers.get(entry.key) if timed else None
                    if each is not None:
                        each.start()
                    try:
                        began = clock()
                        run = strategy.run(period=entry.scenario.period, time_limit=limit(entry.scenario),
                                           schedule=schedules[entry.key])
                        ended = clock()
                    except StrategyError as error:
                        result.failed = error
                        del opened[entry.key]
                        _close(strategy)
                        continue
                    finally:
                        if each is not None:
                            each.stop()
                    result.runs.append(run)
                    result.check(result.runs)  # outside the timer, then its outputs are dropped
                    if timed:
                        result.timed.append(run)
                        result.walls.append(ended - began)
                        result.starts.append(began - start)
                    if progress is not None:
                        progress.advance(workload.frame_count)
        for key, strategy in opened.items():
            results[key].providers = set(strategy.providers_used)
            results[key].strategy_info = strategy.info()
            if key in samplers and results[key].timed:
                results[key].resources = samplers[key].summary()
    return results


def _close(strategy: Strategy) -> None:
    try:
        strategy.stop()  # lanes still running (an interrupt, a failed lane) end at their next frame
    finally:
        strategy.close()


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
    results: dict[str, BenchmarkRounds]
    clock: ReplayClock
    order: list[tuple[str, str, int]]

    def take(self, key: str) -> BenchmarkRounds:
        return self.results.pop(key)

    def replay(self, benchmark: Any, rounds: BenchmarkRounds) -> None:
        """Hand one benchmark's walls to pytest-benchmark (its fixture, timed by the replaying clock
        the `benchmark` marker gave it). A failed benchmark raises its failure inside `pedantic`,
        from its setup (before any clock reading), so pytest-benchmark marks it failed, as a round
        failing in the sequential path does."""
        if rounds.failed is not None:
            benchmark.pedantic(lambda: None, setup=_raising(rounds.failed), rounds=1, iterations=1)
        self.clock.load(rounds.walls)
        benchmark.pedantic(lambda: None, rounds=len(rounds.walls), iterations=1)
        if not self.clock.done:
            raise RuntimeError(f"pytest-benchmark read {len(rounds.walls) - len(self.clock.readings) // 2} of "
                               f"{len(rounds.walls)} interleaved rounds; its timer is not the replaying one.")


def _raising(error: BaseException) -> Callable[[], None]:
    def raise_it() -> None:
        raise error
    return raise_it


@pytest.fixture(scope="session")
def interleaved(request: pytest.FixtureRequest, workload, reference, calibration, run_options: RunOptions,
                sampler_process: SamplerProcess | None) -> Interleaved:
    """Every selected benchmark's rounds, run in turns when the first benchmark test asks for them."""
    entries = [Entry(item.nodeid, item.callspec.params["case"], item.callspec.params["scenario"])
               for item in request.session.items if is_benchmark(item)]
    refusal = memory_refusal(workload, len(entries))
    if refusal is not None:
        pytest.exit(refusal, returncode=pytest.ExitCode.USAGE_ERROR)
    progress = None
    if run_options.progress:
        capture = request.config.pluginmanager.getplugin("capturemanager")
        progress = Progress(workload.frame_count * (run_options.warmup + run_options.rounds) * len(entries),
                            f"{len(entries)} benchmarks in turns",
                            capture.global_and_fixture_disabled if capture is not None else contextlib.nullcontext)
    order: list[tuple[str, str, int]] = []
    try:
        results = run_in_turns(entries, workload, reference, workload.names, calibration.tolerances,
                               rounds=run_options.rounds, warmup=run_options.warmup,
                               limit=lambda scenario: round_limit(run_options, workload, scenario),
                               sampler=sampler_process, progress=progress, order=order)
    finally:
        if progress is not None:
            progress.close()
    return Interleaved(results, request.config.stash[REPLAY], order)
