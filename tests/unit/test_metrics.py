"""Per-frame completion, latency, percentiles, deadline misses, overlap and timelines on
fabricated runs. Times are multiples of 1/8 s, exact in binary, so results compare exactly."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import pytest

from bench.measure.harness import HarnessOverhead
from bench.measure.limits import PackingLimit
from bench.measure.measurement import SCHEMA_VERSION, Measurement, build_measurement
from bench.measure.metrics import (
    deadline_misses,
    frame_completions,
    frame_latencies,
    latency_over_runs,
    median_run,
    summarise_latencies,
    timeline,
)
from bench.measure.sampler import ResourceSummary
from bench.measure.scenarios import Scenario
from strategies import RunResult, ThreadSettings
from strategies.records import CallRecord

START = 100.0


def run_of(calls: list[CallRecord], models: int = 2, frames: int = 3, wall: float = 1.5, start: float = START) -> RunResult:
    outputs = [[(np.zeros(1),) for _ in range(frames)] for _ in range(models)]
    return RunResult(outputs=outputs, calls=calls, start=start, wall_s=wall)


def serial_calls(start: float = START) -> list[CallRecord]:
    """Two models one after another on three frames; model 1 takes twice as long."""
    calls, now = [], start
    for frame in range(3):
        for model, duration in ((0, 0.125), (1, 0.25)):
            calls.append(CallRecord(model, frame, 1, now, now + duration, "main"))
            now += duration
    return calls


def test_a_frame_completes_when_its_last_model_finishes():
    assert frame_completions(run_of(serial_calls())).tolist() == [100.375, 100.75, 101.125]


def test_a_call_over_several_frames_covers_each_of_them():
    calls = [CallRecord(0, 0, 3, START, START + 1.0, "process-0"),  # one call for the whole video
             *(CallRecord(1, frame, 1, START + frame * 0.5, START + frame * 0.5 + 0.25, "process-1") for frame in range(3))]
    assert frame_completions(run_of(calls)).tolist() == [101.0, 101.0, 101.25]


def test_offline_latency_runs_from_the_start_and_streaming_from_each_arrival():
    run = run_of(serial_calls())
    assert frame_latencies(run, 0.0).tolist() == [0.375, 0.75, 1.125]
    assert frame_latencies(run, 0.25).tolist() == [0.375, 0.5, 0.625]


def test_a_frame_some_model_never_ran_is_an_error_naming_both():
    calls = serial_calls()[:-1]  # model 1 never ran frame 2
    with pytest.raises(ValueError, match="frame 2 of model 1"):
        frame_completions(run_of(calls))


@pytest.mark.parametrize("call", [CallRecord(2, 0, 1, START, START + 1, "main"), CallRecord(0, 2, 2, START, START + 1, "main"),
                                  CallRecord(0, -1, 1, START, START + 1, "main"), CallRecord(0, 0, 0, START, START + 1, "main")],
                         ids=["model-out-of-range", "frames-past-the-end", "negative-frame", "zero-frames"])
def test_a_call_outside_the_run_is_an_error(call):
    with pytest.raises(ValueError, match="lies outside the run's 2 models x 3 frames"):
        frame_completions(run_of([*serial_calls(), call]))


def test_percentiles_are_numpys_linear_ones():
    values = np.random.default_rng(0).permutation(np.arange(101, dtype=float))
    summary = summarise_latencies(values, deadline_s=None)
    assert (summary.frames, summary.p50_s, summary.p90_s, summary.p99_s, summary.max_s, summary.mean_s) == \
        (101, 50.0, 90.0, 99.0, 100.0, 50.0)
    assert summary.misses is None


def test_percentiles_interpolate_between_frames():
    summary = summarise_latencies(np.array([0.5, 0.25, 1.0, 0.75]), deadline_s=0.5)
    # positions 1.5, 2.7 and 2.97 of the sorted values [0.25, 0.5, 0.75, 1.0]
    assert summary.p50_s == 0.625
    assert summary.p90_s == pytest.approx(0.925, abs=1e-15)
    assert summary.p99_s == pytest.approx(0.9925, abs=1e-15)
    assert summary.misses == 2


def test_a_frame_exactly_on_the_deadline_is_in_time():
    assert deadline_misses(np.array([0.25, 0.5, 0.5, 0.75]), 0.5) == 1
    assert deadline_misses(np.array([0.25, 0.5]), 0.5) == 0


def test_no_frames_no_percentiles():
    with pytest.raises(ValueError, match="at least one frame"):
        summarise_latencies(np.array([]), None)


def test_latency_pools_the_frames_of_every_run():
    first, second = run_of(serial_calls()), run_of(serial_calls(start=200.0), start=200.0)
    summary = latency_over_runs([first, second], 0.25, 0.5)
    assert summary.frames == 6
    assert summary.max_s == 0.625
    assert summary.misses == 2  # frame 2 of each run


def test_overlap_is_call_time_over_wall_time():
    threads = [CallRecord(model, 0, 1, START, START + 1.0, f"thread-{model}") for model in range(3)]
    assert run_of(threads, models=3, frames=1, wall=1.5).overlap() == 2.0
    assert run_of(serial_calls(), wall=1.125).overlap() == 1.0


@pytest.mark.parametrize(("walls", "expected"), [([3.0, 1.0, 2.0], 2.0), ([4.0, 1.0, 2.0, 3.0], 2.0), ([5.0], 5.0)])
def test_median_run_is_the_lower_middle_by_wall_time(walls, expected):
    assert median_run([run_of(serial_calls(), wall=wall) for wall in walls]).wall_s == expected


def test_median_run_of_nothing_is_an_error():
    with pytest.raises(ValueError, match="at least one run"):
        median_run([])


def test_timeline_is_relative_and_columnar():
    calls = [CallRecord(1, 0, 1, START + 0.25, START + 0.5, "thread-1"), CallRecord(0, 0, 1, START, START + 0.375, "thread-0"),
             CallRecord(0, 1, 1, START + 0.375, START + 0.625, "thread-0")]
    data = timeline(run_of(calls, frames=2, wall=0.75), period=0.25)
    assert data == {"wall_s": 0.75, "period_s": 0.25, "lanes": ["thread-0", "thread-1"], "model": [0, 1, 0],
                    "first_frame": [0, 0, 1], "frames": [1, 1, 1], "start": [0.0, 0.25, 0.375], "end": [0.375, 0.5, 0.625],
                    "lane": [0, 1, 0]}


def measured(runs: list[RunResult], scenario: Scenario, overhead: HarnessOverhead | None = None,
             resources: ResourceSummary | None = None, **more: Any) -> Measurement:
    return build_measurement(runs, strategy="serial", settings=ThreadSettings(), strategy_options={"k": 2},
                             scenario=scenario, models=["a", "b"], batch=1,
                             provider="CPUExecutionProvider", mismatch=None, model_flops=[1, None], model_set_hash="h",
                             provider_options={}, tolerance="float32", equivalence={"models": {}}, resources=resources,
                             sample_rate=10.0, gpu_absent="no GPU here", packing_limit=PackingLimit((0.5, 0.25), 2),
                             overhead=overhead, **more)


def test_measurement_of_a_stream_carries_latency_deadline_and_the_median_runs_timeline():
    runs = [run_of(serial_calls(), wall=1.25), run_of(serial_calls(start=200.0), start=200.0, wall=1.5),
            run_of(serial_calls(start=300.0), start=300.0, wall=2.0)]
    info = measured(runs, Scenario("streaming", 4.0)).extra_info()
    settings, timing, latency, resources = info["settings"], info["timing"], info["latency"], info["resources"]
    assert (settings["scenario"], settings["target_fps"], latency["deadline_s"]) == ("streaming", 4.0, 0.25)
    assert (latency["frames"], latency["max_s"], latency["misses"]) == (9, 0.625, 9)
    assert timing["overlap"] == 1.125 / 1.5  # the median run's
    assert timing["timeline"]["wall_s"] == 1.5
    assert timing["timeline"]["start"][0] == 0.0
    # sampling was off: no resource numbers, and the rate says so
    assert (resources["cpu_util_mean"], resources["peak_pss_bytes"], resources["sampler_rate_hz"]) == (None, None, None)
    assert resources["gpu_absent"] == "no GPU here"


def test_a_measurement_is_built_once_with_every_field_and_cannot_be_changed():
    offline = measured([run_of(serial_calls(), wall=1.5)], Scenario("offline"),
                       overhead=HarnessOverhead.of([[1.5]], [[1.25]]))
    assert (offline.timing.limit_s, offline.timing.efficiency) == (0.375, 0.375 / 1.5)
    assert offline.settings.strategy_options == {"k": 2}
    assert offline.timing.packing_limit == PackingLimit((0.5, 0.25), 2).as_dict()
    assert (offline.timing.harness_overhead, offline.timing.bare_loop_s) == (1.5 / 1.25 - 1, 1.25)
    with pytest.raises(dataclasses.FrozenInstanceError):
        offline.timing.efficiency = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        offline.timing = offline.timing  # type: ignore[misc]
    stream = measured([run_of(serial_calls(), wall=1.5)], Scenario("streaming", 4.0))
    assert stream.timing.limit_s == 0.375
    assert stream.timing.efficiency is None


def test_extra_info_has_the_schema_version_and_the_overhead_keys_only_where_measured():
    plain = measured([run_of(serial_calls())], Scenario("offline")).extra_info()
    assert plain["schema_version"] == SCHEMA_VERSION
    assert "harness_overhead" not in plain["timing"]
    assert "bare_loop_s" not in plain["timing"]
    assert not {"strategy_info", "capacity"} & set(plain)
    paired = measured([run_of(serial_calls())], Scenario("offline"), overhead=HarnessOverhead.of([[1.0]], [[0.5]]))
    assert set(paired.extra_info()["timing"]) - set(plain["timing"]) == {"harness_overhead", "bare_loop_s"}
    assert Measurement.from_extra_info(paired.extra_info()) == paired


def test_a_built_measurement_goes_through_schema_2_json_and_back_unchanged():
    resources = dataclasses.replace(ResourceSummary.absent(), samples=4, cpu_util_mean=0.5, peak_uss_bytes=2**20,
                                    foreign_load_cores=0.75, rounds_foreign_load_cores=[0.5, 1.0], usable_cores=2)
    runs = [run_of(serial_calls(), wall=1.25), run_of(serial_calls(start=200.0), start=200.0, wall=1.5)]
    built = [measured(runs, Scenario("offline"), overhead=HarnessOverhead.of([[1.5]], [[1.25]]), resources=resources,
                      strategy_info={"ray_version": "2.9"}),
             measured(runs, Scenario("streaming", 4.0), capacity={"cameras": 3, "fps": 4.0, "probes": []}),
             measured(runs, Scenario("offline"))]
    for m in built:
        info = json.loads(json.dumps(m.extra_info()))
        assert info["schema_version"] == 2
        assert Measurement.from_extra_info(info) == m
    offline, stream, _ = (m.extra_info() for m in built)
    assert (offline["timing"]["wall_s"], offline["resources"]["samples"], offline["settings"]["label"]) == \
        (1.25, 4, "ort-defaults")
    assert (offline["strategy_info"], stream["capacity"]["cameras"], stream["latency"]["deadline_s"]) == \
        ({"ray_version": "2.9"}, 3, 0.25)


def test_timeline_lanes_follow_the_models_they_serve_then_their_names():
    calls = [CallRecord(3, 0, 1, START, START + 0.25, "process-3"), CallRecord(2, 0, 1, START + 0.125, START + 0.25, "process-2"),
             CallRecord(0, 0, 1, START, START + 0.125, "worker-10"), CallRecord(1, 0, 1, START, START + 0.125, "worker-2"),
             CallRecord(0, 1, 1, START, START + 0.125, "worker-2")]
    data = timeline(run_of(calls, models=4, frames=2))
    assert data["lanes"] == ["worker-2", "worker-10", "process-2", "process-3"]
    assert data["lane"] == [1, 0, 0, 3, 2]  # calls ordered by start, then model


def test_the_foreign_load_is_stored_per_benchmark_and_read_back():
    resources = dataclasses.replace(ResourceSummary.absent(), samples=4, foreign_load_cores=0.75,
                        rounds_foreign_load_cores=[0.5, 1.0], usable_cores=2)
    m = measured([run_of(serial_calls())], Scenario("offline"), resources=resources)
    info = m.extra_info()
    held = info["resources"]
    assert (held["foreign_load_cores"], held["rounds_foreign_load_cores"], held["usable_cores"]) == (0.75, [0.5, 1.0], 2)
    assert Measurement.from_extra_info(info) == m
    unsampled = measured([run_of(serial_calls())], Scenario("offline")).extra_info()
    assert not {"foreign_load_cores", "rounds_foreign_load_cores", "usable_cores"} & set(unsampled["resources"])
