"""Opening strategies under pytest (skipped with the reason when they cannot run here), and
what the harness itself costs: the same sessions timed in a bare loop next to `serial`, and
how a session ends: SIGTERM the way Ctrl-C does (cleanly), and only complete benchmarks saved.

Python's default for SIGTERM is to die on the spot, skipping every `finally`, fixture
teardown and `close()`: worker processes would be orphaned and shared memory left in
/dev/shm. CI runners send SIGTERM on cancel and time-out, so the session turns it into a
KeyboardInterrupt raised in the main thread; strategies stop their lanes, kill their
workers and unlink their memory on the way out, and pytest exits with status 2
(interrupted). A second SIGTERM during that clean-up is handled by the default again.
"""

from __future__ import annotations

import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

import pytest

from bench.measure.metrics import median_ratio_interval
from strategies import Strategy, StrategyUnavailable, ThreadSettings, Workload


@contextmanager
def opened(cls: type[Strategy], workload: Workload, settings: ThreadSettings | None = None,
           **kwargs: Any) -> Iterator[Strategy]:
    """Open a strategy for the duration of the block and always close it.

    A strategy that raises StrategyUnavailable in `open` (no GPU, an onnxruntime without the
    needed API, models that cannot be merged) skips the test with its reason; it is never
    dropped silently.
    """
    strategy = cls(workload, settings, **kwargs)
    try:
        strategy.open()
    except StrategyUnavailable as reason:
        strategy.close()
        pytest.skip(str(reason))
    except BaseException:
        strategy.close()
        raise
    try:
        yield strategy
    finally:
        strategy.stop()  # lanes still running (an interrupt, a failed lane) end at their next frame
        strategy.close()


def bare_loop_s(sessions: Sequence[Any], input_names: Sequence[str], frames: Sequence[Any],
                clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds to run every session on every frame, as `serial` does, with nothing around it:
    no arrivals, call records, output lists, error wrapping, hooks or sampler."""
    start = clock()
    for frame in range(len(frames[0])):
        for session, name, model_frames in zip(sessions, input_names, frames, strict=True):
            session.run(None, {name: model_frames[frame]})
    return clock() - start


@dataclass(frozen=True)
class HarnessOverhead:
    """The benchmark's timed rounds against bare loops over the same sessions and arrays,
    one bare loop just before each timed round (so both see the same machine load)."""

    harness_s: float  # median wall of the timed rounds, as the table reports it
    bare_s: float  # median of the bare loops
    rounds: int
    interval: tuple[float, float] | None = None  # 95% bootstrap interval of the fraction; None: one round

    @classmethod
    def of(cls, harness_walls: Sequence[float], bare_walls: Sequence[float]) -> HarnessOverhead:
        if not harness_walls or not bare_walls:
            raise ValueError("harness overhead needs at least one timed round and one bare loop.")
        interval = None
        if len(harness_walls) > 1 and len(bare_walls) > 1:
            low, high = median_ratio_interval(bare_walls, harness_walls)
            interval = (low - 1, high - 1)
        return cls(statistics.median(harness_walls), statistics.median(bare_walls), len(bare_walls), interval)

    @property
    def fraction(self) -> float:
        """How much longer the harness took than the bare loop (0.02 = 2 %; negative: within noise)."""
        return self.harness_s / self.bare_s - 1 if self.bare_s > 0 else 0.0

    def line(self, label: str) -> str:
        spread = ""
        if self.interval is not None:
            low, high = self.interval
            spread = f", 95% CI {low:+.1%} to {high:+.1%}" + (": within the rounds' noise" if low <= 0 <= high else "")
        return (f"harness overhead of {label}: {self.fraction:+.1%}{spread} (timed rounds {self.harness_s:.4f} s, "
                f"bare loop over the same sessions {self.bare_s:.4f} s, medians of {self.rounds} paired rounds)")


class Terminated(KeyboardInterrupt):
    """The session received SIGTERM."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    # Restore the default first: a second SIGTERM while cleaning up ends the process.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise Terminated(f"received {signal.Signals(signum).name}; stopping the run and cleaning up.")


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises `Terminated` (a KeyboardInterrupt) in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def keep_complete(benchmarks: list, complete: set[str]) -> list[str]:
    """Remove from pytest-benchmark's `benchmarks` list every benchmark whose test did not complete.

    pytest-benchmark adds a benchmark to the list when its timing starts and marks it failed
    only on an ordinary exception: a benchmark stopped by Ctrl-C or SIGTERM in its warm-up
    (no rounds: saving it crashes on empty statistics) or in its timed rounds (some rounds,
    none of fanbench's extra_info) would be saved as if complete, and so would one whose
    outputs differ from serial's. `complete` holds the node ids whose test passed, teardown
    included. Returns the names of the benchmarks removed.
    """
    removed = [bench.name for bench in benchmarks if bench.fullname not in complete]
    benchmarks[:] = [bench for bench in benchmarks if bench.fullname in complete]
    return removed
