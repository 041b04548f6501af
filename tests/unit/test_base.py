"""The interface's records and timing logic, checked exactly with a fake clock."""

from __future__ import annotations

import numpy as np
import pytest

from strategies import RunResult, RunTimeout, StrategyError, ThreadSettings
from strategies.base import Arrivals
from strategies.lanes import run_model_frames
from strategies.records import CallLog, CallRecord
from strategies.serial import Serial
from tests.helpers.fakes import FakeClock


class EchoSession:
    def run(self, names, feeds):
        return [feeds["x"] * 2]


def test_call_log_records_start_and_end_with_its_clock():
    log = CallLog(FakeClock(start=10.0, step=0.25))
    (out,) = log.run(EchoSession(), {"x": np.ones(2)}, model=1, frame=7, lane="thread-1")
    np.testing.assert_array_equal(out, [2.0, 2.0])
    assert log.calls == [CallRecord(model=1, first_frame=7, frames=1, start=10.0, end=10.25, lane="thread-1")]


def test_run_result_sums_per_model_and_overlap():
    calls = [CallRecord(0, 0, 1, 0.0, 1.0, "a"), CallRecord(1, 0, 1, 0.0, 2.0, "b"), CallRecord(0, 1, 1, 1.0, 1.5, "a")]
    result = RunResult(outputs=[[], []], calls=calls, start=0.0, wall_s=2.0)
    assert result.per_model_cumulative_s(2) == [1.5, 2.0]
    assert result.overlap() == pytest.approx(3.5 / 2.0)


def test_serial_timings_come_from_the_injected_clock(tiny_workload):
    clock = FakeClock(start=0.0, step=1.0)
    with Serial(tiny_workload, clock=clock) as serial:
        result = serial.run()
    models, frames = len(tiny_workload.models), tiny_workload.frame_count
    # One reading to start, two per call, one to stop: every call lasts exactly one step.
    assert [call.duration for call in result.calls] == [1.0] * (models * frames)
    assert result.wall_s == 2 * models * frames + 1
    assert result.per_model_cumulative_s(models) == [float(frames)] * models


def test_arrivals_schedule_frames_one_period_apart():
    arrivals = Arrivals(start=5.0, period=0.04)
    assert [arrivals.time_of(i) for i in range(3)] == pytest.approx([5.0, 5.04, 5.08])
    Arrivals(start=0.0).wait_for(10**6, clock=lambda: 0.0)  # offline: never waits


def test_arrivals_stop_a_run_past_its_deadline():
    arrivals = Arrivals(start=0.0, deadline=3.0)
    arrivals.wait_for(0, clock=lambda: 2.9)
    with pytest.raises(RunTimeout, match=r"time limit of 3\.0 s"):
        arrivals.wait_for(1, clock=lambda: 3.1)


def test_a_run_with_a_time_limit_fails_when_the_clock_passes_it(tiny_workload):
    with Serial(tiny_workload, clock=FakeClock(start=0.0, step=1.0)) as serial, pytest.raises(RunTimeout):
        serial.run(time_limit=4.0)


@pytest.mark.parametrize(
    ("settings", "label"),
    [
        pytest.param(ThreadSettings(), "ort-defaults", id="defaults"),
        pytest.param(ThreadSettings(intra_op=2, inter_op=1, spinning=False), "intra2-inter1-spin0", id="tuned"),
        pytest.param(ThreadSettings(intra_op=1, parallel=True, spinning=True), "intra1-parallel-spin1", id="parallel"),
    ],
)
def test_thread_settings_labels(settings, label):
    assert settings.label == label
    assert settings.as_dict()["ort_defaults"] == (label == "ort-defaults")


def test_thread_settings_refuse_zero_threads():
    with pytest.raises(ValueError, match=r"intra_op must be at least 1 or None \(onnxruntime's default\), got 0"):
        ThreadSettings(intra_op=0)


def test_a_lane_names_its_model_and_frame_and_passes_a_timeout_through():
    def step(frame):
        if frame == 2:
            raise ValueError("bad input")
        return (np.full(1, frame),)

    with pytest.raises(StrategyError, match=r"^threads: model 'm1' failed on frame 2: bad input$"):
        run_model_frames(Arrivals(start=0.0), 4, step, strategy="threads", model="m1", clock=FakeClock())
    past = Arrivals(start=0.0, deadline=50.0)  # the fake clock reads 100: already past it
    with pytest.raises(RunTimeout):
        run_model_frames(past, 4, step, strategy="threads", model="m1", clock=FakeClock(start=100.0))
    outputs = run_model_frames(Arrivals(start=0.0), 2, step, strategy="threads", model="m1", clock=FakeClock())
    assert [int(frame_outputs[0][0]) for frame_outputs in outputs] == [0, 1]
