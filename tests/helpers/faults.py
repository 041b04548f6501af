"""Ways to make a strategy fail for real, for the fault tests.

Kept out of the strategies: a worker process indexes `FaultyFrames` like any frame source,
and a `FaultySession` stands in for an onnxruntime session in this process. Both are
importable by name, so spawned workers can unpickle them.
"""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Callable
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
