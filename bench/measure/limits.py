"""The two limits of a run: the time limit, a guard against a hung strategy; and the packing limit,
the shortest wall time any strategy could reach on this machine.

Each model timed alone on one intra-op thread over every frame (T_m, after one untimed call), perfectly
packed on C usable cores: limit = (T_1 + ... + T_M) / C; efficiency = limit / wall. A strategy beats it
only where threads make a model more than C times faster (rarely) or batching cuts per-call cost.
On CUDA (C = 1) the summed time is no bound: one model alone leaves the device idle during its copies,
launches and CPU work, which concurrent models fill (an H100 ran the write-up's workload at 107-334% of
it), and onnxruntime does not report the device's busy time; so no efficiency is computed there.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

from fixtures.phases import phase_limit
from strategies import ThreadSettings, Workload
from strategies.runtime import io_names, usable_cores

SINGLE_THREAD = ThreadSettings(intra_op=1, inter_op=1, spinning=False)


@dataclass(frozen=True)
class PackingLimit:
    per_model_s: tuple[float, ...]  # each model's single-thread time over every frame
    units: int  # usable cores (1 on CUDA: one device)
    provider: str = "cpu"

    @property
    def limit_s(self) -> float:
        return sum(self.per_model_s) / self.units

    @property
    def bound(self) -> bool:
        """Whether no strategy can beat it (not on CUDA: see the module's docstring)."""
        return self.provider != "cuda"

    def efficiency(self, wall_s: float) -> float | None:
        return self.limit_s / wall_s if wall_s > 0 and self.bound else None

    def as_dict(self) -> dict[str, object]:
        return {"per_model_single_thread_s": list(self.per_model_s), "units": self.units, "limit_s": self.limit_s,
                "bound": self.bound}


def measure_packing_limit(workload: Workload, clock: Callable[[], float] = time.perf_counter, cores: int | None = None,
                          time_limit_s: float | None = None) -> PackingLimit:
    """Time every model alone, single-threaded, over every frame of the workload, within `time_limit_s`
    (RunTimeout past it: onnxruntime stops the call in progress)."""
    times = []
    with phase_limit("the packing limit (each model alone, single-threaded)", time_limit_s) as options:
        for model in workload.models:
            session = workload.sessions.open(model.path, SINGLE_THREAD)
            name = io_names(session)[0]
            session.run(None, {name: model.frames[0]}, options)  # warm-up: first-call allocations are not the model's cost
            total = 0.0
            for frame in model.frames:
                start = clock()
                session.run(None, {name: frame}, options)
                total += clock() - start
            times.append(total)
    units = 1 if workload.provider == "cuda" else (cores or usable_cores())
    return PackingLimit(tuple(times), units, workload.provider)


# --- the time limit
BASE_S = 60.0  # start-up slack: first calls, page faults, a busy CI machine
PER_MODEL_FRAME_S = 2.0  # one `session.run` of one model on one frame, with a wide margin


def default_time_limit(frames: int, models: int) -> float:
    """60 s plus 2 s per model per frame (32 frames x 4 models: 316 s per run): even the large models on
    two busy cores stay far below it, so only a run that hangs or crawls reaches it."""
    return BASE_S + PER_MODEL_FRAME_S * frames * models


def checked_float(text: str, valid: Callable[[float], bool], expected: str, refusal: str, shown: str | None = None) -> float:
    """A command-line number: float(text) where valid(value), else one line naming `shown` (default: text)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {shown or text!r}.") from None
    if not valid(value):  # a check written `not value > 0` also refuses nan
        raise argparse.ArgumentTypeError(f"{refusal}, got {shown or text!r}.")
    return value


def parse_time_limit(text: str) -> float:
    """--time-limit SECONDS: a positive number."""
    return checked_float(text, lambda value: value > 0, "seconds as a positive number", "must be a positive number of seconds")


def time_limit(option: float | None, frames: int, models: int) -> float:
    """The limit for one run: --time-limit when given, else the default for this workload."""
    return option if option is not None else default_time_limit(frames, models)
