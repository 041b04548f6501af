"""Several cameras, the probe's pass rule, and the capacity search (fake clock: no timing assertions)."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from bench.cases import Case
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
from bench.measure.equivalence import first_mismatch, measure_calibration
from bench.measure.harness import opened
from bench.measure.run import BenchmarkRun
from bench.measure.scenarios import ALIGNED, SPREAD, STREAMING, Scenario, camera_schedule, stream_reference
from strategies import STRATEGIES, ThreadSettings, get_strategy
from strategies.base import Arrivals, Overloaded
from tests.helpers.cuda_on_cpu import CudaGraphBuffersOnCpu, streams_on_cpu
from tests.helpers.equivalence import assert_equal_to_serial
from tests.helpers.fakes import FakeClock, FixedService
from tests.helpers.runs import parse_args, run_inputs

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


def test_with_one_video_per_camera_camera_c_shows_video_c_mod_videos_from_its_start():
    # 2 videos of 3 frames (workload frames 0-2, then 3-5), 3 cameras of 4 frames: camera 2 shows video 0 again.
    schedule = camera_schedule(3, 25.0, 4, 6, ALIGNED, videos=2)
    by_camera = {camera: schedule.sources[schedule.cameras == camera].tolist() for camera in range(3)}
    assert by_camera == {0: [0, 1, 2, 0], 1: [3, 4, 5, 3], 2: [0, 1, 2, 0]}
    with pytest.raises(ValueError, match="cannot be 4 videos of equal length"):
        camera_schedule(3, 25.0, 4, 6, ALIGNED, videos=4)


def test_several_videos_stream_one_per_camera_by_default():
    options = parse_args(["--video", "a.mp4", "--video", "b.mp4", "--video", "c.mp4", "--scenario", "streaming"])
    (scenario,) = options.scenarios
    assert (scenario.streams, scenario.videos) == (3, 3)
    schedule = scenario.schedule(3 * 5)  # --frames 5 of each video
    assert schedule is not None
    assert schedule.camera_count == 3
    assert [schedule.sources[schedule.cameras == c].tolist() for c in range(3)] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9],
                                                                                  [10, 11, 12, 13, 14]]
    (one_camera,) = parse_args(["--video", "a.mp4", "--video", "b.mp4", "--streams", "1",
                                "--scenario", "streaming"]).scenarios
    assert one_camera.schedule(10) is not None  # camera 0 shows a.mp4 only, not both one after the other
    assert options.workload.total_frames == 3 * options.workload.frames


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


# --- a fake strategy of fixed service time (tests/helpers/fakes.py): the exact capacity under aligned arrival ---


@pytest.fixture
def fixed_service(monkeypatch, make_workload):
    """A maker of opened BenchmarkRuns of FixedService, checked against `reference` (by default, the
    outputs it gives), and a maker of probes."""
    clock = FakeClock()
    monkeypatch.setattr("strategies.base.pause", lambda seconds, stop: clock.sleep(seconds))
    workload_frames = 5
    workload = make_workload(models=1, frames=workload_frames)
    case = Case(FixedService, ThreadSettings(), (("clock", clock),))
    opened: list[BenchmarkRun] = []

    def service(reference=None) -> BenchmarkRun:
        reference = reference or [[(np.array([float(f)]),) for f in range(workload_frames)]]
        run = BenchmarkRun(run_inputs(workload, reference), case, Scenario(STREAMING, 32.0, phase=ALIGNED))
        run.open()
        opened.append(run)
        return run

    def make(early_stop: bool = True, phase: str = ALIGNED) -> Probe:
        return Probe(fps=32.0, deadline_s=1 / 32, seconds=2.0, phase=phase, workload_frames=workload_frames,
                     time_limit_s=60.0, early_stop=early_stop)

    yield service, make
    for run in opened:
        run.close()


@pytest.mark.parametrize("upper", [None, 8, 20])
def test_search_finds_the_exact_capacity_of_a_fixed_service_time(fixed_service, upper):
    # s = 1/256 s, 32 fps, aligned: N frames at once take N/256 s, within the 1/32 s period iff
    # N <= floor(1 / (s x fps)) = 8 (exactly on the deadline at 8). Binary fractions: no rounding.
    service, make = fixed_service
    run, probe = service(), make()
    found = search(lambda n: probe(run, n), upper, fps=32.0, deadline_s=1 / 32, phase=ALIGNED)
    assert found.cameras == math.floor(1 / (FixedService.service_s * 32)) == 8
    at = found.at_capacity
    assert at.p99_s == pytest.approx(8 / 256)
    assert at.misses == 0
    assert at.mismatch is None
    assert not probe(run, 9).passed  # one camera more fails: not an off-by-one


def test_an_overloaded_probe_stops_early(fixed_service):
    service, make = fixed_service
    run = service()
    result = make()(run, 16)
    assert not result.passed
    assert result.stopped is not None
    assert "more than the" in result.stopped
    slow = make(early_stop=False)(run, 16)  # run to the end: nearly every frame missed
    assert not slow.passed
    assert slow.stopped is None
    assert slow.misses > 0.5 * slow.frames


def test_spread_cameras_pass_where_the_average_load_fits(fixed_service):
    # Spread, 8 cameras at 32 fps arrive 1/256 s apart: each frame is done as the next arrives.
    service, make = fixed_service
    result = make(phase=SPREAD)(service(), 8)
    assert result.passed
    assert result.p99_s == pytest.approx(1 / 256)


def test_a_probe_whose_outputs_differ_fails(fixed_service):
    service, make = fixed_service
    wrong = service(reference=[[(np.array([f + 100.0]),) for f in range(5)]])
    result = make()(wrong, 2)
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


@pytest.mark.parametrize("name", [pytest.param(name, marks=[pytest.mark.slow] if name in PROCESS_STRATEGIES else [])
                                  for name in [*STRATEGIES, *ON_CPU]])
def test_every_strategy_runs_only_the_first_frames_when_asked(name, tiny_workload):
    """A warm-up round runs a run's first frames: offline the workload's first 3; with 2 cameras the
    first 4 run frames, each camera's first 2. Every strategy counts its frames through Arrivals."""
    with get_strategy("serial")(tiny_workload) as serial:
        reference = serial.run().outputs
    schedule = camera_schedule(2, 500.0, 4, tiny_workload.frame_count, ALIGNED)
    with opened(ON_CPU[name]() if name in ON_CPU else get_strategy(name), tiny_workload) as strategy:
        offline = strategy.run(frames=3)
        streamed = strategy.run(schedule=schedule, frames=4)
    tolerances = measure_calibration(tiny_workload, reference).tolerances
    assert first_mismatch([model[:3] for model in reference], offline.outputs, tiny_workload.names, tolerances) is None
    assert max(call.first_frame + call.frames for call in offline.calls) == 3
    assert first_mismatch([model[:4] for model in stream_reference(reference, schedule)], streamed.outputs,
                          tiny_workload.names, tolerances) is None
    assert max(call.first_frame + call.frames for call in streamed.calls) == 4
    assert schedule.cameras[:4].tolist() == [0, 1, 0, 1]


def test_peak_memory_does_not_grow_with_the_number_of_probes(tiny_workload):
    """A probe keeps its numbers, not its run: outputs are checked then dropped, calls go with the run.
    Python's allocations (numpy's arrays included) are traced over 1 probe and then 5 more: were each
    probe's run retained, the peak would grow by at least one run's outputs and call records per probe."""
    with get_strategy("serial")(tiny_workload) as serial:
        reference = serial.run().outputs
    probe = Probe(fps=1000.0, deadline_s=1.0, seconds=0.25, phase=ALIGNED, workload_frames=tiny_workload.frame_count,
                  time_limit_s=60.0)
    run_frames = len(probe.schedule(4))
    one_run_outputs = run_frames * sum(array.nbytes for model in reference for array in model[0])
    serial = get_strategy("serial")
    run = BenchmarkRun(run_inputs(tiny_workload, reference),
                       Case(serial, serial.default_settings(len(tiny_workload.models))),
                       Scenario(STREAMING, 1000.0, phase=ALIGNED))
    with run.opened():
        probe(run, 4)  # first-call allocations (sessions, arenas) are not the probes'
        tracemalloc.start()
        try:
            results = [probe(run, 4)]
            after_one = tracemalloc.get_traced_memory()[1]
            results += [probe(run, 4) for _ in range(5)]
            after_six = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert all(result.passed for result in results)
    assert after_six - after_one < one_run_outputs, (after_one, after_six, one_run_outputs)
