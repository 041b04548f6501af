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
    model_flops: list[int | None] = field(default_factory=list)  # None: unknown, for a user's model
    model_set_hash: str = ""
    rounds_wall_s: list[float] = field(default_factory=list)
    # The performance bar (bench/measure/limit.py): the packing limit and limit / wall for this run.
    limit_s: float | None = None
    efficiency: float | None = None
    strategy_options: dict[str, Any] = field(default_factory=dict)  # e.g. batched's {"k": 4}
    # --- scenario, per-frame latency, resources, timeline (None: not measured; see
    # docs/measurements.md). Latency is over every timed round's frames; the timeline is the
    # median run's calls (bench.metrics.timeline); resources cover the timed rounds only.
    scenario: str = "offline"
    target_fps: float | None = None  # streaming: the rate frames arrive at
    per_frame: bool = True  # False: the strategy has no per-frame completion, so no latency
    latency_frames: int | None = None
    latency_p50_s: float | None = None
    latency_p90_s: float | None = None
    latency_p99_s: float | None = None
    latency_max_s: float | None = None
    latency_mean_s: float | None = None
    deadline_s: float | None = None  # streaming: one frame period
    deadline_misses: int | None = None  # frames over the deadline, over latency_frames
    cpu_util_mean: float | None = None  # process tree, fraction of the usable cores
    cpu_util_max: float | None = None
    peak_uss_bytes: int | None = None  # process tree, summed
    peak_pss_bytes: int | None = None
    gpu_memory_peak_bytes: int | None = None  # this process tree on the GPU (NVML)
    gpu_device_memory_peak_bytes: int | None = None  # the whole device
    gpu_util_mean: float | None = None  # percent
    gpu_util_max: float | None = None
    gpu_absent: str | None = None  # why the GPU fields are None
    sampler_rate_hz: float | None = None  # None: sampling was off (--no-sampler)
    sampler_samples: int = 0
    sampler_cpu_s: float | None = None  # CPU time the sampler spent (its own process)
    timeline: dict[str, Any] = field(default_factory=dict)
    provider_options: dict[str, str] = field(default_factory=dict)  # CUDA options the sessions ran with
    tolerance: str = ""  # what "equal to serial" allowed (strategies.equivalence); "" in older histories
    # Per model: measured noise, discrimination and tolerance (strategies.equivalence.Calibration.as_dict)
    equivalence: dict[str, Any] = field(default_factory=dict)

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
