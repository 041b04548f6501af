"""The bare-loop baseline: what `serial` costs beyond running its sessions, from fabricated readings."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from bench.measure.harness import HarnessOverhead, bare_loop, frame_seconds
from strategies import RunResult
from strategies.records import CallRecord


class RecordingSession:
    def __init__(self, calls: list[tuple[str, float]], name: str) -> None:
        self.calls, self.name = calls, name

    def run(self, output_names, feeds):
        ((input_name, array),) = feeds.items()
        self.calls.append((f"{self.name}:{input_name}", float(array[0])))
        return [array]


def test_the_bare_loop_runs_every_session_on_every_frame_in_serials_order_and_times_only_that():
    calls: list[tuple[str, float]] = []
    sessions = [RecordingSession(calls, "a"), RecordingSession(calls, "b")]
    frames = [np.arange(3, dtype=np.float32).reshape(3, 1), np.arange(10, 13, dtype=np.float32).reshape(3, 1)]
    ticks = itertools.count(start=5.0, step=0.25)
    assert bare_loop(sessions, ["x", "y"], frames, clock=lambda: next(ticks)) == [0.25, 0.25, 0.25]  # a reading per frame
    assert calls == [("a:x", 0.0), ("b:y", 10.0), ("a:x", 1.0), ("b:y", 11.0), ("a:x", 2.0), ("b:y", 12.0)]


def frames(*medians: float, count: int = 5) -> list[list[float]]:
    """Rounds of `count` frames, each round's median frame the given seconds."""
    return [[median] * count for median in medians]


def test_a_timed_runs_frame_times_run_from_one_frames_last_call_to_the_next():
    calls = [CallRecord(0, 0, 1, 10.1, 10.2, "main"), CallRecord(1, 0, 1, 10.2, 10.5, "main"),
             CallRecord(0, 1, 1, 10.6, 10.7, "main"), CallRecord(1, 1, 1, 10.7, 11.0, "main")]
    seconds = frame_seconds(RunResult(outputs=[], calls=calls, start=10.0, wall_s=1.05))
    assert seconds == pytest.approx([0.5, 0.5])  # the 0.1 s before each frame's first call counts: the harness's


def test_overhead_is_the_median_frame_timed_over_bare_and_the_walls_are_kept_beside_it():
    overhead = HarnessOverhead.of(frames(0.0101, 0.0102, 0.0130), frames(0.0100, 0.0099, 0.0101),
                                  harness_walls=[1.0, 1.1, 1.2])
    assert overhead.fraction == pytest.approx(0.02)
    assert (overhead.rounds, overhead.harness_s, overhead.bare_s) == (3, 1.1, pytest.approx(0.05))
    assert overhead.line("serial-ort-defaults").startswith("harness overhead of serial-ort-defaults: +2.0%, 95% CI ")


def test_a_few_frames_slowed_by_another_process_move_the_wall_but_not_the_overhead():
    # Each timed round: 100 frames of 10.1 ms (1% harness), and in one round 10 frames a core was taken for 50 ms.
    bare = [[0.010] * 100 for _ in range(3)]
    timed = [[0.0101] * 100, [0.0101] * 90 + [0.060] * 10, [0.0101] * 100]
    overhead = HarnessOverhead.of(timed, bare)
    assert overhead.fraction == pytest.approx(0.01)
    walls = HarnessOverhead.of([[sum(round_)] for round_ in timed], [[sum(round_)] for round_ in bare])
    assert walls.interval[1] > 0.4  # the same rounds read by their walls: up to +50%, the noise, not the harness


def test_overhead_needs_frames_on_both_sides():
    with pytest.raises(ValueError, match="at least one timed round and one bare loop"):
        HarnessOverhead.of(frames(0.01), [])
    with pytest.raises(ValueError, match="each with frames"):
        HarnessOverhead.of(frames(0.01), [[]])


@pytest.mark.parametrize(("harness", "bare", "within"), [
    pytest.param([1.10, 1.11, 1.12, 1.10, 1.11], [1.00, 1.01, 1.00, 1.01, 1.00], False, id="clear-overhead"),
    pytest.param([1.05, 0.90, 1.20, 0.95, 1.10], [1.00, 1.15, 0.92, 1.08, 0.97], True, id="noise"),
])
def test_the_overhead_carries_the_interval_of_its_rounds_and_says_when_noise_covers_it(harness, bare, within):
    overhead = HarnessOverhead.of(frames(*harness), frames(*bare))
    low, high = overhead.interval
    assert low <= overhead.fraction <= high
    assert (low <= 0 <= high) is within
    assert ("within the rounds' noise" in overhead.line("serial")) is within


def test_one_round_has_no_interval():
    overhead = HarnessOverhead.of(frames(1.1), frames(1.0))
    assert overhead.interval is None
    assert "CI" not in overhead.line("serial")
