"""The one interface every strategy implements, and the records a run produces.

A strategy is opened (sessions, pools, processes and event loops are built: outside the
clock), run any number of times (each run processes every frame through every model and
returns the outputs per model per frame plus the start and end of every `session.run`
call), and closed (everything it built is released, in every outcome).
"""

from __future__ import annotations

import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

Clock = Callable[[], float]
Outputs = tuple[np.ndarray, ...]


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class StrategyError(RuntimeError):
    """A strategy failed while running; the message names the strategy, the model and the frame."""


class RunTimeout(StrategyError):
    """A run went past its time limit."""


class StrategyUnavailable(RuntimeError):
    """This strategy cannot run this workload with these settings; the message says why.

    Raised by `open` (never mid-run); the benchmark turns it into a skip with the reason.
    """


class RunStopped(StrategyError):
    """A run was stopped from outside (the strategy was closed mid-run, e.g. on Ctrl-C)."""


@dataclass(frozen=True)
class ThreadSettings:
    """onnxruntime's threading knobs for every session a strategy builds.

    `None` leaves a knob at onnxruntime's default (intra-op threads = cores, spinning on).
    """

    intra_op: int | None = None
    inter_op: int | None = None
    parallel: bool = False  # ORT_PARALLEL execution mode instead of ORT_SEQUENTIAL
    spinning: bool | None = None

    def __post_init__(self) -> None:
        for name in ("intra_op", "inter_op"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"ThreadSettings.{name} must be at least 1 or None (onnxruntime's default), got {value}.")

    @property
    def ort_defaults(self) -> bool:
        return self == ThreadSettings()

    @property
    def label(self) -> str:
        """Short id used in benchmark names, e.g. 'intra2-spin0' or 'ort-defaults'."""
        if self.ort_defaults:
            return "ort-defaults"
        parts = []
        if self.intra_op is not None:
            parts.append(f"intra{self.intra_op}")
        if self.inter_op is not None:
            parts.append(f"inter{self.inter_op}")
        if self.parallel:
            parts.append("parallel")
        if self.spinning is not None:
            parts.append(f"spin{int(self.spinning)}")
        return "-".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {"intra_op_num_threads": self.intra_op, "inter_op_num_threads": self.inter_op,
                "execution_mode": "parallel" if self.parallel else "sequential",
                "allow_spinning": self.spinning, "ort_defaults": self.ort_defaults}


def split_cores(model_count: int, cores: int | None = None) -> ThreadSettings:
    """The cores shared out between models that run at the same time (at least one intra-op
    thread each), spinning off: models x intra-op threads stays near the core count instead
    of models x cores, and no idle pool spins on a core another model needs."""
    return ThreadSettings(intra_op=max(1, (cores or usable_cores()) // model_count), inter_op=1, spinning=False)


@dataclass(frozen=True)
class ModelInput:
    """One model of the workload and the tensor it takes on each frame."""

    name: str  # shown in tables and history: the file name for a user's model
    path: Path
    frames: np.ndarray = field(repr=False)  # (frames, *input shape), float32

    @property
    def frame_count(self) -> int:
        return int(self.frames.shape[0])


@dataclass(frozen=True)
class Workload:
    """Every model with its per-frame inputs, and the provider to run them on."""

    models: tuple[ModelInput, ...]
    provider: str = "cpu"  # 'cpu' or 'cuda'
    # CUDA provider options as sorted (key, value) pairs (see strategies.cuda); used when provider is 'cuda'.
    cuda_options: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("a workload needs at least one model.")
        counts = {model.frame_count for model in self.models}
        if len(counts) != 1:
            raise ValueError(f"every model must get the same number of frames, got {sorted(counts)}.")
        if self.provider not in ("cpu", "cuda"):
            raise ValueError(f"provider must be 'cpu' or 'cuda', got {self.provider!r}.")

    @property
    def frame_count(self) -> int:
        return self.models[0].frame_count

    @property
    def names(self) -> list[str]:
        return [model.name for model in self.models]

    @property
    def provider_options(self) -> dict[str, str]:
        """What to pass to `make_session` as provider_options: the CUDA options on CUDA, else nothing."""
        return dict(self.cuda_options) if self.provider == "cuda" else {}


@dataclass(frozen=True)
class CallRecord:
    """One `session.run`: which model, which frames, when, and on which lane (thread/process)."""

    model: int
    first_frame: int
    frames: int
    start: float
    end: float
    lane: str

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class RunResult:
    """What one run of a strategy returns."""

    outputs: list[list[Outputs]]  # outputs[model][frame]
    calls: list[CallRecord]
    start: float  # clock reading when the first frame became available
    wall_s: float

    def per_model_cumulative_s(self, model_count: int) -> list[float]:
        totals = [0.0] * model_count
        for call in self.calls:
            totals[call.model] += call.duration
        return totals

    def drop_outputs(self) -> None:
        """Release the output arrays once they have been checked; the model and frame counts
        stay (the metrics read them), as empty outputs."""
        self.outputs = empty_outputs(len(self.outputs), len(self.outputs[0]) if self.outputs else 0)

    def overlap(self) -> float:
        """Sum of per-call durations over wall time: above 1 means calls overlapped."""
        return sum(call.duration for call in self.calls) / self.wall_s if self.wall_s > 0 else 0.0


def pause(seconds: float, stop: threading.Event | None) -> bool:
    """Sleep `seconds`, waking at once when `stop` is set; True when woken by `stop`.

    The one place a strategy waits for a frame to arrive (tests replace it with a fake clock's sleep).
    """
    if stop is None:
        time.sleep(seconds)
        return False
    return stop.wait(seconds)


@dataclass(frozen=True)
class Arrivals:
    """When each frame becomes available, and when the run must give up.

    Offline (period 0) every frame is there at the start; streaming, frame i arrives at
    start + i * period, like a camera. Every strategy calls `wait_for(frame)` before it
    touches a frame, which is also where a run past its deadline is stopped.
    """

    start: float
    period: float = 0.0  # seconds between frames; 0 means every frame is there at the start
    deadline: float | None = None  # clock reading after which the run fails with RunTimeout
    # Set by `Strategy.stop()` (closing mid-run, a failed lane): every lane ends at its next frame.
    stop: threading.Event | None = field(default=None, compare=False, repr=False)

    def time_of(self, frame: int) -> float:
        return self.start + frame * self.period

    def check_deadline(self, clock: Clock = time.perf_counter) -> None:
        """Raise RunStopped once the run was stopped, RunTimeout once it is past its deadline."""
        if self.stop is not None and self.stop.is_set():
            raise RunStopped("the run was stopped before it finished.")
        if self.deadline is not None and clock() > self.deadline:
            raise RunTimeout(f"the run passed its time limit of {self.deadline - self.start:.1f} s.")

    def stop_all(self) -> None:
        """Make every lane of the run raise RunStopped at its next `wait_for`."""
        if self.stop is not None:
            self.stop.set()

    def wait_for(self, frame: int, clock: Clock = time.perf_counter) -> None:
        """Block until `frame` has arrived (no wait offline); fail once past the deadline or stopped."""
        self.check_deadline(clock)
        if self.period <= 0:
            return
        delay = self.time_of(frame) - clock()
        if delay > 0 and pause(delay, self.stop):  # woken early: the run was stopped
            self.check_deadline(clock)


class CallLog:
    """Runs a session call and records its start and end with the given clock."""

    def __init__(self, clock: Clock = time.perf_counter) -> None:
        self.clock = clock
        self.calls: list[CallRecord] = []

    def run(self, session: Any, feeds: dict[str, np.ndarray], model: int, frame: int, lane: str,
            frames: int = 1) -> list[np.ndarray]:
        start = self.clock()
        outputs = session.run(None, feeds)
        # list.append is atomic under the GIL, so threads may share one log.
        self.calls.append(CallRecord(model, frame, frames, start, self.clock(), lane))
        return outputs


class Strategy(ABC):
    """Base class: set up in `open`, process every frame in `_execute`, release in `close`.

    Subclasses implement `_execute`; `open` and `close` are overridden by strategies that
    own sessions, pools or processes. Use as a context manager so `close` always runs.
    """

    name: ClassVar[str]
    #: False for strategies that cannot be served frame by frame (none of the built-in ones).
    per_frame: ClassVar[bool] = True
    #: True for strategies that run every model's call at the same time (threads, processes).
    models_at_once: ClassVar[bool] = False

    def __init__(self, workload: Workload, settings: ThreadSettings | None = None, clock: Clock = time.perf_counter):
        self.workload = workload
        self.settings = settings if settings is not None else self.default_settings(len(workload.models))
        self.clock = clock
        self.providers_used: list[str] = []  # filled by `open` from session.get_providers()
        self._stop = threading.Event()  # set by `stop()`; cleared when a run starts

    @classmethod
    def default_settings(cls, model_count: int, cores: int | None = None) -> ThreadSettings:
        """Settings that keep the busy threads close to the core count: every core for the one
        call in flight, or the cores shared out when every model runs at once."""
        if cls.models_at_once:
            return split_cores(model_count, cores)
        return ThreadSettings(intra_op=cores or usable_cores(), inter_op=1, spinning=False)

    def open(self) -> None:
        """Build what the strategy needs (outside the timed region)."""

    def close(self) -> None:
        """Release everything `open` built. Safe to call twice and after a failed `open`."""

    def stop(self) -> None:
        """Ask a run in progress to end: every lane raises RunStopped at its next frame.

        Called by `__exit__` before `close`, so a run interrupted by Ctrl-C (or failing in
        one lane) does not keep the other lanes running through every remaining frame while
        `close` waits for them. Safe from any thread, and when no run is in progress.
        """
        self._stop.set()

    def __enter__(self) -> Strategy:
        try:
            self.open()
        except BaseException:
            self.stop()
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        self.close()

    def run(self, period: float = 0.0, time_limit: float | None = None) -> RunResult:
        """Process every frame once. With `period` > 0 frames arrive one per period; with
        `time_limit` (seconds) the run fails with RunTimeout once it has taken longer."""
        if time_limit is not None and time_limit <= 0:
            raise ValueError(f"time_limit must be positive seconds or None (no limit), got {time_limit}.")
        self._stop.clear()
        start = self.clock()
        arrivals = Arrivals(start, period, None if time_limit is None else start + time_limit, self._stop)
        outputs, calls = self._execute(arrivals)
        wall = self.clock() - arrivals.start
        return RunResult(outputs=outputs, calls=calls, start=arrivals.start, wall_s=wall)

    @abstractmethod
    def _execute(self, arrivals: Arrivals) -> tuple[list[list[Outputs]], list[CallRecord]]:
        """Run every model on every frame; return outputs[model][frame] and the call records."""


def wait_for_lanes(futures: Sequence[Future[Any]], cancel: Callable[[], None]) -> None:
    """Wait until every lane (a future running one model or one share of the work) is done.

    On the first failure `cancel()` tells the other lanes to end at their next frame (e.g.
    `Arrivals.stop_all`), and that failure is raised once they have ended: the error that
    caused the stop, never the RunStopped it made the others raise. Interrupted (Ctrl-C) the
    lanes are cancelled too.
    """
    try:
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        if any(future.exception() is not None for future in done):
            cancel()
            wait(futures)
    except BaseException:
        cancel()
        raise
    errors = [future.exception() for future in futures if future.exception() is not None]
    if errors:
        raise next((error for error in errors if not isinstance(error, RunStopped)), errors[0])


def empty_outputs(model_count: int, frame_count: int) -> list[list[Outputs]]:
    return [[() for _ in range(frame_count)] for _ in range(model_count)]

