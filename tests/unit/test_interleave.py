"""--interleave: rounds in turns (A1 B1 C1 A2 ...), each benchmark's own results kept apart, a
strategy that cannot run or fails left out without stopping the others, the walls replayed to
pytest-benchmark exactly, and what cannot fit or cannot combine refused in one line."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from bench.cases import Case
from bench.interleave import Entry, Interleaved, ReplayClock, memory_refusal, run_in_turns
from bench.measure.equivalence import RoundCheck
from bench.measure.run import Rounds
from bench.measure.scenarios import Scenario
from bench.options import add_options, build_run_options
from fixtures.options import OptionError
from strategies import STRATEGIES, RunResult, StrategyError, StrategyUnavailable, ThreadSettings, get_strategy
from tests.helpers.equivalence import FLOAT32
from tests.helpers.fakes import FakeClock
from tests.helpers.runs import BENCHMARK_DEFAULTS, parse_args, run_inputs

OFFLINE = Scenario("offline")
SERIAL, THREADS = STRATEGIES["serial"], STRATEGIES["threads"]


class Unavailable(SERIAL):
    name = "unavailable"

    def open(self) -> None:
        raise StrategyUnavailable("needs a GPU: none here")


class FailsOnSecondRun(SERIAL):
    name = "fails_second"
    runs = 0

    def run(self, period: float = 0.0, time_limit: float | None = None, **kwargs: Any) -> RunResult:
        type(self).runs += 1
        if type(self).runs == 2:
            raise StrategyError("fails_second: model m failed on frame 0: boom")
        return super().run(period, time_limit, **kwargs)


class WrongOnThirdRun(SERIAL):
    name = "wrong_third"
    runs = 0

    def run(self, period: float = 0.0, time_limit: float | None = None, **kwargs: Any) -> RunResult:
        result = super().run(period, time_limit, **kwargs)
        type(self).runs += 1
        if type(self).runs == 3:
            result.outputs[1][2] = tuple(array + 1 for array in result.outputs[1][2])
        return result


class CountingSampler:
    """Stands in for the sampler process: records which benchmark's sampler each start went to."""

    def __init__(self) -> None:
        self.selected, self.starts, self.running = "", [], False

    def new(self, key: str = "") -> CountingSampler:
        self.selected = key
        return self

    def select(self, key: str) -> None:
        self.selected = key

    def start(self) -> None:
        assert not self.running
        self.running = True
        self.starts.append(self.selected)

    def stop(self) -> None:
        self.running = False

    def summary(self):
        return f"summary of {self.selected}"


@pytest.fixture
def reference(tiny_workload):
    with get_strategy("serial")(tiny_workload) as serial:
        return serial.run().outputs


def entry(key: str, cls, settings: ThreadSettings | None = None) -> Entry:
    return Entry(key, Case(cls, settings or ThreadSettings(intra_op=1)), OFFLINE)


def test_rounds_alternate_and_every_benchmark_keeps_its_own(tiny_workload, reference):
    entries = [entry("a", SERIAL), entry("b", THREADS), entry("c", SERIAL, ThreadSettings())]
    order: list[tuple[str, str, int]] = []
    sampler = CountingSampler()
    results = run_in_turns(entries, run_inputs(tiny_workload, reference, "--rounds", "3", "--warmup", "1",
                                               "--time-limit", "60"), sampler=sampler, clock=FakeClock(step=0.5),
                           order=order)
    assert order == [(key, "warmup", 1) for key in "abc"] + [
        (key, "timed", number) for number in (1, 2, 3) for key in "abc"]
    assert sampler.starts == ["a", "b", "c"] * 3  # each timed round sampled into its own benchmark's segments
    for key in "abc":
        result = results[key]
        assert result.skipped is None
        assert result.failed is None
        assert result.mismatch is None  # every round checked against serial's outputs
        assert len(result.timed) == 3
        assert all(frame == () for run in result.timed for model in run.outputs for frame in model)  # ...then dropped
        # The fake clock ticks 0.5 s a reading, two readings around each run.
        assert result.walls == [0.5, 0.5, 0.5]
        assert result.resources == f"summary of {key}"
        assert result.providers == {"cpu"}
    # From the first reading: 3 warm-ups of 1 s, then a turn of 3 rounds takes 3 s, one round each.
    assert results["a"].starts == [3.5, 6.5, 9.5]
    assert results["b"].starts == [4.5, 7.5, 10.5]
    assert len(results["a"].bare) == 3  # serial offline: one bare loop before each of its timed rounds
    assert len(results["c"].bare) == 3
    assert results["b"].bare == []


def test_a_strategy_that_cannot_run_or_fails_leaves_the_others_running(tiny_workload, reference):
    FailsOnSecondRun.runs = 0
    entries = [entry("a", SERIAL), entry("gpu", Unavailable), entry("bad", FailsOnSecondRun), entry("b", THREADS)]
    order: list[tuple[str, str, int]] = []
    results = run_in_turns(entries, run_inputs(tiny_workload, reference, "--rounds", "3", "--warmup", "0",
                                               "--time-limit", "60"), order=order)
    assert results["gpu"].skipped == "needs a GPU: none here"
    assert str(results["bad"].failed) == "fails_second: model m failed on frame 0: boom"
    assert len(results["bad"].timed) == 1  # the round before its failure; none after
    assert [key for key, _, _ in order] == ["a", "bad", "b", "a", "bad", "b", "a", "b"]
    assert len(results["a"].timed) == len(results["b"].timed) == 3


def test_every_round_of_a_benchmark_is_checked_not_only_its_first(tiny_workload, reference):
    WrongOnThirdRun.runs = 0
    results = run_in_turns([entry("a", SERIAL), entry("wrong", WrongOnThirdRun)],
                           run_inputs(tiny_workload, reference, "--rounds", "3", "--warmup", "1", "--time-limit", "60"))
    assert results["a"].mismatch is None
    assert "frame 2" in results["wrong"].mismatch  # its second timed round (the third run) differed


def test_an_interrupt_stops_the_run_and_closes_every_opened_strategy(tiny_workload, reference, monkeypatch):
    closed: list[str] = []

    class Interrupted(SERIAL):
        name = "interrupted"

        def run(self, period: float = 0.0, time_limit: float | None = None, **kwargs: Any) -> RunResult:
            raise KeyboardInterrupt

    for cls in (SERIAL, THREADS):  # Interrupted closes through serial's
        monkeypatch.setattr(cls, "close", lambda self, close=cls.close: (closed.append(self.name), close(self))[1])
    with pytest.raises(KeyboardInterrupt):
        run_in_turns([entry("a", SERIAL), entry("b", THREADS), entry("c", Interrupted)],
                     run_inputs(tiny_workload, reference, "--rounds", "2", "--warmup", "0", "--time-limit", "60"))
    assert sorted(closed) == ["interrupted", "serial", "threads"]


class RecordingBenchmark:
    """pytest-benchmark's pedantic, reduced to what it does with a timer: reads it around each round."""

    def __init__(self, timer) -> None:
        self.timer, self.walls = timer, []

    def pedantic(self, target, setup=None, rounds=1, iterations=1):
        for _ in range(rounds):
            if setup is not None:
                setup()
            start = self.timer()
            target()
            self.walls.append(self.timer() - start)


def test_the_replay_hands_pytest_benchmark_exactly_the_stored_walls():
    clock = ReplayClock()
    rounds = run_free_rounds(walls=[0.25, 0.5, 0.125])
    benchmark = RecordingBenchmark(clock)
    Interleaved({}, clock).replay(benchmark, rounds)
    assert benchmark.walls == [0.25, 0.5, 0.125]
    assert clock.done
    assert clock.__name__ == "interleaved_replay"  # what the saved run names as its timer


def test_a_failed_benchmark_raises_its_failure_inside_pedantic_before_any_reading():
    clock = ReplayClock()
    rounds = run_free_rounds(walls=[0.25])
    rounds.failed = StrategyError("threads: model m failed on frame 3: boom")
    benchmark = RecordingBenchmark(clock)
    with pytest.raises(StrategyError, match="boom"):
        Interleaved({}, clock).replay(benchmark, rounds)
    assert benchmark.walls == []
    assert clock.done


def test_a_replay_that_pytest_benchmark_did_not_read_is_an_error():
    clock = ReplayClock()
    benchmark = RecordingBenchmark(lambda: 0.0)  # a timer other than the replaying one
    with pytest.raises(RuntimeError, match=r"^pytest-benchmark read 0 of 2 interleaved rounds; its timer is not "):
        Interleaved({}, clock).replay(benchmark, run_free_rounds(walls=[0.1, 0.2]))


def run_free_rounds(walls: list[float]) -> Rounds:
    return Rounds(RoundCheck([], [], FLOAT32), RoundCheck([], [], FLOAT32), walls=walls)


def test_opening_every_strategy_at_once_is_refused_in_one_line_when_it_cannot_fit(tiny_workload):
    assert memory_refusal(tiny_workload, 3, available=2**40) is None
    refusal = memory_refusal(tiny_workload, 3, available=1000)
    assert refusal.startswith("--interleave: opening the 3 benchmarks' strategies at once needs about ")
    assert refusal.endswith("but only 1000 B is available; select fewer with --strategy, lower --frames, or drop "
                            "--interleave.")
    assert "\n" not in refusal


@pytest.mark.parametrize("flag", ["--benchmark-disable", "--benchmark-skip"])
def test_interleave_without_timed_rounds_is_refused_in_one_line(flag):
    assert parse_args(["--interleave"]).interleave
    assert not parse_args([]).interleave
    parser = argparse.ArgumentParser()
    add_options(parser.add_argument)
    values = {**BENCHMARK_DEFAULTS, **vars(parser.parse_args(["--interleave"])), flag.removeprefix("--").replace("-", "_"): True}
    with pytest.raises(OptionError, match=rf"^--interleave: {flag} times no rounds to take in turns; drop one of the two\.$"):
        build_run_options(values, {"--interleave", flag})
