"""One benchmark's measurement: built once from the timed runs, stored as numbers, formatted elsewhere.

A Measurement is a few named parts (settings, timing, latency, resources, equivalence) and, at the top,
the strategy, what it reported of its set-up and its capacity. `extra_info()` stores it as schema 2, one
dict per part; `from_extra_info` reads that and the flat schemas 1 and 0 (V1_PLACES maps their keys)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from bench.measure.harness import HarnessOverhead
from bench.measure.limits import PackingLimit
from bench.measure.metrics import LatencySummary, latency_over_runs, median_run, timeline
from bench.measure.sampler import ResourceSummary
from bench.measure.scenarios import Scenario
from strategies import RunResult, ThreadSettings

# extra_info["schema_version"]; a run saved before it was added has none, which reads as 0.
SCHEMA_VERSION = 2


class HistoryError(ValueError):
    """A history file that cannot be read or holds no fanbench benchmark."""


@dataclass(frozen=True)
class Settings:
    """What was timed (models, frames, batch, provider really used, scenario) and with which settings."""

    label: str  # ThreadSettings.label
    ort_defaults: bool
    models: list[str]
    frames: int
    batch: int
    provider: str
    thread_settings: dict[str, Any] = field(default_factory=dict)  # ThreadSettings.as_dict()
    model_flops: list[int | None] = field(default_factory=list)  # None: unknown, for a user's model
    model_set_hash: str = ""
    strategy_options: dict[str, Any] = field(default_factory=dict)  # e.g. batched's {"k": 4}
    provider_options: dict[str, str] = field(default_factory=dict)  # CUDA options the sessions ran with
    scenario: str = "offline"
    target_fps: float | None = None  # streaming: the rate frames arrive at


@dataclass(frozen=True)
class Timing:
    """The timed rounds' walls (the median run's figures), the performance bar, the harness's cost."""

    per_model_cumulative_s: list[float]
    wall_s: float
    fps: float
    overlap: float
    rounds_wall_s: list[float] = field(default_factory=list)
    # The performance bar (bench/measure/limits.py): the packing limit and limit / wall for this run.
    limit_s: float | None = None
    efficiency: float | None = None
    packing_limit: dict[str, Any] = field(default_factory=dict)  # PackingLimit.as_dict()
    # serial, offline: the timed rounds against bare loops over the same sessions (HarnessOverhead)
    harness_overhead: float | None = None
    bare_loop_s: float | None = None
    timeline: dict[str, Any] = field(default_factory=dict)  # the median run's calls (metrics.timeline)


@dataclass(frozen=True)
class Latency(LatencySummary):
    """Per-frame latency over every timed round's frames; None: not measured."""


@dataclass(frozen=True)
class Resources(ResourceSummary):
    """What the timed rounds used (the sampler's summary) and how it was sampled; None: not measured
    (--no-sampler, or a run saved before the field was)."""

    sampler_cpu_s: float | None = None
    gpu_absent: str | None = None  # why the GPU fields are None
    sampler_rate_hz: float | None = None  # None: sampling was off (--no-sampler)


@dataclass(frozen=True)
class Equivalence:
    """Whether every round's outputs equalled serial's (bench/measure/equivalence.py)."""

    equivalent: bool
    mismatch: str | None = None
    tolerance: str = ""  # what "equal to serial" allowed; "" in older histories
    calibration: dict[str, Any] = field(default_factory=dict)  # per model: noise, separation, tolerance


PARTS: dict[str, type] = {"settings": Settings, "timing": Timing, "latency": Latency, "resources": Resources,
                          "equivalence": Equivalence}
# Schema 0 and 1's flat keys -> (part, field): the field's name ("latency_" before a latency figure's) or a
# rename below. Other flat keys (strategy, strategy_info, capacity) are top-level; per_frame is gone.
_V1_RENAMED = {("settings", "label"): "settings", ("latency", "deadline_s"): "deadline_s",
               ("latency", "misses"): "deadline_misses", ("resources", "samples"): "sampler_samples",
               ("equivalence", "calibration"): "equivalence"}
V1_PLACES: dict[str, tuple[str, str]] = {
    _V1_RENAMED.get((part, each.name), f"latency_{each.name}" if part == "latency" else each.name): (part, each.name)
    for part, kind in PARTS.items() for each in fields(kind)}
_V1_KEY = {place: key for key, place in V1_PLACES.items()}
# Stored only where measured (serial, offline; the sampler ran; a strategy reported its set-up; a capacity
# search ran), as schema 1 did: other benchmarks lack the keys. (part, field); part "": the top level.
ONLY_WHEN_MEASURED = (("timing", "harness_overhead"), ("timing", "bare_loop_s"), ("", "strategy_info"),
                      ("resources", "foreign_load_cores"), ("resources", "rounds_foreign_load_cores"),
                      ("resources", "usable_cores"), ("", "capacity"))  # stored only when not None, {} or []


def stored(info: Mapping[str, Any], part: str, name: str) -> Any:
    """What a saved extra_info of any schema holds for `part`'s field `name` (None: nothing; a record
    interrupted before it was measured has an empty extra_info)."""
    if info.get("schema_version", 0) < 2:
        return info.get(_V1_KEY[(part, name)])
    held = info.get(part)
    return held.get(name) if isinstance(held, Mapping) else None


def _as_schema_2(info: Mapping[str, Any]) -> dict[str, Any]:
    """A flat (schema 0 or 1) extra_info in schema 2's layout; keys of no part are kept at the top."""
    parts = {part: {name: info[key] for key, (held, name) in V1_PLACES.items() if held == part and key in info}
             for part in PARTS}
    return {**{key: value for key, value in info.items() if key not in V1_PLACES}, **parts}


@dataclass(frozen=True)
class Measurement:
    strategy: str
    settings: Settings
    timing: Timing
    equivalence: Equivalence
    latency: Latency = field(default_factory=Latency)
    resources: Resources = field(default_factory=Resources)
    # What the strategy reports of its own set-up (Strategy.info, e.g. ray's placement); {} for the others.
    strategy_info: dict[str, Any] = field(default_factory=dict)
    # Streaming: the most cameras at target_fps this benchmark served (capacity.py Capacity.as_dict);
    # {} where not searched (offline, --no-capacity, a run saved before it was).
    capacity: dict[str, Any] = field(default_factory=dict)

    @property
    def capacity_cameras(self) -> int | None:
        return self.capacity.get("cameras") if self.capacity else None

    @property
    def key(self) -> str:
        return f"{self.strategy}-{self.settings.label}"

    def extra_info(self) -> dict[str, Any]:
        """What is stored into pytest-benchmark's history, next to its own timing statistics: schema 2."""
        info = asdict(self)
        for part, name in ONLY_WHEN_MEASURED:
            held = info[part] if part else info
            if held[name] is None or held[name] in ({}, []):
                del held[name]
        return {**info, "schema_version": SCHEMA_VERSION}

    @classmethod
    def from_extra_info(cls, info: Mapping[str, Any], name: str = "benchmark") -> Measurement:
        """A Measurement back from its `extra_info` of any schema up to this one; fields added later take
        their defaults, keys a later fanbench added are ignored, and a newer schema than this one is refused."""
        version = info.get("schema_version", 0)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise HistoryError(f"{name}: saved with measurement schema {version!r}, newer than this fanbench's "
                               f"{SCHEMA_VERSION}; read it with the fanbench that saved it.")
        layout = info if version >= 2 else _as_schema_2(info)
        try:
            parts = {part: _known(kind, layout.get(part, {})) for part, kind in PARTS.items()}
            top = {each.name for each in fields(cls)} - set(PARTS)
            return cls(**{key: value for key, value in layout.items() if key in top}, **parts)
        except TypeError as error:
            raise HistoryError(f"{name}: extra_info is not a fanbench measurement ({error}).") from None


def _known(kind: type, values: Any) -> Any:
    """`kind` built from the entries of `values` that are its fields (TypeError: `values` is no dict)."""
    if not isinstance(values, Mapping):
        raise TypeError(f"{kind.__name__.lower()} is {type(values).__name__}, not an object")
    known = {each.name for each in fields(kind)}
    return kind(**{key: value for key, value in values.items() if key in known})


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
    sampled = {} if resources is None else {**asdict(resources), "sampler_rate_hz": sample_rate}
    return Measurement(
        strategy=strategy,
        settings=Settings(label=settings.label, ort_defaults=settings.ort_defaults, models=list(models), frames=frames,
                          batch=batch, provider=provider, thread_settings=settings.as_dict(),
                          model_flops=list(model_flops), model_set_hash=model_set_hash,
                          strategy_options=dict(strategy_options), provider_options=dict(provider_options),
                          scenario=scenario.name, target_fps=scenario.fps),
        timing=Timing(per_model_cumulative_s=median.per_model_cumulative_s(len(models)), wall_s=median.wall_s,
                      fps=frames / median.wall_s if median.wall_s > 0 else 0.0, overlap=median.overlap(),
                      rounds_wall_s=[run.wall_s for run in runs], limit_s=packing_limit.limit_s,
                      # Streaming walls are set by the frame rate, not by how fast the strategy is: no efficiency.
                      efficiency=packing_limit.efficiency(median.wall_s) if scenario.period == 0 else None,
                      packing_limit=packing_limit.as_dict(),
                      harness_overhead=overhead.fraction if overhead else None,
                      bare_loop_s=overhead.bare_s if overhead else None, timeline=timeline(median, scenario.period)),
        latency=Latency(**asdict(latency)),
        resources=Resources(**sampled, gpu_absent=gpu_absent),
        equivalence=Equivalence(equivalent=mismatch is None, mismatch=mismatch, tolerance=tolerance,
                                calibration=dict(equivalence)),
        strategy_info=dict(strategy_info or {}), capacity=dict(capacity or {}))
