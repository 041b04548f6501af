"""Around each benchmark round: sample resources during the timed rounds, show progress after each.

`benchmark.pedantic` calls `setup` and `teardown` around every round outside its timer, so the sampler
and the progress bar add nothing to the measured time. Progress moves once per round, not from inside a
run: strategies have no hook in their loop, and a thread polling them would compete with what it watches.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import IO, Any

from tqdm import tqdm

from bench.measure.sampler import ResourceSummary, Sampler, SamplerProcess


class Progress:
    """A tqdm bar of frames (or `unit`s) done, drawn with pytest's output capture suspended; quiet unless stderr is a
    terminal (tqdm's `disable=None`), so CI logs and pytester runs stay clean."""

    def __init__(self, total_frames: int, label: str,
                 suspend_capture: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
                 file: IO[str] | None = None, disable: bool | None = None, unit: str = "frame") -> None:
        self.total, self.label, self.suspend_capture = total_frames, label, suspend_capture
        self.file, self.disable, self.unit = file, disable, unit
        self.bar: Any = None

    def start(self) -> None:
        """Show the bar at 0 as the first round starts (made at its end, tqdm would rate it per microsecond)."""
        if self.bar is None:
            with self.suspend_capture():
                # miniters=1: every update draws at once, so tqdm's monitor thread never needs to.
                # smoothing 0: the average rate over the rounds so far, not the last round's.
                self.bar = tqdm(total=self.total, desc=self.label, unit=self.unit, smoothing=0,
                                leave=False, file=self.file or sys.stderr, disable=self.disable, miniters=1,
                                mininterval=0)

    def advance(self, frames: int) -> None:
        self.start()
        with self.suspend_capture():
            self.bar.update(frames)

    def close(self) -> None:
        if self.bar is not None:
            with self.suspend_capture():
                self.bar.close()
            self.bar = None


# A warm-up round runs each camera's first frames: enough for first-call allocations, pools, workers and batch
# shapes (batched's k=4, dynamic_batch's 8), without pacing a whole stream (docs/measurements.md, "Warm-up").
WARMUP_FRAMES = 8


def warmup_frames(frames_per_camera: int, cameras: int = 1) -> int:
    """A warm-up round's frames: each of `cameras` cameras' first WARMUP_FRAMES (all its frames when fewer)."""
    return min(WARMUP_FRAMES, frames_per_camera) * cameras


def frames_per_benchmark(frames_per_camera: int, warmup: int, rounds: int) -> int:
    """The frames a progress bar counts for one benchmark: its warm-up rounds and its timed rounds."""
    return warmup_frames(frames_per_camera) * warmup + frames_per_camera * rounds


class RoundHooks:
    """`setup`/`teardown` for `benchmark.pedantic`: the first `warmup` rounds are not sampled."""

    def __init__(self, warmup: int, frames_per_round: int, sampler: Sampler | SamplerProcess | None = None,
                 progress: Progress | None = None, frames_per_warmup: int | None = None) -> None:
        self.warmup, self.frames_per_round = warmup, frames_per_round
        self.frames_per_warmup = frames_per_round if frames_per_warmup is None else frames_per_warmup
        self.sampler, self.progress = sampler, progress
        self.rounds_done = 0
        # Before each timed round, outside the timer and the sampler: serial's bare loop.
        self.before_timed_round: Callable[[], None] | None = None
        self.after_round: Callable[[], None] | None = None  # e.g. check the round's outputs, then drop them

    @property
    def warming_up(self) -> bool:
        """The round about to run, or running, is a warm-up round."""
        return self.rounds_done < self.warmup

    def setup(self) -> None:
        if self.progress is not None:
            self.progress.start()
        if self.rounds_done < self.warmup:
            return
        if self.before_timed_round is not None:
            self.before_timed_round()
        if self.sampler is not None:
            self.sampler.start()

    def teardown(self, *args: Any, **kwargs: Any) -> None:
        if self.sampler is not None:
            self.sampler.stop()
        frames = self.frames_per_warmup if self.warming_up else self.frames_per_round
        self.rounds_done += 1
        if self.after_round is not None:
            self.after_round()
        if self.progress is not None:
            self.progress.advance(frames)

    def resources(self) -> ResourceSummary | None:
        """What the timed rounds used; stops a sampler still running (--benchmark-disable: no `teardown`)."""
        if self.sampler is None:
            return None
        self.sampler.stop()
        return self.sampler.summary()

    def close(self) -> None:
        """Stop what a failed round left running. Idempotent."""
        try:
            if self.sampler is not None:
                self.sampler.stop()
        finally:
            if self.progress is not None:
                self.progress.close()
