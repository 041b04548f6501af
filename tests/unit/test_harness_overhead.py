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
    assert overhead.line("serial-ort-defaults").startswith("harness overhead of serial-ort-defaults: +2.0% (")


def test_overhead_needs_both_sides():
    with pytest.raises(ValueError, match="at least one timed round and one bare loop"):
        HarnessOverhead.of([1.0], [])
