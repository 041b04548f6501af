"""One benchmark's measurement: built once from the timed runs, stored as numbers, formatted elsewhere."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from bench.measure.harness import HarnessOverhead
from bench.measure.limits import PackingLimit
from bench.measure.metrics import latency_over_runs, median_run, timeline
from bench.measure.sampler import ResourceSummary
from bench.measure.scenarios import Scenario
from strategies import RunResult, ThreadSettings

# extra_info["schema_version"]; a run saved before it was added has none, which reads as 0.
SCHEMA_VERSION = 1
# Stored only where measured (serial, offline), as before the schema version: other benchmarks lack the keys.
# The foreign load likewise: it is measured only with the sampler.
ONLY_WHEN_MEASURED = ("harness_overhead", "bare_loop_s", "strategy_info", "foreign_load_cores",
                      "rounds_foreign_load_cores", "usable_cores", "capacity")  # stored only when not None / {} / []


class HistoryError(ValueError):
    """A history file that cannot be read or holds no fanbench benchmark."""


@dataclass(frozen=True)
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
    # The performance bar (bench/measure/limits.py): the packing limit and limit / wall for this run.
    limit_s: float | None = None
    efficiency: float | None = None
    strategy_options: dict[str, Any] = field(default_factory=dict)  # e.g. batched's {"k": 4}
    # --- scenario, per-frame latency, resources, timeline (None: not measured; see
    # docs/measurements.md). Latency is over every timed round's frames; the timeline is the
    # median run's calls (bench.measure.metrics.timeline); resources cover the timed rounds only.
    scenario: str = "offline"
    target_fps: float | None = None  # streaming: the rate frames arrive at
    per_frame: bool = True  # every strategy completes frames one by one (kept: every saved run has the key)
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
    tolerance: str = ""  # what "equal to serial" allowed (bench/measure/equivalence.py); "" in older histories
    # Per model: measured noise, discrimination and tolerance (bench/measure/equivalence.py Calibration.as_dict)
    equivalence: dict[str, Any] = field(default_factory=dict)
    packing_limit: dict[str, Any] = field(default_factory=dict)  # PackingLimit.as_dict()
    # serial, offline: the timed rounds against bare loops over the same sessions (HarnessOverhead)
    harness_overhead: float | None = None
    bare_loop_s: float | None = None
    # What the strategy reports of its own set-up (Strategy.info): ray's version, address, placement
    # and start-up time (outside the timed rounds); {} for the others.
    strategy_info: dict[str, Any] = field(default_factory=dict)
    # Cores busy outside the run while its rounds were timed (another job's load; the sampler's
    # reading of the machine minus the run's own process tree): the mean over the timed rounds and
    # each round's. None / []: not measured (--no-sampler, or a run saved before it was).
    foreign_load_cores: float | None = None
    rounds_foreign_load_cores: list[float] = field(default_factory=list)
    usable_cores: int | None = None  # the cores this run could use (cpu_util_* are fractions of them)
    # Streaming: the most cameras at target_fps this benchmark served (bench/measure/capacity.py
    # Capacity.as_dict: cameras, aggregate_fps, p50_s/p99_s at capacity, deadline, every probe);
    # {} where not searched (offline, --no-capacity, a run saved before it was).
    capacity: dict[str, Any] = field(default_factory=dict)

    @property
    def capacity_cameras(self) -> int | None:
        return self.capacity.get("cameras") if self.capacity else None

    @property
    def key(self) -> str:
        return f"{self.strategy}-{self.settings}"

    def extra_info(self) -> dict[str, Any]:
        """What is stored into pytest-benchmark's history, next to its own timing statistics."""
        info = asdict(self)
        for key in ONLY_WHEN_MEASURED:
            if info[key] is None or info[key] in ({}, []):
                del info[key]
        return {**info, "schema_version": SCHEMA_VERSION}

    @classmethod
    def from_extra_info(cls, info: Mapping[str, Any], name: str = "benchmark") -> Measurement:
        """A Measurement back from its `extra_info`; fields added later take their defaults, keys
        a later fanbench added are ignored, and a newer schema than this one is refused."""
        version = info.get("schema_version", 0)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise HistoryError(f"{name}: saved with measurement schema {version!r}, newer than this fanbench's "
                               f"{SCHEMA_VERSION}; read it with the fanbench that saved it.")
        known = {each.name for each in fields(cls)}
        try:
            return cls(**{key: value for key, value in info.items() if key in known})
        except TypeError as error:
            raise HistoryError(f"{name}: extra_info is not a fanbench measurement ({error}).") from None


def build_measurement(runs: Sequence[RunResult], *, strategy: str, settings: ThreadSettings,
                      strategy_options: Mapping[str, Any], scenario: Scenario, models: Sequence[str],
                      batch: int, provider: str, mismatch: str | None, model_flops: Sequence[int | None],
                      model_set_hash: str, provider_options: Mapping[str, str], tolerance: str,
                      equivalence: Mapping[str, Any], resources: ResourceSummary | None, sample_rate: float,
                      gpu_absent: str | None, packing_limit: PackingLimit,
                      overhead: HarnessOverhead | None = None,
                      strategy_info: Mapping[str, Any] | None = None, workload_frames: int | None = None,
                      capacity: Mapping[str, Any] | None = None) -> Measurement:
    """Summarise the timed runs by the run with the median wall time: every field, computed once."""
    median = median_run(runs)
    frames_in = workload_frames if workload_frames is not None else (len(median.outputs[0]) if median.outputs else 0)
    frames = len(median.outputs[0]) if median.outputs else 0
    latency = latency_over_runs(runs, scenario.period, scenario.deadline_s, scenario.schedule(frames_in))
    # ResourceSummary's fields are Measurement's, but for `samples` (None: sampling was off).
    used = {} if resources is None else {("sampler_samples" if key == "samples" else key): value
                                         for key, value in asdict(resources).items()}
    return Measurement(
        strategy=strategy, settings=settings.label, ort_defaults=settings.ort_defaults, models=list(models),
        frames=frames, batch=batch, provider=provider, per_model_cumulative_s=median.per_model_cumulative_s(len(models)),
        wall_s=median.wall_s, fps=frames / median.wall_s if median.wall_s > 0 else 0.0, overlap=median.overlap(),
        equivalent=mismatch is None, mismatch=mismatch, thread_settings=settings.as_dict(),
        model_flops=list(model_flops), model_set_hash=model_set_hash, rounds_wall_s=[run.wall_s for run in runs],
        limit_s=packing_limit.limit_s,
        # Streaming walls are set by the frame rate, not by how fast the strategy is: no efficiency.
        efficiency=packing_limit.efficiency(median.wall_s) if scenario.period == 0 else None,
        strategy_options=dict(strategy_options), scenario=scenario.name, target_fps=scenario.fps,
        deadline_s=scenario.deadline_s, latency_frames=latency.frames, latency_p50_s=latency.p50_s,
        latency_p90_s=latency.p90_s, latency_p99_s=latency.p99_s, latency_max_s=latency.max_s,
        latency_mean_s=latency.mean_s, deadline_misses=latency.misses, **used, gpu_absent=gpu_absent,
        sampler_rate_hz=sample_rate if resources is not None else None,
        timeline=timeline(median, scenario.period), provider_options=dict(provider_options), tolerance=tolerance,
        equivalence=dict(equivalence), packing_limit=packing_limit.as_dict(),
        harness_overhead=overhead.fraction if overhead else None, bare_loop_s=overhead.bare_s if overhead else None,
        strategy_info=dict(strategy_info or {}), capacity=dict(capacity or {}))
