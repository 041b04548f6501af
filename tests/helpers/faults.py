"""Ways to make a strategy fail for real, for the fault tests.

Kept out of the strategies: a worker process indexes `FaultyFrames` like any frame source,
and a `FaultySession` stands in for an onnxruntime session in this process. Both are
importable by name, so spawned workers can unpickle them.
"""

from __future__ import annotations

import ctypes
import functools
import itertools
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from strategies.processes import Processes

FAULTS = ("exit", "segfault", "raise", "hang")


def fault(how: str) -> None:
    """Fail in this process the way `how` says."""
    if how == "exit":
        os._exit(3)
    if how == "segfault":
        ctypes.string_at(0)  # reads address 0: a real SIGSEGV
    if how == "raise":
        raise RuntimeError("injected fault")
    if how == "hang":
        time.sleep(3600)  # stuck: ignores deadlines and stop requests alike
    raise ValueError(f"unknown fault {how!r}; choose from {FAULTS}.")


def never_ready(conn: Any) -> None:
    """A worker that hangs before it answers that it is ready (a driver or file system stuck)."""
    from strategies.runtime.workers import detach_from_terminal_signals

    detach_from_terminal_signals()
    fault("hang")


class FaultyFrames:
    """A worker's frame source that faults when frame `at` is read."""

    def __init__(self, frames: np.ndarray, at: int, how: str):
        self.frames, self.at, self.how = frames, at, how

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, frame: int) -> np.ndarray:
        if frame == self.at:
            fault(self.how)
        return self.frames[frame]


class FaultyProcesses(Processes):
    """`processes` whose worker for model `model` faults on frame `at`: (model, at, how)."""

    name = "processes"
    fault_at: tuple[int, int, str] = (0, 0, "raise")

    def frame_sources(self) -> list[Any]:
        model, at, how = self.fault_at
        return [FaultyFrames(m.frames, at, how) if index == model else m.frames
                for index, m in enumerate(self.workload.models)]


class FaultySession:
    """Wraps a session; its `at`-th call (0-based) runs `action` instead of the model."""

    def __init__(self, session: Any, at: int, action: Callable[[], Any]):
        self.session, self.at, self.action, self.calls = session, at, action, 0

    def run(self, output_names: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        call, self.calls = self.calls, self.calls + 1
        if call == self.at:
            self.action()
        return self.session.run(output_names, feeds)


# --- pausing `pytest bench` at a phase, for the signal tests -----------------------------------------
# Loaded as a plugin (`pytest bench -p tests.helpers.faults`): with FANBENCH_TEST_PAUSE=PHASE the run
# stops at PHASE, creates the file FANBENCH_TEST_PAUSED names and waits there for the test's signal, so a
# test hits a phase for certain instead of guessing it with a sleep.

PAUSE, PAUSED = "FANBENCH_TEST_PAUSE", "FANBENCH_TEST_PAUSED"
PAUSE_S = 600.0  # a bound only: the test signals long before (and kills the group if it fails midway)
# video: the synthetic video for --model without --video is written, not yet decoded (start-up);
# round:N: the Nth run of a worker pool's strategy is sent to its workers (N = 1: the dry run);
# report: the report is half written (its charts drawn, not its timelines).
PHASES = ("video", "round:N", "report")


def pause_at(phase: str) -> None:
    """Where FANBENCH_TEST_PAUSE names `phase`: say so in the FANBENCH_TEST_PAUSED file, then wait
    for a signal (its handler raising ends the sleep)."""
    if os.environ.get(PAUSE) == phase:
        Path(os.environ[PAUSED]).write_text(f"{os.getpid()}\n")
        time.sleep(PAUSE_S)


def _after(function: Callable[..., Any], phase: Callable[[], str]) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = function(*args, **kwargs)
        pause_at(phase())
        return result
    return wrapper


def pytest_configure(config: Any) -> None:
    """Put the pauses in (this is a test run's own process: nothing else sees them)."""
    if not os.environ.get(PAUSE):
        return
    import bench.report.markdown as report
    import fixtures.user as user
    from strategies.runtime.workers import WorkerPool

    runs = itertools.count(1)
    user.write_synthetic_video = _after(user.write_synthetic_video, lambda: "video")
    WorkerPool.send_all = _after(WorkerPool.send_all,
                                 lambda: f"round:{next(runs)}")  # start and stop go through start/close
    report.render_timeline = _after(report.render_timeline, lambda: "report")
