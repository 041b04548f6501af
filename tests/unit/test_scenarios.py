"""Scenarios, and streaming pacing and deadline counting through a strategy run on a fake clock."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.measure.metrics import frame_latencies, summarise_latencies
from bench.measure.scenarios import Scenario, minimum_duration_s, not_streamed, selected_scenarios
from strategies import ModelInput, RunTimeout, Strategy, Workload
from strategies.base import Arrivals
from strategies.records import CallLog
from tests.helpers.fakes import FakeClock


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr("strategies.base.pause", lambda seconds, stop: fake.sleep(seconds))  # Arrivals.wait_for waits here
    return fake


class FakeSession:
    def __init__(self, clock: FakeClock, compute_s: float) -> None:
        self.clock, self.compute_s = clock, compute_s

    def run(self, output_names, feeds):
        self.clock.now += self.compute_s
        return [feeds["frames"] * 2]


class PacedSerial(Strategy):
    """Serial's loop over fake sessions: waits for each frame's arrival, then runs every model."""

    name = "paced-serial"

    def __init__(self, workload: Workload, clock: FakeClock, compute_s: list[float]) -> None:
        super().__init__(workload, clock=clock)
        self.sessions = [FakeSession(clock, seconds) for seconds in compute_s]

    def _execute(self, arrivals: Arrivals):
        log = CallLog(self.clock)
        outputs = [[() for _ in range(self.workload.frame_count)] for _ in self.sessions]
        for frame in range(self.workload.frame_count):
            arrivals.wait_for(frame, self.clock)
            for model, session in enumerate(self.sessions):
                feeds = {"frames": self.workload.models[model].frames[frame]}
                outputs[model][frame] = tuple(log.run(session, feeds, model, frame, "main"))
        return outputs, log.calls


def workload(frames: int = 4, models: int = 2) -> Workload:
    tensor = np.arange(frames, dtype=np.float32).reshape(frames, 1)
    return Workload(tuple(ModelInput(f"m{index}", Path(f"m{index}.onnx"), tensor) for index in range(models)))


def test_frames_are_taken_at_their_arrival_when_the_strategy_keeps_up(clock):
    run = PacedSerial(workload(), clock, [0.0625, 0.0625]).run(period=0.25)
    assert [call.start for call in run.calls if call.model == 0] == [0.0, 0.25, 0.5, 0.75]
    assert clock.sleeps == [0.125, 0.125, 0.125]  # waiting for frames 1, 2 and 3
    assert run.wall_s == 0.875
    latency = summarise_latencies(frame_latencies(run, 0.25), Scenario("streaming", 4.0).deadline_s)
    assert (latency.max_s, latency.misses) == (0.125, 0)


def test_a_strategy_exactly_at_the_frame_rate_misses_nothing(clock):
    run = PacedSerial(workload(), clock, [0.125, 0.125]).run(period=0.25)
    assert frame_latencies(run, 0.25).tolist() == [0.25] * 4
    assert summarise_latencies(frame_latencies(run, 0.25), 0.25).misses == 0
    assert clock.sleeps == []


def test_a_slow_strategy_falls_behind_and_every_late_frame_is_counted(clock):
    # 0.375 s of work per frame at 4 fps: each frame waits longer behind the one before.
    run = PacedSerial(workload(), clock, [0.1875, 0.1875]).run(period=0.25)
    latencies = frame_latencies(run, 0.25)
    assert latencies.tolist() == [0.375, 0.5, 0.625, 0.75]
    assert summarise_latencies(latencies, 0.25).misses == 4
    assert clock.sleeps == []  # the source never waited on the consumer: the delay is in the latency
    assert run.wall_s == 1.5


def test_offline_every_frame_is_there_at_the_start(clock):
    run = PacedSerial(workload(), clock, [0.125, 0.125]).run(period=0.0)
    assert frame_latencies(run, 0.0).tolist() == [0.25, 0.5, 0.75, 1.0]
    assert clock.sleeps == []


def test_a_run_past_its_time_limit_stops(clock):
    with pytest.raises(RunTimeout, match=r"time limit of 0\.5 s"):
        PacedSerial(workload(), clock, [0.25, 0.25]).run(time_limit=0.5)


def test_scenario_ids_period_and_deadline():
    offline, stream = Scenario("offline"), Scenario("streaming", 25.0)
    assert (offline.id, offline.period, offline.deadline_s) == ("offline", 0.0, None)
    assert (stream.id, stream.period, stream.deadline_s) == ("stream25fps", 0.04, 0.04)
    assert Scenario("streaming", 29.97).id == "stream29.97fps"


@pytest.mark.parametrize(("name", "fps", "message"), [
    ("live", None, "scenario must be 'offline' or 'streaming', got 'live'"),
    ("streaming", None, "needs a frame rate above 0, got fps=None"),
    ("streaming", 0.0, "needs a frame rate above 0, got fps=0.0"),
    ("offline", 25.0, "an offline scenario has no frame rate, got fps=25.0"),
], ids=["unknown-name", "streaming-without-rate", "streaming-at-zero", "offline-with-rate"])
def test_invalid_scenarios_say_what_is_allowed(name, fps, message):
    with pytest.raises(ValueError, match=message):
        Scenario(name, fps)


@pytest.mark.parametrize(("choice", "fps", "expected"), [
    ("both", 25.0, ["offline", "stream25fps"]),
    ("both", 0.0, ["offline"]),
    ("offline", 25.0, ["offline"]),
    ("streaming", 30.0, ["stream30fps"]),
])
def test_selected_scenarios(choice, fps, expected):
    assert [scenario.id for scenario in selected_scenarios(choice, fps)] == expected


@pytest.mark.parametrize(("choice", "fps", "message"), [
    ("streaming", 0.0, "--scenario streaming needs a frame rate: give --fps above 0"),
    ("live", 25.0, "--scenario must be one of both, offline, streaming, got 'live'"),
    ("both", -1.0, "--fps must be 0 \\(no streaming\\) or above, got -1.0"),
], ids=["streaming-at-zero-fps", "unknown-choice", "negative-fps"])
def test_invalid_selections_say_what_is_allowed(choice, fps, message):
    with pytest.raises(ValueError, match=message):
        selected_scenarios(choice, fps)


@pytest.mark.parametrize(("ort_defaults", "options", "swept", "reason"), [
    (False, {}, False, None),
    (False, {"k": 1}, False, None),  # one frame per call: a stream like any other
    (False, {"k": 4}, False, "k=4 frames per call: each frame waits for 3 later ones, past the deadline"),
    (True, {}, False, "onnxruntime's defaults stream only when asked (--threads ort)"),
    (True, {}, True, None),  # a --threads sweep asked for them
], ids=["tuned", "batched-k1", "batched-k4", "ort-defaults", "ort-defaults-swept"])
def test_only_what_can_serve_a_stream_is_streamed(ort_defaults, options, swept, reason):
    assert not_streamed(ort_defaults, options, swept) == reason


def test_a_streams_least_duration_is_its_pacing_over_every_round():
    assert minimum_duration_s(200, Scenario("streaming", 25.0), rounds=4) == pytest.approx(4 * 199 / 25)
    assert minimum_duration_s(200, Scenario("offline"), rounds=4) == 0.0
