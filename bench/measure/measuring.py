"""The issue-4 fields of a `Measurement`: scenario, latency, resources and timeline of the timed runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.measure.metrics import latency_over_runs, median_run, timeline
from bench.measure.sampler import ResourceSummary
from bench.measure.scenarios import Scenario
from strategies import RunResult


def measurement_fields(runs: Sequence[RunResult], scenario: Scenario, *, per_frame: bool,
                       resources: ResourceSummary | None, sampler_rate_hz: float | None,
                       gpu_absent: str | None) -> dict[str, Any]:
    """Keyword arguments for `Measurement.from_runs` (its `**facts`)."""
    fields: dict[str, Any] = {"scenario": scenario.name, "target_fps": scenario.fps, "per_frame": per_frame,
                              "deadline_s": scenario.deadline_s,
                              "timeline": timeline(median_run(runs), scenario.period)}
    if per_frame:
        # A strategy without per-frame completion gets no latency: its call records cover
        # whole videos, so "latency" would be the run's end for every frame, which is not one.
        latency = latency_over_runs(runs, scenario.period, scenario.deadline_s)
        fields.update(latency_frames=latency.frames, latency_p50_s=latency.p50_s, latency_p90_s=latency.p90_s,
                      latency_p99_s=latency.p99_s, latency_max_s=latency.max_s, latency_mean_s=latency.mean_s,
                      deadline_misses=latency.misses)
    if resources is not None:
        fields.update(cpu_util_mean=resources.cpu_util_mean, cpu_util_max=resources.cpu_util_max,
                      peak_uss_bytes=resources.peak_uss_bytes, peak_pss_bytes=resources.peak_pss_bytes,
                      gpu_memory_peak_bytes=resources.gpu_memory_peak_bytes,
                      gpu_device_memory_peak_bytes=resources.gpu_device_memory_peak_bytes,
                      gpu_util_mean=resources.gpu_util_mean, gpu_util_max=resources.gpu_util_max,
                      sampler_samples=resources.samples, sampler_cpu_s=resources.sampler_cpu_s)
    fields["sampler_rate_hz"] = sampler_rate_hz if resources is not None else None
    fields["gpu_absent"] = gpu_absent
    return fields
