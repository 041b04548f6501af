"""One benchmark's measurements: derived from the runs, stored as numbers, formatted elsewhere."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from strategies import RunResult


@dataclass
class Measurement:
    strategy: str
    settings: str  # ThreadSettings.label
    ort_defaults: bool
    models: list[str]
    frames: int
    batch: int
    provider: str
    per_model_cumulative_s: list[float]
    wall_s: float
    fps: float
    overlap: float
    equivalent: bool
    mismatch: str | None = None
    thread_settings: dict[str, Any] = field(default_factory=dict)
    model_flops: list[int] = field(default_factory=list)
    model_set_hash: str = ""
    rounds_wall_s: list[float] = field(default_factory=list)
    provider_options: dict[str, str] = field(default_factory=dict)  # CUDA options the sessions ran with

    @property
    def key(self) -> str:
        return f"{self.strategy}-{self.settings}"

    @classmethod
    def from_runs(cls, runs: list[RunResult], *, strategy: str, settings: Any, models: list[str], batch: int,
                  provider: str, mismatch: str | None, **facts: Any) -> Measurement:
        """Summarise the timed runs by the run with the median wall time."""
        if not runs:
            raise ValueError("a measurement needs at least one timed run.")
        ordered = sorted(runs, key=lambda run: run.wall_s)
        median = ordered[(len(ordered) - 1) // 2]
        frames = len(median.outputs[0]) if median.outputs else 0
        return cls(strategy=strategy, settings=settings.label, ort_defaults=settings.ort_defaults, models=models,
                   frames=frames, batch=batch, provider=provider,
                   per_model_cumulative_s=median.per_model_cumulative_s(len(models)), wall_s=median.wall_s,
                   fps=frames / median.wall_s if median.wall_s > 0 else 0.0, overlap=median.overlap(),
                   equivalent=mismatch is None, mismatch=mismatch, thread_settings=settings.as_dict(),
                   rounds_wall_s=[run.wall_s for run in runs], **facts)

    def extra_info(self) -> dict[str, Any]:
        """What is stored into pytest-benchmark's history, next to its own timing statistics."""
        return asdict(self)
