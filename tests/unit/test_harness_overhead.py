"""The bare-loop baseline: what `serial` costs beyond running its sessions, from fabricated readings."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from bench.measure.harness import HarnessOverhead, bare_loop_s


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
    assert bare_loop_s(sessions, ["x", "y"], frames, clock=lambda: next(ticks)) == 0.25
    assert calls == [("a:x", 0.0), ("b:y", 10.0), ("a:x", 1.0), ("b:y", 11.0), ("a:x", 2.0), ("b:y", 12.0)]


def test_overhead_is_the_median_timed_round_over_the_median_bare_loop():
    overhead = HarnessOverhead.of([1.01, 1.02, 1.30], [1.00, 0.99, 1.01])
    assert overhead.fraction == pytest.approx(0.02)
    assert overhead.rounds == 3
    assert overhead.line("serial-ort-defaults").startswith("harness overhead of serial-ort-defaults: +2.0%, 95% CI ")


@pytest.mark.parametrize(("harness", "bare", "within"), [
    pytest.param([1.10, 1.11, 1.12, 1.10, 1.11], [1.00, 1.01, 1.00, 1.01, 1.00], False, id="clear-overhead"),
    pytest.param([1.05, 0.90, 1.20, 0.95, 1.10], [1.00, 1.15, 0.92, 1.08, 0.97], True, id="noise"),
])
def test_the_overhead_carries_the_interval_of_its_rounds_and_says_when_noise_covers_it(harness, bare, within):
    overhead = HarnessOverhead.of(harness, bare)
    low, high = overhead.interval
    assert low <= overhead.fraction <= high
    assert (low <= 0 <= high) is within
    assert ("within the rounds' noise" in overhead.line("serial")) is within


def test_one_round_has_no_interval():
    overhead = HarnessOverhead.of([1.1], [1.0])
    assert overhead.interval is None
    assert "CI" not in overhead.line("serial")


def test_overhead_needs_both_sides():
    with pytest.raises(ValueError, match="at least one timed round and one bare loop"):
        HarnessOverhead.of([1.0], [])
