"""Per-frame latency, deadline misses and timelines, computed from a run's call records.

A frame is complete at the latest `end` of the calls covering it; its latency is completion minus arrival.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from strategies import RunResult, Schedule

PERCENTILES = (50, 90, 99)
# Timeline timestamps are stored rounded to a microsecond: far below a session.run, and small history files.
TIMELINE_DECIMALS = 6


def median_run(runs: Sequence[RunResult]) -> RunResult:
    """The run with the median wall time (the lower one of an even count), as the table uses."""
    if not runs:
        raise ValueError("a median run needs at least one run.")
    ordered = sorted(runs, key=lambda run: run.wall_s)
    return ordered[(len(ordered) - 1) // 2]


def frame_completions(run: RunResult) -> np.ndarray:
    """Clock reading at which every model had finished each frame, indexed by frame."""
    model_count = len(run.outputs)
    if not model_count:
        raise ValueError("a run without models has no frames to complete.")
    frame_count = len(run.outputs[0]) if run.outputs else 0
    finished = np.full((model_count, frame_count), -np.inf)
    for call in run.calls:
        last = call.first_frame + call.frames - 1
        if not (0 <= call.model < model_count and call.frames >= 1 and 0 <= call.first_frame and last < frame_count):
            raise ValueError(f"call record {call} lies outside the run's {model_count} models x {frame_count} frames.")
        span = finished[call.model, call.first_frame:call.first_frame + call.frames]
        np.maximum(span, call.end, out=span)
    missing = np.argwhere(np.isneginf(finished))
    if missing.size:
        model, frame = missing[0]
        raise ValueError(f"no call record covers frame {frame} of model {model}: the run's call records are incomplete.")
    return finished.max(axis=0)


def frame_latencies(run: RunResult, period: float, schedule: Schedule | None = None) -> np.ndarray:
    """Seconds from each frame's arrival to its completion (arrivals at `schedule`'s times when given)."""
    completions = frame_completions(run)
    offsets = np.arange(completions.size) * period if schedule is None else schedule.times
    return completions - (run.start + offsets)


def deadline_misses(latencies: np.ndarray, deadline_s: float) -> int:
    """Frames whose latency exceeded the deadline (exactly on the deadline is in time)."""
    return int(np.count_nonzero(np.asarray(latencies) > deadline_s))


@dataclass(frozen=True)
class LatencySummary:
    frames: int | None = None  # frames the percentiles are over (every timed run's frames together)
    p50_s: float | None = None
    p90_s: float | None = None
    p99_s: float | None = None
    max_s: float | None = None
    mean_s: float | None = None
    deadline_s: float | None = None  # streaming: one frame period (or --deadline-ms)
    misses: int | None = None  # frames over the deadline; None without a deadline (offline)


def summarise_latencies(latencies: np.ndarray, deadline_s: float | None) -> LatencySummary:
    """Percentiles with numpy's default (linear) interpolation."""
    values = np.asarray(latencies, dtype=float)
    if values.size == 0:
        raise ValueError("latency percentiles need at least one frame.")
    p50, p90, p99 = (float(value) for value in np.percentile(values, PERCENTILES))
    return LatencySummary(frames=int(values.size), p50_s=p50, p90_s=p90, p99_s=p99, max_s=float(values.max()),
                          mean_s=float(values.mean()), deadline_s=deadline_s,
                          misses=None if deadline_s is None else deadline_misses(values, deadline_s))


def latency_over_runs(runs: Sequence[RunResult], period: float, deadline_s: float | None,
                      schedule: Schedule | None = None) -> LatencySummary:
    """Percentiles over the frames of every timed run together: more frames, steadier tails."""
    return summarise_latencies(np.concatenate([frame_latencies(run, period, schedule) for run in runs]), deadline_s)


def _natural(text: str) -> list[Any]:
    """'worker-10' after 'worker-2'."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def timeline(run: RunResult, period: float = 0.0) -> dict[str, Any]:
    """The run's calls in a JSON-ready column form, times relative to the run's start. Lanes (threads,
    processes, event loops) are ordered by the first model each served, then by name (process-2 first)."""
    first_model: dict[str, int] = {}
    for call in run.calls:
        first_model[call.lane] = min(first_model.get(call.lane, call.model), call.model)
    lanes = sorted(first_model, key=lambda lane: (first_model[lane], _natural(lane)))
    lane_index = {lane: index for index, lane in enumerate(lanes)}
    calls = sorted(run.calls, key=lambda call: (call.start, call.model))
    return {"wall_s": round(run.wall_s, TIMELINE_DECIMALS), "period_s": period, "lanes": lanes,
            "model": [call.model for call in calls], "first_frame": [call.first_frame for call in calls],
            "frames": [call.frames for call in calls],
            "start": [round(call.start - run.start, TIMELINE_DECIMALS) for call in calls],
            "end": [round(call.end - run.start, TIMELINE_DECIMALS) for call in calls],
            "lane": [lane_index[call.lane] for call in calls]}


def _median_ratio(old: np.ndarray, new: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.median(new, axis=axis) / np.median(old, axis=axis)


def median_ratio_interval(old: Sequence[float], new: Sequence[float], *, confidence: float = 0.95,
                          resamples: int = 9999, seed: int = 0) -> tuple[float, float]:
    """The percentile bootstrap interval of median(new) / median(old); the ratio, twice, without any spread."""
    old_a, new_a = np.asarray(old, dtype=float), np.asarray(new, dtype=float)
    if np.ptp(old_a) == 0 and np.ptp(new_a) == 0:
        ratio = float(np.median(new_a) / np.median(old_a))
        return ratio, ratio
    interval = stats.bootstrap((old_a, new_a), _median_ratio, paired=False, vectorized=True, confidence_level=confidence,
                               n_resamples=resamples, method="percentile",
                               rng=np.random.default_rng(seed)).confidence_interval
    return float(interval.low), float(interval.high)
