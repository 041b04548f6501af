"""BenchmarkRun (bench/measure/run.py), the one object a benchmark runs through: its strategy opened once, the
rounds timed through pytest-benchmark's pedantic (here a stand-in) with the check and the bare loops outside the
timed call, the capacity probes on the same opened strategy, and the Measurement built from what it collected."""

from __future__ import annotations

import re
from typing import Any, ClassVar

import numpy as np
import pytest

from bench.cases import Case
from bench.measure.rounds import WARMUP_FRAMES, RoundHooks
from bench.measure.run import BenchmarkRun
from bench.measure.scenarios import OFFLINE, Scenario
from strategies import STRATEGIES, RunResult, RunTimeout, StrategyUnavailable, ThreadSettings, get_strategy
from tests.helpers.fakes import FakeClock, FixedService
from tests.helpers.runs import run_inputs

SERIAL = STRATEGIES["serial"]


class Pedantic:
    """pytest-benchmark's `benchmark`, reduced to what a BenchmarkRun uses: `pedantic` calls `setup`, the target
    (the timed call) and `teardown` for every warm-up and timed round, in that order; `extra_info` is kept.
    `inside` is called right after each target, before its teardown: what it sees is the timed call's doing."""

    def __init__(self, inside=lambda: None) -> None:
        self.extra_info: dict[str, Any] = {}
        self.inside = inside
        self.calls: list[tuple[int, int]] = []  # (rounds, warmup_rounds) of each pedantic call

    def pedantic(self, target, setup=None, teardown=None, rounds=1, warmup_rounds=0, iterations=1) -> None:
        assert iterations == 1
        self.calls.append((rounds, warmup_rounds))
        for _ in range(warmup_rounds + rounds):
            setup()
            target()
            self.inside()
            teardown()


@pytest.fixture
def reference(tiny_workload):
    with get_strategy("serial")(tiny_workload) as serial:
        return serial.run().outputs


def offline(cls, workload, *settings: ThreadSettings) -> tuple[Case, Scenario]:
    return Case(cls, settings[0] if settings else cls.default_settings(len(workload.models))), Scenario(OFFLINE)


def test_the_timed_call_is_the_run_alone_checks_and_bare_loops_come_outside_it(tiny_workload, reference):
    inputs = run_inputs(tiny_workload, reference, "--rounds", "3", "--warmup", "1", "--no-sampler")
    run = BenchmarkRun(inputs, *offline(SERIAL, tiny_workload))
    seen: list[tuple[bool, int]] = []  # after each timed call: were its outputs still there, bare loops so far

    def inside() -> None:
        latest = (run.rounds.runs or run.rounds.warmups)[-1]  # the warm-up round, then the timed ones
        seen.append((all(frame != () for model in latest.outputs for frame in model), len(run.rounds.bare)))

    benchmark = Pedantic(inside)
    run.in_a_row(benchmark, RoundHooks(inputs.options.warmup, tiny_workload.frame_count))
    assert benchmark.calls == [(3, 1)]
    # Unchecked right after the call (the check is the teardown's), one bare loop before each timed round
    # (the setup's), none before the warm-up.
    assert seen == [(True, 0), (True, 1), (True, 2), (True, 3)]
    assert run.strategy is None  # closed on leaving
    rounds = run.rounds
    assert len(rounds.runs) == 3
    assert rounds.timed == rounds.runs
    (warmup,) = rounds.warmups  # the workload's first WARMUP_FRAMES frames (all 5 of the tiny one)
    assert run.warmup_frames == min(WARMUP_FRAMES, tiny_workload.frame_count)
    assert sorted({call.first_frame for call in warmup.calls}) == list(range(run.warmup_frames))
    assert all(frame == () for result in [*rounds.warmups, *rounds.runs] for model in result.outputs
               for frame in model)  # checked
    assert rounds.providers == {"cpu"}
    measurement = run.measure(benchmark)
    assert measurement.equivalence.equivalent
    assert measurement.equivalence.mismatch is None
    assert measurement.timing.rounds_wall_s == [result.wall_s for result in rounds.timed]
    assert measurement.timing.harness_overhead is not None
    assert measurement.timing.bare_loop_s is not None
    assert benchmark.extra_info == measurement.extra_info()
    assert run.overhead_line().startswith(f"harness overhead of {run.case.id}: ")


def test_only_serial_offline_is_paired_with_bare_loops(tiny_workload, reference):
    inputs = run_inputs(tiny_workload, reference, "--rounds", "2", "--warmup", "0")
    run = BenchmarkRun(inputs, *offline(STRATEGIES["threads"], tiny_workload))
    run.in_a_row(Pedantic(), RoundHooks(0, tiny_workload.frame_count))
    assert run.rounds.bare == []
    assert run.measure(Pedantic()).timing.harness_overhead is None
    assert run.overhead_line() is None


class WrongSecondRun(SERIAL):
    """Its second run differs from serial at frame 1."""

    name = "wrong_second"
    wrong_run = 2

    def open(self) -> None:
        super().open()
        self.runs = 0

    def run(self, *args: Any, **kwargs: Any) -> RunResult:
        result = super().run(*args, **kwargs)
        self.runs += 1
        if self.runs == self.wrong_run:
            result.outputs[0][1] = tuple(array + 1 for array in result.outputs[0][1])
        return result


def test_every_round_is_checked_and_a_difference_is_the_measurements(tiny_workload, reference):
    inputs = run_inputs(tiny_workload, reference, "--rounds", "2", "--warmup", "1")
    run = BenchmarkRun(inputs, *offline(WrongSecondRun, tiny_workload, ThreadSettings(intra_op=1)))
    run.in_a_row(Pedantic(), RoundHooks(1, tiny_workload.frame_count))
    measurement = run.measure(Pedantic())
    assert not measurement.equivalence.equivalent
    assert "frame 1" in measurement.equivalence.mismatch


class WrongWarmUp(WrongSecondRun):
    """Its first run, the warm-up round, differs from serial at frame 1."""

    name = "wrong_warm_up"
    wrong_run = 1


@pytest.mark.parametrize("cameras", [1, 2])
def test_a_warm_up_round_runs_each_cameras_first_frames_and_is_checked(make_workload, cameras):
    """12 frames at 200 fps: the warm-up round streams each camera's first WARMUP_FRAMES (8), paced as the timed
    rounds are; a difference in it fails the benchmark as one in a timed round does."""
    workload = make_workload(frames=12)
    with get_strategy("serial")(workload) as serial:
        reference = serial.run().outputs
    inputs = run_inputs(workload, reference, "--rounds", "1", "--warmup", "1", "--fps", "200", "--streams", str(cameras),
                        "--stream-phase", "aligned", "--no-capacity")
    (scenario,) = [s for s in inputs.options.scenarios if s.name != OFFLINE]
    run = BenchmarkRun(inputs, Case(SERIAL, ThreadSettings(intra_op=1)), scenario)
    run.in_a_row(Pedantic(), RoundHooks(1, workload.frame_count))
    (warmup,) = run.rounds.warmups
    assert run.warmup_frames == WARMUP_FRAMES * cameras
    assert sorted({call.first_frame for call in warmup.calls}) == list(range(WARMUP_FRAMES * cameras))
    assert warmup.wall_s >= (WARMUP_FRAMES - 1) / 200  # paced: the 8th frame arrives 35 ms after the first
    assert run.measure(Pedantic()).equivalence.equivalent
    wrong = BenchmarkRun(inputs, Case(WrongWarmUp, ThreadSettings(intra_op=1)), scenario)
    wrong.in_a_row(Pedantic(), RoundHooks(1, workload.frame_count))
    measurement = wrong.measure(Pedantic())
    assert not measurement.equivalence.equivalent
    assert "frame 1" in measurement.equivalence.mismatch


class TimesOutSecondRun(SERIAL):
    name = "times_out"
    closed = 0

    def open(self) -> None:
        super().open()
        self.runs = 0

    def run(self, *args: Any, **kwargs: Any) -> RunResult:
        self.runs += 1
        if self.runs == 2:
            raise RunTimeout("times_out: passed the time limit of 1 s.")
        return super().run(*args, **kwargs)

    def close(self) -> None:
        type(self).closed += 1
        super().close()


def test_a_failed_round_closes_the_strategy_and_fails_the_test_in_one_line(tiny_workload, reference):
    inputs = run_inputs(tiny_workload, reference, "--rounds", "3", "--warmup", "0")
    run = BenchmarkRun(inputs, *offline(TimesOutSecondRun, tiny_workload, ThreadSettings(intra_op=1)))
    TimesOutSecondRun.closed = 0
    run.in_a_row(Pedantic(), RoundHooks(0, tiny_workload.frame_count))
    assert str(run.rounds.failed) == "times_out: passed the time limit of 1 s."
    assert TimesOutSecondRun.closed == 1
    with pytest.raises(pytest.fail.Exception, match=rf"^{re.escape(run.case.id)}: times_out: passed the time limit of "
                                                    r"1 s\. Raise the limit with --time-limit SECONDS if the run is "
                                                    r"just slow\.$"):
        run.measure(Pedantic())


class Unavailable(SERIAL):
    name = "unavailable"

    def open(self) -> None:
        raise StrategyUnavailable("needs a GPU: none here")


def test_a_strategy_that_cannot_run_here_skips_with_its_reason(tiny_workload, reference):
    run = BenchmarkRun(run_inputs(tiny_workload, reference), *offline(Unavailable, tiny_workload))
    benchmark = Pedantic()
    with pytest.raises(pytest.skip.Exception, match=r"^needs a GPU: none here$"):
        run.in_a_row(benchmark, RoundHooks(0, tiny_workload.frame_count))
    assert benchmark.calls == []


class CountedService(FixedService):
    """FixedService counting its openings and each instance's runs."""

    opened: ClassVar[list[CountedService]] = []

    def open(self) -> None:
        super().open()
        self.runs = 0
        type(self).opened.append(self)

    def run(self, *args: Any, **kwargs: Any) -> RunResult:
        self.runs += 1
        return super().run(*args, **kwargs)


def test_the_capacity_probes_run_on_the_strategy_the_rounds_ran_on(monkeypatch, make_workload):
    clock = FakeClock()
    monkeypatch.setattr("strategies.base.pause", lambda seconds, stop: clock.sleep(seconds))
    workload = make_workload(models=1, frames=5)
    reference = [[(np.array([float(frame)]),) for frame in range(5)]]
    inputs = run_inputs(workload, reference, "--scenario", "streaming", "--fps", "32", "--stream-phase", "aligned",
                        "--probe-seconds", "2", "--rounds", "2", "--warmup", "1")
    (streaming,) = inputs.options.scenarios
    CountedService.opened = []
    run = BenchmarkRun(inputs, Case(CountedService, ThreadSettings(), (("clock", clock),)), streaming)
    run.in_a_row(Pedantic(), RoundHooks(1, workload.frame_count))
    (strategy,) = CountedService.opened  # opened once, for the rounds and every probe
    capacity = run.measure(Pedantic()).capacity
    # 1/256 s per frame, 32 fps, aligned: 8 cameras fit in a period (test_capacity.py shows it exact).
    assert capacity["cameras"] == 8
    probes = capacity["probes"]
    assert probes[0]["cameras"] == streaming.streams  # the rounds, read as a probe
    assert probes[0]["frames"] == 2 * workload.frame_count
    assert strategy.runs == 3 + len(probes) - 1  # its 3 rounds, then every probe but the rounds' own
    assert all(probe["mismatch"] is None for probe in probes)  # each probe checked against serial's outputs
