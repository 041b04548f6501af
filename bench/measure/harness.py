"""Opening strategies under pytest, what the harness itself costs (the same sessions timed in a bare
loop next to `serial`), and only complete benchmarks saved (SIGTERM and Ctrl-C: bench/interrupts.py)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from bench.measure.metrics import median_ratio_interval
from strategies import RunResult, Strategy, StrategyError, StrategyUnavailable, ThreadSettings, Workload


@contextmanager
def opened(cls: type[Strategy], workload: Workload, settings: ThreadSettings | None = None,
           **kwargs: Any) -> Iterator[Strategy]:
    """Open a strategy for the duration of the block and always close it. StrategyUnavailable in `open`
    (no GPU, an onnxruntime without the needed API, models that cannot be merged) skips the test with its
    reason, never silently; StrategyError (it failed to open) fails the test with its one line."""
    strategy = cls(workload, settings, **kwargs)
    failed: StrategyError | None = None
    try:
        strategy.open()
    except StrategyUnavailable as reason:
        strategy.close()
        pytest.skip(str(reason))
    except StrategyError as error:  # a worker or Ray that could not start: one line, not a traceback
        strategy.close()
        failed = error
    except BaseException:
        strategy.close()
        raise
    if failed is not None:  # outside `except`: no "during handling of the above exception" chain
        pytest.fail(str(failed), pytrace=False)
    try:
        yield strategy
    finally:
        strategy.stop()  # lanes still running (an interrupt, a failed lane) end at their next frame
        strategy.close()


def bare_loop(sessions: Sequence[Any], input_names: Sequence[str], frames: Sequence[Any],
              clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Each frame's seconds when every session runs on every frame as `serial` does, with nothing around
    it (no arrivals, call records, output lists, error wrapping, hooks or sampler)."""
    seconds: list[float] = []
    previous = clock()
    for frame in range(len(frames[0])):
        for session, name, model_frames in zip(sessions, input_names, frames, strict=True):
            session.run(None, {name: model_frames[frame]})
        now = clock()
        seconds.append(now - previous)
        previous = now
    return seconds


def frame_seconds(run: RunResult) -> list[float]:
    """Each frame's seconds in a run of one frame at a time (`serial`), from the previous frame's last call's
    end (the run's start) to its own's: the harness's work between calls and frames is in it."""
    ends: dict[int, float] = {}
    for call in run.calls:
        for frame in range(call.first_frame, call.first_frame + call.frames):
            ends[frame] = max(ends.get(frame, call.end), call.end)
    seconds, previous = [], run.start
    for frame in sorted(ends):
        seconds.append(ends[frame] - previous)
        previous = ends[frame]
    return seconds


@dataclass(frozen=True)
class HarnessOverhead:
    """The timed rounds against a bare loop just before each (so both see the same machine load), read from
    each round's median frame, not the walls: the harness's cost moves every frame, while a core taken
    away for a few milliseconds by another process moves the wall by as much and more, not the median."""

    harness_s: float  # median wall of the timed rounds, as the table reports it
    bare_s: float  # median wall of the bare loops
    rounds: int
    harness_frame_s: float  # median over the rounds of each round's median frame time
    bare_frame_s: float
    interval: tuple[float, float] | None = None  # 95% bootstrap interval of the fraction; None: one round

    @classmethod
    def of(cls, harness_frames: Sequence[Sequence[float]], bare_frames: Sequence[Sequence[float]],
           harness_walls: Sequence[float] | None = None) -> HarnessOverhead:
        """From each round's frame times; `harness_walls`: the timed rounds' walls (default: their sums)."""
        if not harness_frames or not bare_frames or not all(harness_frames) or not all(bare_frames):
            raise ValueError("harness overhead needs at least one timed round and one bare loop, each with frames.")
        harness_medians = [statistics.median(round_) for round_ in harness_frames]
        bare_medians = [statistics.median(round_) for round_ in bare_frames]
        interval = None
        if len(harness_medians) > 1 and len(bare_medians) > 1:
            low, high = median_ratio_interval(bare_medians, harness_medians)
            interval = (low - 1, high - 1)
        walls = harness_walls if harness_walls is not None else [sum(round_) for round_ in harness_frames]
        return cls(statistics.median(walls), statistics.median(sum(round_) for round_ in bare_frames), len(bare_frames),
                   statistics.median(harness_medians), statistics.median(bare_medians), interval)

    @property
    def fraction(self) -> float:
        """How much longer a frame took with the harness than without (0.02 = 2 %; negative: within noise)."""
        return self.harness_frame_s / self.bare_frame_s - 1 if self.bare_frame_s > 0 else 0.0

    def line(self, label: str) -> str:
        spread = ""
        if self.interval is not None:
            low, high = self.interval
            spread = f", 95% CI {low:+.1%} to {high:+.1%}" + (": within the rounds' noise" if low <= 0 <= high else "")
        return (f"harness overhead of {label}: {self.fraction:+.1%}{spread} (median frame {self.harness_frame_s * 1e3:.3f} ms "
                f"timed, {self.bare_frame_s * 1e3:.3f} ms in a bare loop over the same sessions, {self.rounds} paired "
                f"rounds; walls {self.harness_s:.4f} s and {self.bare_s:.4f} s)")


def keep_complete(benchmarks: list, complete: set[str]) -> list[str]:
    """Remove from `benchmarks` those whose test did not pass (`complete`: node ids, teardown included);
    returns their names. pytest-benchmark marks one failed only on an ordinary exception: one stopped by
    Ctrl-C or SIGTERM (no rounds, or no extra_info), or whose outputs differ, would be saved as complete."""
    removed = [bench.name for bench in benchmarks if bench.fullname not in complete]
    benchmarks[:] = [bench for bench in benchmarks if bench.fullname in complete]
    return removed
