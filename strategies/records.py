"""What a run works on (the workload) and what it produces (outputs and call records)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

Outputs = tuple[np.ndarray, ...]


@dataclass(frozen=True)
class ModelInput:
    """One model of the workload and its input on each frame."""

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
    provider: str = "cpu"  # 'cpu' or 'cuda': also onnxruntime's name of the device (OrtValue, IO binding)
    # CUDA provider options as sorted (key, value) pairs (checked by fixtures/cuda.py); used when provider is 'cuda'.
    cuda_options: tuple[tuple[str, str], ...] = ()
    # Where every session of the run comes from; None: sessions of `provider` with `cuda_options` (tests record here).
    session_factory: Any = field(default=None, compare=False, repr=False)

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
    def sessions(self) -> Any:
        """The run's SessionFactory: every strategy opens its sessions here."""
        if self.session_factory is not None:
            return self.session_factory
        from strategies.runtime.sessions import SessionFactory  # sessions imports records: imported late

        return SessionFactory(self.provider, self.cuda_options)

    @property
    def provider_options(self) -> dict[str, str]:  # make_session's: the CUDA options on CUDA
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


def empty_outputs(model_count: int, frame_count: int) -> list[list[Outputs]]:
    return [[() for _ in range(frame_count)] for _ in range(model_count)]


@dataclass
class RunResult:
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
        """Release the output arrays once checked; the model and frame counts stay (the metrics read them)."""
        self.outputs = empty_outputs(len(self.outputs), len(self.outputs[0]) if self.outputs else 0)

    def overlap(self) -> float:
        """Sum of per-call durations over wall time: above 1 means calls overlapped."""
        return sum(call.duration for call in self.calls) / self.wall_s if self.wall_s > 0 else 0.0


class CallLog:
    """Runs session calls, recording each one's start and end with `clock`."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.calls: list[CallRecord] = []

    def run(self, session: Any, feeds: dict[str, np.ndarray], model: int, frame: int, lane: str,
            frames: int = 1) -> list[np.ndarray]:
        start = self.clock()
        outputs = session.run(None, feeds)
        # list.append is atomic under the GIL, so threads may share one log.
        self.calls.append(CallRecord(model, frame, frames, start, self.clock(), lane))
        return outputs
