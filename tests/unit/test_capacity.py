"""Several cameras, the probe's pass rule, and the capacity search (fake clock: no timing assertions)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.measure.capacity import (
    Capacity,
    Probe,
    ProbeResult,
    capacity_efficiency,
    check_arrival_rate,
    frames_per_camera,
    miss_budget,
    passes,
    search,
    upper_bound,
)
from bench.measure.harness import opened
from bench.measure.scenarios import ALIGNED, SPREAD, camera_schedule, stream_reference
from strategies import STRATEGIES, Strategy, get_strategy
from strategies.base import Arrivals, Overloaded
from strategies.records import CallRecord, empty_outputs
from tests.helpers.cuda_on_cpu import CudaGraphBuffersOnCpu, streams_on_cpu
from tests.helpers.equivalence import FLOAT32, assert_equal_to_serial
from tests.helpers.fakes import FakeClock

# --- the arrival schedule ---------------------------------------------------------------------


def test_spread_cameras_share_each_period_evenly():
    schedule = camera_schedule(2, 25.0, 3, 4, SPREAD)
    assert schedule.times.tolist() == pytest.approx([0, 0.02, 0.04, 0.06, 0.08, 0.10])
    assert schedule.cameras.tolist() == [0, 1, 0, 1, 0, 1]
    assert schedule.sources.tolist() == [0, 1, 2, 3, 0, 1]  # round-robin, reused cyclically
    assert schedule.camera_count == 2
    assert schedule.period == pytest.approx(0.04)


def test_aligned_cameras_arrive_together():
    schedule = camera_schedule(3, 10.0, 2, 40, ALIGNED)
    assert schedule.times.tolist() == pytest.approx([0, 0, 0, 0.1, 0.1, 0.1])
    assert schedule.cameras.tolist() == [0, 1, 2, 0, 1, 2]
    assert schedule.sources.tolist() == [0, 1, 2, 3, 4, 5]


def test_camera_c_frame_j_arrives_at_its_formula():
    cameras, fps = 5, 30.0
    schedule = camera_schedule(cameras, fps, 7, 3, SPREAD)
    for k, (time, camera) in enumerate(zip(schedule.times, schedule.cameras, strict=True)):
        j = k // cameras
        assert camera == k % cameras
        assert time == pytest.approx(j / fps + camera / (cameras * fps))


def test_one_spread_camera_is_the_single_stream():
    schedule = camera_schedule(1, 25.0, 40, 40)
    assert schedule.times.tolist() == pytest.approx([k / 25 for k in range(40)])
    assert schedule.sources.tolist() == list(range(40))


@pytest.mark.parametrize("cameras", [0, -1, 1.5, "2", True])
def test_schedule_refuses_a_bad_camera_count(cameras):
    with pytest.raises(ValueError, match="cameras must be a whole number"):
        camera_schedule(cameras, 25.0, 3, 3)


def test_stream_reference_follows_the_sources():
    reference = [["a0", "a1"], ["b0", "b1"]]
    schedule = camera_schedule(3, 25.0, 1, 2)
    assert stream_reference(reference, schedule) == [["a0", "a1", "a0"], ["b0", "b1", "b0"]]
    assert stream_reference(reference, None) == reference


def test_arrival_rate_beyond_the_timers_is_refused():
    check_arrival_rate(40, 25.0, SPREAD)  # 1 ms apart: allowed
    check_arrival_rate(1000, 25.0, ALIGNED)  # together each period: no fine timing needed
    with pytest.raises(ValueError, match="under the 1 ms the OS timers can pace"):
        check_arrival_rate(41, 25.0, SPREAD)


# --- the pass rule ----------------------------------------------------------------------------


def test_pass_rule_allows_one_percent_of_misses():
    deadline = 0.04
    on_time = np.full(100, 0.01)
    assert passes(on_time, deadline)
    one_miss = on_time.copy()
    one_miss[10] = 1.0
    assert passes(one_miss, deadline)  # 1/100 missed, p99 (linear) = 0.0199 s
    two_misses = one_miss.copy()
    two_misses[20] = 1.0
    assert not passes(two_misses, deadline)
    assert passes(np.full(10, deadline), deadline)  # exactly on the deadline is in time
    assert not passes(np.full(10, deadline + 1e-9), deadline)
    assert miss_budget(100) == 1
    assert miss_budget(199) == 1
    assert miss_budget(99) == 0


def test_p99_over_the_deadline_fails_even_within_the_miss_budget():
    latencies = np.full(100, 0.01)
    latencies[0] = 100.0  # 1/100 missed, but so far that p99 (linear) interpolates past the deadline
    assert np.percentile(latencies, 99) > 0.04
    assert not passes(latencies, 0.04)


def test_probe_length():
    assert frames_per_camera(3.0, 25.0) == 75
    assert frames_per_camera(0.01, 25.0) == 2


# --- the search -------------------------------------------------------------------------------


def threshold_probe(capacity: int, calls: list[int], flaky: set[int] = frozenset()):
    """Passes up to `capacity` cameras; a camera count in `flaky` passes once, then fails."""
    seen: set[int] = set()

    def probe(cameras: int) -> ProbeResult:
        calls.append(cameras)
        lucky = cameras in flaky and cameras not in seen
        seen.add(cameras)
        ok = cameras <= capacity or lucky
        return ProbeResult(cameras, 100, ok, 0.01, 0.02 if ok else 0.5, 0 if ok else 50)

    return probe


@pytest.mark.parametrize("capacity", [0, 1, 2, 3, 7, 8, 9, 31])
@pytest.mark.parametrize("upper", [None, 31, 40])
def test_search_finds_the_boundary(capacity, upper):
    calls: list[int] = []
    found = search(threshold_probe(capacity, calls), upper, fps=25.0, deadline_s=0.04)
    assert found.cameras == capacity
    if capacity:
        assert calls.count(capacity) == 2  # the boundary re-run once
        assert found.at_capacity is not None
        assert found.at_capacity.cameras == capacity
    assert len(calls) <= 2 * math.ceil(math.log2(max(upper or 64, 2))) + 3


def test_search_never_probes_beyond_the_offline_ceiling():
    calls: list[int] = []
    found = search(threshold_probe(100, calls), 6, fps=25.0, deadline_s=0.04)
    assert found.cameras == 6
    assert max(calls) == 6


def test_a_boundary_that_fails_its_rerun_steps_down():
    calls: list[int] = []
    found = search(threshold_probe(4, calls, flaky={5}), 8, fps=25.0, deadline_s=0.04)
    assert found.cameras == 4
    assert calls.count(5) == 2
    assert calls[-1] == 4


def test_known_passing_rounds_need_no_rerun():
    calls: list[int] = []
    known = {1: ProbeResult(1, 120, True, 0.01, 0.02, 0)}
    found = search(threshold_probe(1, calls), 1, fps=25.0, deadline_s=0.04, known=known)
    assert found.cameras == 1
    assert calls == []


def test_capacity_record_and_efficiency():
    probes = (ProbeResult(3, 300, True, 0.01, 0.03, 1), ProbeResult(4, 400, False, None, None, None, stopped="x"),
              ProbeResult(3, 300, True, 0.012, 0.031, 0))
    record = Capacity(3, 25.0, 0.04, SPREAD, 4, probes).as_dict()
    assert record["cameras"] == 3
    assert record["aggregate_fps"] == 75.0
    assert record["p99_s"] == 0.031  # the last passing probe at capacity
    assert len(record["probes"]) == 3
    assert capacity_efficiency(record, 100.0) == pytest.approx(0.75)
    assert capacity_efficiency({}, 100.0) is None
    assert upper_bound(100.0, 25.0) == 4
    assert upper_bound(None, 25.0) is None
    assert upper_bound(24.0, 25.0) == 1


# --- a fake strategy of fixed service time: the exact capacity under aligned arrival --------------


class FixedService(Strategy):
    """One lane, `service_s` per frame on the fake clock; outputs the workload frame it carried."""

    name = "fixed_service"
    service_s = 1 / 256

    def _execute(self, arrivals: Arrivals):
        count = self.frame_count(arrivals)
        outputs = empty_outputs(1, count)
        calls = []
        for frame in range(count):
            arrivals.wait_for(frame, self.clock)
            start = self.clock()
            self.clock.sleep(self.service_s)
            outputs[0][frame] = (np.array([float(self.source(frame))]),)
            calls.append(CallRecord(0, frame, 1, start, self.clock(), "main"))
        return outputs, calls


@pytest.fixture
def fixed_service(monkeypatch, tiny_workload):
    clock = FakeClock()
    monkeypatch.setattr("strategies.base.pause", lambda seconds, stop: clock.sleep(seconds))
    workload_frames = 5
    reference = [[(np.array([float(f)]),) for f in range(workload_frames)]]
    strategy = FixedService(tiny_workload, clock=clock)

    def make(early_stop: bool = True, phase: str = ALIGNED) -> Probe:
        return Probe(fps=32.0, deadline_s=1 / 32, seconds=2.0, phase=phase, workload_frames=workload_frames,
                     reference=reference, names=["fake"], tolerances=FLOAT32, time_limit_s=60.0,
                     early_stop=early_stop)

    return strategy, make


@pytest.mark.parametrize("upper", [None, 8, 20])
def test_search_finds_the_exact_capacity_of_a_fixed_service_time(fixed_service, upper):
    # s = 1/256 s, 32 fps, aligned: N frames at once take N/256 s, within the 1/32 s period iff
    # N <= floor(1 / (s x fps)) = 8 (exactly on the deadline at 8). Binary fractions: no rounding.
    strategy, make = fixed_service
    probe = make()
    found = search(lambda n: probe(strategy, n), upper, fps=32.0, deadline_s=1 / 32, phase=ALIGNED)
    assert found.cameras == math.floor(1 / (FixedService.service_s * 32)) == 8
    at = found.at_capacity
    assert at.p99_s == pytest.approx(8 / 256)
    assert at.misses == 0
    assert at.mismatch is None
    assert not probe(strategy, 9).passed  # one camera more fails: not an off-by-one


def test_an_overloaded_probe_stops_early(fixed_service):
    strategy, make = fixed_service
    result = make()(strategy, 16)
    assert not result.passed
    assert result.stopped is not None
    assert "more than the" in result.stopped
    slow = make(early_stop=False)(strategy, 16)  # run to the end: nearly every frame missed
    assert not slow.passed
    assert slow.stopped is None
    assert slow.misses > 0.5 * slow.frames


def test_spread_cameras_pass_where_the_average_load_fits(fixed_service):
    # Spread, 8 cameras at 32 fps arrive 1/256 s apart: each frame is done as the next arrives.
    strategy, make = fixed_service
    result = make(phase=SPREAD)(strategy, 8)
    assert result.passed
    assert result.p99_s == pytest.approx(1 / 256)


def test_a_probe_whose_outputs_differ_fails(fixed_service, tiny_workload):
    strategy, make = fixed_service
    probe = make()
    wrong = Probe(**{**probe.__dict__, "reference": [[(np.array([f + 100.0]),) for f in range(5)]]})
    result = wrong(strategy, 2)
    assert not result.passed
    assert result.mismatch is not None


def test_overloaded_is_raised_only_past_the_budget():
    clock = FakeClock(start=10.0)
    arrivals = Arrivals(0.0, 0.1, late_after=0.04, late_budget=1)
    arrivals.wait_for(0, clock)  # 10 s late: the first certain miss, within the budget
    with pytest.raises(Overloaded):
        arrivals.wait_for(1, clock)


# --- every strategy serves several cameras, each frame equal to serial's ------------------------


PROCESS_STRATEGIES = {"processes", "processes_shm", "ray"}


# cuda_graph's own logic, on the CPU (the registered one skips without CUDA): its buffers, and its per-lane streams.
ON_CPU = {"cuda_graph-buffers": lambda: CudaGraphBuffersOnCpu, "cuda_graph-streams": streams_on_cpu}


@pytest.mark.parametrize("name", [pytest.param(name, marks=[pytest.mark.slow] if name in PROCESS_STRATEGIES else [])
                                  for name in [*STRATEGIES, *ON_CPU]])
def test_every_strategy_serves_several_cameras(name, tiny_workload):
    with get_strategy("serial")(tiny_workload) as serial:
        reference = serial.run().outputs
    schedule = camera_schedule(3, 500.0, 4, tiny_workload.frame_count, ALIGNED)  # 12 run frames over 5 workload frames
    with opened(ON_CPU[name]() if name in ON_CPU else get_strategy(name), tiny_workload) as strategy:
        result = strategy.run(schedule=schedule)
    assert_equal_to_serial(tiny_workload, reference, result.outputs, schedule)
    covered = sorted((call.model, frame) for call in result.calls
                     for frame in range(call.first_frame, call.first_frame + call.frames))
    assert covered == [(m, f) for m in range(len(tiny_workload.models)) for f in range(len(schedule))]
    for call in result.calls:  # no frame runs before it arrives
        assert call.start >= result.start + schedule.times[call.first_frame + call.frames - 1] - 1e-9
