"""The one interface every strategy implements (Strategy), its errors, and when frames arrive (Arrivals)."""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from strategies.records import CallRecord, Outputs, RunResult, Workload
from strategies.settings import ThreadSettings, split_cores, usable_cores

Clock = Callable[[], float]


class StrategyError(RuntimeError):
    """A strategy failed while running; the message names the strategy, the model and the frame."""


class RunTimeout(StrategyError):
    """A run went past its time limit."""


class StrategyUnavailable(RuntimeError):
    """This strategy cannot run this workload with these settings: raised by `open`, shown as a skip."""


class Overloaded(RunTimeout):
    """A stream run stopped early: more of its frames started after their deadline than it may miss."""


class RunStopped(StrategyError):
    """A run was stopped from outside (the strategy was closed mid-run, e.g. on Ctrl-C)."""


def pause(seconds: float, stop: threading.Event | None) -> bool:
    """Sleep `seconds`, waking at once when `stop` is set; True when woken by `stop`. The one place a
    strategy waits for a frame to arrive (tests replace it with a fake clock's sleep)."""
    if stop is None:
        time.sleep(seconds)
        return False
    return stop.wait(seconds)


@dataclass(frozen=True, eq=False)
class Schedule:
    """N cameras feeding one host (bench/measure/scenarios.py camera_schedule): each run frame's arrival
    (seconds after the start, in arrival order), the workload frame it carries, and its camera."""

    times: np.ndarray = field(repr=False)  # float64, one per run frame
    sources: np.ndarray = field(repr=False)  # int64: the workload frame run frame k carries
    cameras: np.ndarray = field(repr=False)  # int64: the camera run frame k came from
    period: float  # one camera's seconds between frames
    phase: str = "spread"  # how the cameras' frames fall in a period (bench/measure/scenarios.py PHASES)

    def __post_init__(self) -> None:
        if not (len(self.times) == len(self.sources) == len(self.cameras)) or len(self.times) == 0:
            raise ValueError("a schedule needs one arrival time, source frame and camera per run frame, at least one.")
        if np.any(np.diff(self.times) < 0):
            raise ValueError("a schedule's arrival times must be in arrival order (non-decreasing).")

    def __len__(self) -> int:
        return len(self.times)

    @property
    def camera_count(self) -> int:
        return int(self.cameras.max()) + 1

    @property
    def span_s(self) -> float:  # from the first arrival to the last
        return float(self.times[-1] - self.times[0])


@dataclass(frozen=True)
class Arrivals:
    """When each frame becomes available, and when the run must give up. Offline (period 0) every frame
    is there at the start; streaming, frame i arrives at start + i * period; with a `schedule`, run
    frame k arrives at start + schedule.times[k] and carries workload frame `source(k)`. Every strategy
    calls `wait_for(frame)` before it touches a frame, which is also where a stopped or late run ends."""

    start: float
    period: float = 0.0  # seconds between frames; 0 means every frame is there at the start
    deadline: float | None = None  # clock reading after which the run fails with RunTimeout
    # Set by `Strategy.stop()` (closing mid-run, a failed lane): every lane ends at its next frame.
    stop: threading.Event | None = field(default=None, compare=False, repr=False)
    schedule: Schedule | None = field(default=None, compare=False, repr=False)  # None: one stream at `period`
    # Early stop of a capacity probe: a frame a lane starts more than `late_after` seconds after
    # it arrived has certainly missed; once more than `late_budget` have, the run raises Overloaded.
    late_after: float | None = None
    late_budget: int = 0
    late: set[int] = field(default_factory=set, compare=False, repr=False)  # frames certainly missed
    frames: int | None = None  # only the run's first `frames` frames (a warm-up round); None: all of them

    @property
    def streaming(self) -> bool:
        return self.period > 0 or self.schedule is not None

    def frame_count(self, workload_frames: int) -> int:
        """Frames in this run: the schedule's, else the workload's; at most `frames`."""
        count = len(self.schedule) if self.schedule is not None else workload_frames
        return count if self.frames is None else min(count, self.frames)

    def source(self, frame: int) -> int:
        return int(self.schedule.sources[frame]) if self.schedule is not None else frame

    def time_of(self, frame: int) -> float:
        if self.schedule is not None:
            return self.start + float(self.schedule.times[frame])
        return self.start + frame * self.period

    def check_deadline(self, clock: Clock = time.perf_counter) -> None:
        """Raise RunStopped once the run was stopped, RunTimeout once it is past its deadline."""
        if self.stop is not None and self.stop.is_set():
            raise RunStopped("the run was stopped before it finished.")
        if self.deadline is not None and clock() > self.deadline:
            raise RunTimeout(f"the run passed its time limit of {self.deadline - self.start:.1f} s.")

    def stop_all(self) -> None:
        """Every lane of the run raises RunStopped at its next `wait_for`."""
        if self.stop is not None:
            self.stop.set()

    def wait_for(self, frame: int, clock: Clock = time.perf_counter) -> None:
        """Block until `frame` has arrived (no wait offline); fail once past the deadline or stopped."""
        self.check_deadline(clock)
        if not self.streaming:
            return
        delay = self.time_of(frame) - clock()
        if delay > 0 and pause(delay, self.stop):  # woken early: the run was stopped
            self.check_deadline(clock)
        elif self.late_after is not None and -delay > self.late_after:
            self.late.add(frame)  # set.add is atomic under the GIL: lanes of one run share the set
            if len(self.late) > self.late_budget:
                self.stop_all()  # the other lanes end at their next frame
                raise Overloaded(f"{len(self.late)} frames started after their {self.late_after * 1e3:.1f} ms "
                                 f"deadline, more than the {self.late_budget} a passing stream may miss.")


class Strategy(ABC):
    """Built in `open` (outside the clock), run any number of times (`_execute`: every frame through every
    model), released in `close` in every outcome; used as a context manager so `close` always runs."""

    name: ClassVar[str]
    #: True for strategies that run every model's call at the same time (threads, processes).
    models_at_once: ClassVar[bool] = False
    #: False for strategies that cannot go on after a run stopped midway (ray closes itself):
    #: their capacity probes run to the end instead of stopping once past 1% misses.
    stops_early: ClassVar[bool] = True

    def __init__(self, workload: Workload, settings: ThreadSettings | None = None, clock: Clock = time.perf_counter):
        self.workload = workload
        self.settings = settings if settings is not None else self.default_settings(len(workload.models))
        self.clock = clock
        self.providers_used: list[str] = []  # filled by `open` from session.get_providers()
        self._stop = threading.Event()  # set by `stop()`; cleared when a run starts
        self.arrivals: Arrivals | None = None  # the run in progress (or the last one)

    @classmethod
    def default_settings(cls, model_count: int, cores: int | None = None) -> ThreadSettings:
        """Every core for the one call in flight, or the cores shared out when every model runs at once."""
        if cls.models_at_once:
            return split_cores(model_count, cores)
        return ThreadSettings(intra_op=cores or usable_cores(), inter_op=1, spinning=False)

    @classmethod
    def unavailable(cls, provider: str) -> str | None:
        """Why this strategy will not run with `provider` (auto, cpu, cuda), known before `open`; None: it may."""
        return None

    def open(self) -> None:
        pass

    def info(self) -> dict[str, Any]:
        """Facts of this strategy's set-up recorded with its results (`ray`'s placement); read while open."""
        return {}

    def close(self) -> None:
        """Release everything `open` built. Safe to call twice and after a failed `open`."""

    def stop(self) -> None:
        """Every lane of a run in progress raises RunStopped at its next frame (so `close` need not wait for
        every remaining frame). Safe from any thread, and when no run is in progress."""
        self._stop.set()

    def __enter__(self) -> Strategy:
        try:
            self.open()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        self.close()

    def run(self, period: float = 0.0, time_limit: float | None = None, schedule: Schedule | None = None,
            late_after: float | None = None, late_budget: int = 0, frames: int | None = None) -> RunResult:
        """Process every frame once, arriving as `period` or `schedule` say (Arrivals); RunTimeout past
        `time_limit` s; Overloaded once more than `late_budget` frames started `late_after` s late."""
        if time_limit is not None and time_limit <= 0:
            raise ValueError(f"time_limit must be positive seconds or None (no limit), got {time_limit}.")
        if frames is not None and frames < 1:
            raise ValueError(f"frames must be at least 1 or None (every frame), got {frames}.")
        self._stop.clear()
        start = self.clock()
        arrivals = Arrivals(start, period, None if time_limit is None else start + time_limit, self._stop, schedule,
                            late_after if self.stops_early else None, late_budget, frames=frames)
        self.arrivals = arrivals
        outputs, calls = self._execute(arrivals)
        wall = self.clock() - arrivals.start
        return RunResult(outputs=outputs, calls=calls, start=arrivals.start, wall_s=wall)

    @abstractmethod
    def _execute(self, arrivals: Arrivals) -> tuple[list[list[Outputs]], list[CallRecord]]:
        """Run every model on every frame; return outputs[model][frame] and the call records."""

    def source(self, frame: int) -> int:
        """The workload frame that run frame `frame` of the run in progress carries."""
        return frame if self.arrivals is None else self.arrivals.source(frame)

    def frame_count(self, arrivals: Arrivals) -> int:
        return arrivals.frame_count(self.workload.frame_count)


def release(owner: object, attribute: str, free: Callable[[Any], object]) -> None:
    """`free` what `owner.attribute` holds, once: for `close`, which may come twice or after a failed `open`."""
    value = getattr(owner, attribute, None)
    setattr(owner, attribute, None)
    if value is not None:
        free(value)
