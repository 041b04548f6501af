"""The capacity search of one streaming benchmark, after its timed rounds (outside the timer and the sampler).

The benchmark's own streaming rounds are the search's first probe (at --streams cameras); the
offline benchmark of the same case, which runs just before it, gives the ceiling.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from bench.measure.capacity import (
    MIN_INTERARRIVAL_S,
    Probe,
    ProbeProgress,
    expected_probes,
    rounds_probe,
    search,
    upper_bound,
)
from bench.measure.equivalence import RoundCheck
from bench.measure.limits import time_limit
from bench.measure.metrics import frame_latencies
from bench.measure.rounds import RoundHooks
from bench.measure.scenarios import OFFLINE, SPREAD, STREAMING, Scenario
from strategies import RunResult, Strategy, StrategyError, Workload


def search_in_benchmark(strategy: Strategy, case: Any, scenario: Scenario, workload: Workload, reference: Any,
                        calibration: Any, run_options: Any, run_state: Any, runs: Sequence[RunResult],
                        check: RoundCheck, round_hooks: RoundHooks) -> dict[str, Any] | None:
    """Capacity.as_dict() of this benchmark's strategy, or None where no search is asked for."""
    if not run_options.capacity or scenario.name != STREAMING or not runs:
        return None
    check(runs)  # every round checked (and its outputs dropped) before the probes start
    fps, deadline = scenario.fps, scenario.deadline_s
    offline = [m.fps for m in run_state.measurements
               if m.scenario == OFFLINE and m.key == f"{case.strategy.name}-{case.settings.label}" and m.equivalent]
    upper = upper_bound(offline[-1] if offline else None, fps)
    timed = list(runs[-run_options.rounds:])
    schedule = scenario.schedule(workload.frame_count)
    latencies = np.concatenate([frame_latencies(run, scenario.period, schedule) for run in timed])
    known = rounds_probe(scenario.streams, latencies, deadline, check.mismatch)
    if upper is not None and known.passed:
        upper = max(upper, scenario.streams)
    if scenario.phase == SPREAD:  # no more cameras than the OS timers can pace apart
        most = int(1 / (fps * MIN_INTERARRIVAL_S))
        upper = most if upper is None else min(upper, most)
    probe = Probe(fps=fps, deadline_s=deadline, seconds=run_options.probe_seconds, phase=scenario.phase,
                  workload_frames=workload.frame_count, reference=reference, names=workload.names,
                  tolerances=calibration.tolerances,
                  time_limit_s=time_limit(run_options.time_limit, workload.frame_count, len(workload.models)))
    progress = None
    if round_hooks.progress is not None:
        progress = ProbeProgress(round_hooks.progress.label, expected_probes(upper), round_hooks.progress.suspend_capture,
                                 round_hooks.progress.disable)
    try:
        found = search(lambda cameras: probe(strategy, cameras), upper, fps=fps, deadline_s=deadline,
                       phase=scenario.phase, known={scenario.streams: known},
                       known_confirmed=run_options.rounds >= 2, on_probe=progress)
    except StrategyError as error:  # a model that failed, a worker that died: as in the timed rounds
        pytest.fail(f"{case.id}: capacity probe: {error}", pytrace=False)
    finally:
        with contextlib.suppress(Exception):
            if progress is not None:
                progress.close()
    return found.as_dict()
