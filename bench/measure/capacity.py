"""How many cameras at `--fps` a strategy serves: probes, the pass rule, and the search.

A probe is one stream of N cameras through the benchmark's opened strategy, checked as its rounds are;
it passes when p99 latency is within the deadline and at most 1% of frames miss it (MLPerf LoadGen's
rule), outputs equal to serial's. The search bisects below offline fps / fps cameras (no strategy serves
more) to the largest passing N, and runs that boundary probe once more.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.measure.metrics import deadline_misses, frame_latencies
from bench.measure.rounds import Progress
from bench.measure.scenarios import SPREAD, camera_schedule
from strategies import RunTimeout, Schedule

if TYPE_CHECKING:
    from bench.measure.run import BenchmarkRun

MISS_FRACTION = 0.01  # LoadGen: at most 1% of queries over the latency bound
PERCENTILE = 99
BOUND_SLACK = 0.05  # offline fps measured on a noisy machine: the ceiling allows 5% more
# Below this gap between two arrivals the OS timers cannot place them (sleeps on Linux overshoot
# by 50-100 us; measured in docs/capacity.md): a schedule that fine would time the timer.
MIN_INTERARRIVAL_S = 0.001


def passes(latencies: np.ndarray, deadline_s: float, miss_fraction: float = MISS_FRACTION) -> bool:
    """The pass rule: p99 latency within the deadline and at most `miss_fraction` of frames over it."""
    values = np.asarray(latencies, dtype=float)
    if values.size == 0:
        raise ValueError("a probe needs at least one frame.")
    return (float(np.percentile(values, PERCENTILE)) <= deadline_s
            and deadline_misses(values, deadline_s) <= miss_fraction * values.size)


def miss_budget(frames: int, miss_fraction: float = MISS_FRACTION) -> int:
    """The most frames that may miss for a probe of `frames` frames to pass."""
    return math.floor(miss_fraction * frames)


def frames_per_camera(seconds: float, fps: float) -> int:
    """Frames each camera streams so that a probe lasts at least `seconds`."""
    return max(2, math.ceil(seconds * fps))


def check_arrival_rate(cameras: int, fps: float, phase: str) -> None:
    """ValueError when `cameras` spread cameras at `fps` arrive faster than the OS timers can pace."""
    if phase == SPREAD and cameras > 1 and 1 / (cameras * fps) < MIN_INTERARRIVAL_S:
        raise ValueError(f"{cameras} cameras at {fps:g} fps arrive every {1e3 / (cameras * fps):.3f} ms, "
                         f"under the {MIN_INTERARRIVAL_S * 1e3:g} ms the OS timers can pace; use fewer cameras "
                         "or --stream-phase aligned.")


@dataclass(frozen=True)
class ProbeResult:
    cameras: int
    frames: int  # run frames in the probe
    passed: bool
    p50_s: float | None  # None: stopped early, no latency measured
    p99_s: float | None
    misses: int | None
    mismatch: str | None = None  # outputs that differ from serial's (a probe that fails for it)
    stopped: str | None = None  # why the probe stopped early (already past 1% misses, the time limit)


@dataclass(frozen=True)
class Probe:
    """One stream through a benchmark's opened strategy; `time_limit_s` bounds it beyond its own span."""

    fps: float
    deadline_s: float
    seconds: float
    phase: str
    workload_frames: int
    time_limit_s: float
    early_stop: bool = True
    videos: int = 1  # camera c shows video c mod videos (bench/measure/scenarios.py camera_schedule)

    def schedule(self, cameras: int) -> Schedule:
        return camera_schedule(cameras, self.fps, frames_per_camera(self.seconds, self.fps), self.workload_frames,
                               self.phase, self.videos)

    def __call__(self, run: BenchmarkRun, cameras: int) -> ProbeResult:
        schedule = self.schedule(cameras)
        budget = miss_budget(len(schedule))
        play = run.runner(schedule, time_limit=schedule.span_s + self.time_limit_s,
                          late_after=self.deadline_s if self.early_stop else None, late_budget=budget)
        try:
            result = play()
        except RunTimeout as error:  # past 1% misses already, or past the limit: a failed probe
            return ProbeResult(cameras, len(schedule), False, None, None, None, stopped=str(error))
        check = run.check_of(schedule)
        check([result])  # and drops the outputs
        return rounds_probe(cameras, frame_latencies(result, 0.0, schedule), self.deadline_s, check.mismatch)


@dataclass(frozen=True)
class Capacity:
    """The search's answer: the most cameras served, and every probe it ran, in order."""

    cameras: int
    fps: float
    deadline_s: float
    phase: str
    upper: int | None  # the ceiling from offline throughput (None: none known, found by doubling)
    probes: tuple[ProbeResult, ...] = field(default=())

    @property
    def at_capacity(self) -> ProbeResult | None:
        """The last passing probe at `cameras` (None when it is 0)."""
        return next((p for p in reversed(self.probes) if p.cameras == self.cameras and p.passed), None)

    @property
    def aggregate_fps(self) -> float:
        return self.cameras * self.fps

    def as_dict(self) -> dict[str, Any]:
        """What a benchmark's record stores (Measurement.capacity): numbers only."""
        best = self.at_capacity
        return {"cameras": self.cameras, "fps": self.fps, "aggregate_fps": self.aggregate_fps,
                "deadline_s": self.deadline_s, "phase": self.phase, "upper": self.upper,
                "p50_s": best.p50_s if best else None, "p99_s": best.p99_s if best else None,
                "probes": [asdict(probe) for probe in self.probes]}


def upper_bound(offline_fps: float | None, fps: float, slack: float = BOUND_SLACK) -> int | None:
    """The most cameras offline throughput allows (plus `slack` for noise); None when unknown."""
    if offline_fps is None or offline_fps <= 0:
        return None
    return math.floor(offline_fps * (1 + slack) / fps)


def search(probe: Callable[[int], ProbeResult], upper: int | None, *, fps: float, deadline_s: float,
           phase: str = SPREAD, known: Mapping[int, ProbeResult] | None = None, known_confirmed: bool = True,
           most: int = 4096, on_probe: Callable[[ProbeResult], None] | None = None) -> Capacity:
    """The largest number of cameras whose probe passes, assuming more cameras never pass where fewer fail;
    without an `upper` bound, doubles until a probe fails. `known`: probes already run (the benchmark's
    streaming rounds); a known pass needs no re-run when `known_confirmed` (it was several rounds)."""
    results: list[ProbeResult] = []
    seen: dict[int, ProbeResult] = dict(known or {})
    confirmed = {n for n, result in seen.items() if result.passed and known_confirmed}

    def run(cameras: int) -> bool:
        result = probe(cameras)
        results.append(result)
        seen[cameras] = result
        if on_probe is not None:
            on_probe(result)
        return result.passed

    def passed(cameras: int) -> bool:
        return seen[cameras].passed if cameras in seen else run(cameras)

    low = 0  # passes: no cameras, no frames
    if upper is None:  # no ceiling known: 1, 2, 4, ... until one fails
        high = 1
        while high <= most and passed(high):
            low, high = high, high * 2
    else:
        high = upper + 1  # fails: beyond the offline ceiling
    while high - low > 1:
        middle = (low + high) // 2
        if passed(middle):
            low = middle
        else:
            high = middle
    # The boundary once more: a lucky pass is not a capacity. A failed re-run steps down.
    while low > 0 and low not in confirmed:
        if run(low):
            confirmed.add(low)
        else:
            low -= 1
    # The known probes (the benchmark's rounds) come first: they are the search's first probe.
    return Capacity(low, fps, deadline_s, phase, upper, tuple([*(known or {}).values(), *results]))


def capacity_efficiency(capacity: Mapping[str, Any], best_offline_fps: float | None) -> float | None:
    """Aggregate fps served over the best offline throughput of the same run (None when unknown)."""
    if not capacity or not best_offline_fps:
        return None
    return capacity["aggregate_fps"] / best_offline_fps


def rounds_probe(cameras: int, latencies: np.ndarray, deadline_s: float, mismatch: str | None) -> ProbeResult:
    """Frame latencies read as a probe at `cameras` cameras (one probe's, or the benchmark's timed rounds')."""
    values = np.asarray(latencies, dtype=float)
    p50, p99 = (float(value) for value in np.percentile(values, (50, PERCENTILE)))
    return ProbeResult(cameras, int(values.size), passes(values, deadline_s) and mismatch is None, p50, p99,
                       deadline_misses(values, deadline_s), mismatch=mismatch)


class ProbeProgress(Progress):
    """A bar per capacity search, one step per probe, drawn as the rounds' bar is."""

    def __init__(self, rounds: Progress, total: int) -> None:
        super().__init__(total, f"{rounds.label} capacity", rounds.suspend_capture, rounds.file, rounds.disable, "probe")
        self.start()

    def __call__(self, result: ProbeResult) -> None:
        with self.suspend_capture():
            if self.bar.n >= self.bar.total:
                self.bar.total = self.bar.n + 1
            self.bar.set_postfix_str(f"{result.cameras} cameras: {'pass' if result.passed else 'fail'}")
            self.bar.update(1)


def expected_probes(upper: int | None) -> int:
    """About how many probes a search takes: the bisection's steps plus the boundary's re-run."""
    return (math.ceil(math.log2(upper + 1)) if upper else 6) + 1
