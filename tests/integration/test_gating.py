"""Gating: within-run gates (--gate), the statistical comparison of two saved runs
(`python -m bench.compare`), and the comparability of saved runs. Exact checks on
fabricated data first, then the flows a CI job follows, end to end with pytester."""

from __future__ import annotations

import argparse
import json
import math
import platform
from pathlib import Path

import pytest
from scipy.stats import mannwhitneyu

from bench.compare.comparability import compared_workload_differences, machine_differences, workload_differences
from bench.compare.gates import Gate, evaluate, parse_gate, strategy_of
from bench.compare.stats import compare_rounds, history_regressions, main, minimum_p
from bench.measure.limits import default_time_limit, parse_time_limit
from bench.measure.measurement import V1_PLACES, Measurement
from tests.helpers.measurements import flat
from tests.helpers.run_bench import bench_pytester_subprocess, compare_subprocess

pytest_plugins = ["pytester"]


# --- gates -------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "gate"), [
    ("threads >= 1.3x serial-ort-defaults", Gate("threads", 1.3, "serial-ort-defaults")),
    ("threads>=1.3xserial", Gate("threads", 1.3, "serial")),
    ("  asyncio >= .9x serial  ", Gate("asyncio", 0.9, "serial")),
    ("processes_shm-intra1-inter1-spin0 >= 2x processes", Gate("processes_shm-intra1-inter1-spin0", 2.0, "processes")),
])
def test_parse_gate(text: str, gate: Gate) -> None:
    assert parse_gate(text) == gate


@pytest.mark.parametrize(("text", "message"), [
    pytest.param("threads > 1.3x serial", "expected FAST >= FACTORx SLOW", id="operator"),
    pytest.param("threads >= 1.3 serial", "expected FAST >= FACTORx SLOW", id="no-x"),
    pytest.param("threads >= -1x serial", "expected FAST >= FACTORx SLOW", id="negative"),
    pytest.param("threads >= 0x serial", "the factor must be positive", id="zero"),
    pytest.param("serial >= 2x serial", "two different benchmarks", id="same"),
    pytest.param("", "expected FAST >= FACTORx SLOW", id="empty"),
])
def test_parse_gate_rejects(text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        parse_gate(text)


def test_strategy_of_prefers_the_longest_name() -> None:
    names = ["serial", "processes", "processes_shm"]
    assert strategy_of("processes_shm-ort-defaults", names) == "processes_shm"
    assert strategy_of("processes-ort-defaults", names) == "processes"
    assert strategy_of("serial", names) == "serial"
    assert strategy_of("gpu-ort-defaults", names) is None


def measurement(strategy: str, settings: str, rounds: list[float]) -> Measurement:
    return flat(strategy=strategy, settings=settings, ort_defaults=settings == "ort-defaults", models=["a"],
                frames=4, batch=1, provider="cpu", per_model_cumulative_s=[0.0], wall_s=rounds[0], fps=0.0,
                overlap=1.0, equivalent=True, rounds_wall_s=rounds)


def test_gates_on_fabricated_measurements() -> None:
    measurements = [measurement("serial", "ort-defaults", [3.0, 2.0, 9.0]),  # median 3.0
                    measurement("threads", "intra1", [1.0, 1.5, 2.0]),  # median 1.5
                    measurement("asyncio", "intra2", [4.0, 4.0, 4.0])]
    labels = {"serial": "intra2", "threads": "intra1", "asyncio": "intra2"}
    results = evaluate([Gate("threads", 2.0, "serial-ort-defaults"), Gate("threads", 2.01, "serial-ort-defaults"),
                        Gate("asyncio", 0.75, "serial-ort-defaults"), Gate("serial", 1.0, "threads")],
                       measurements, labels)
    assert [(r.passed, r.speedup) for r in results[:3]] == [(True, 2.0), (False, 2.0), (True, 0.75)]
    # 'serial' means serial with its default settings (intra2), which did not run here.
    assert not results[3].passed
    assert results[3].speedup is None
    assert "no measurement of 'serial'" in results[3].reason


# --- time limit --------------------------------------------------------------------------

def test_default_time_limit_grows_with_the_work() -> None:
    assert default_time_limit(frames=40, models=4) == 380.0
    assert default_time_limit(frames=1000, models=4) == 8060.0


@pytest.mark.parametrize("text", ["0", "-1", "nan", "soon"])
def test_time_limit_must_be_positive_seconds(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=repr(text)):
        parse_time_limit(text)


# --- statistical comparison of two runs ----------------------------------------------------

OLD = [1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6]  # median 1.3


def test_clear_slowdown_is_a_regression() -> None:
    new = [2.0, 2.2, 2.4, 2.6, 2.8, 3.0, 3.2]  # median 2.6: twice as slow, no overlap
    result = compare_rounds("b", OLD, new)
    assert result.ratio == pytest.approx(2.0)
    assert result.p_value == pytest.approx(2 / math.comb(14, 7))  # exact test, complete separation
    assert 1 < result.ci_low <= result.ratio <= result.ci_high
    assert result.verdict == "slower"
    assert result.regressed


def test_speedup_is_reported_as_faster() -> None:
    assert compare_rounds("b", OLD, [value / 2 for value in OLD]).verdict == "faster"


def test_same_rounds_are_no_change() -> None:
    result = compare_rounds("b", OLD, list(reversed(OLD)))
    assert (result.ratio, result.p_value, result.verdict) == (1.0, 1.0, "no significant change")


def test_significant_but_small_change_is_not_a_regression() -> None:
    tight = [1.000, 1.001, 1.002, 1.003, 1.004, 1.005, 1.006]
    result = compare_rounds("b", tight, [value * 1.03 for value in tight], min_effect=0.05)
    assert result.p_value == pytest.approx(2 / math.comb(14, 7))  # significant...
    assert result.ratio == pytest.approx(1.03)  # ...but below the 5% that counts
    assert result.verdict == "no significant change"


def test_three_rounds_cannot_be_significant() -> None:
    assert minimum_p(3, 3) == pytest.approx(0.1)
    result = compare_rounds("b", [1.0, 1.1, 1.2], [5.0, 5.1, 5.2])
    assert result.p_value == pytest.approx(0.1)
    assert result.verdict == "too few rounds"


def saved_benchmark(rounds: list[float], **stats: float) -> dict:
    return {"param": "serial-ort-defaults-offline", "extra_info": {"rounds_wall_s": rounds}, "stats": stats}


def test_history_regressions_say_how_much_against_which_run_and_how_significant() -> None:
    from pytest_benchmark.utils import parse_compare_fail

    name = "bench/test_strategies.py::test_strategy[serial-ort-defaults-offline]"
    saved = {"history/m/0001_base.json": {name: saved_benchmark(OLD, median=1.3)}}
    slower = {name: saved_benchmark([value * 2 for value in OLD], median=2.6)}
    noisy = {name: saved_benchmark([1.6, 1.0, 1.5, 1.1, 1.7, 1.2, 1.4], median=1.5)}  # overlaps OLD
    short = {name: saved_benchmark([5.0, 5.2], median=5.1)}
    median_10 = [parse_compare_fail("median:10%")]

    verdict = history_regressions(median_10, slower, saved)
    assert verdict.within_noise == []
    [line] = verdict.failed
    assert line.startswith("serial-ort-defaults-offline against 0001_base: median 1.3 s -> 2.6 s, +100.0% (limit +10%); "
                           "significant: Mann-Whitney U p = 0.00058, 95% CI of new/old median ")
    # Beyond the threshold, but the rounds overlap: noise, reported apart and not failed.
    verdict = history_regressions(median_10, noisy, saved)
    assert verdict.failed == []
    [line] = verdict.within_noise
    p_value = mannwhitneyu(noisy[name]["extra_info"]["rounds_wall_s"], OLD).pvalue
    assert p_value > 0.05
    assert line.endswith(f"+15.4% (limit +10%); not significant: Mann-Whitney U p = {p_value:.2g}, within the rounds' noise")
    # Too few rounds to tell: the threshold alone decides, and the line says why.
    [line] = history_regressions([parse_compare_fail("median:0.5")], short, saved).failed
    assert line.endswith("median 1.3 s -> 5.1 s, +3.8 s (limit +0.5 s); cannot be significant with 7 and 2 rounds "
                         "(smallest possible p 0.056); run with --rounds 10 or more to tell")
    assert history_regressions([parse_compare_fail("median:200%")], slower, saved).failed == []
    assert history_regressions(median_10, {"other": slower[name]}, saved).failed == []  # not in the saved run


def saved_run(path: Path, rounds: list[float], schema_2: bool = False, **extra: object) -> Path:
    """A saved run of one benchmark, its extra_info flat (schema 0) or, with `schema_2`, one dict per part."""
    info: dict[str, object] = {"frames": 4, "batch": 1, "models": ["a"], "model_set_hash": "abc", "provider": "cpu",
                               "thread_settings": {"intra_op_num_threads": 1}, "rounds_wall_s": rounds, **extra}
    if schema_2:
        info = as_schema_2(info)
    path.write_text(json.dumps({"machine_info": {"node": path.stem}, "benchmarks": [
        {"name": "test_strategy[serial-ort-defaults]", "fullname": "bench/test_strategies.py::test_strategy[serial-ort-defaults]",
         "extra_info": info, "stats": {"median": 1.0}}]}))
    return path


def test_compare_cli_fails_only_on_request(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = saved_run(tmp_path / "old.json", OLD)
    new = saved_run(tmp_path / "new.json", [value * 2 for value in OLD])
    assert main([str(old), str(new)]) == 0
    assert main([str(old), str(new), "--fail-on-regression"]) == 1
    out = capsys.readouterr().out
    assert "slower" in out
    assert "note: different machine or software: node: 'old' -> 'new'" in out
    assert main([str(old), str(old), "--fail-on-regression"]) == 0


def test_compare_cli_refuses_different_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = saved_run(tmp_path / "old.json", OLD)
    new = saved_run(tmp_path / "new.json", OLD, frames=8, provider="cuda")
    assert main([str(old), str(new), "--fail-on-regression"]) == 2
    assert "timed different work: frames: 4 -> 8; provider: 'cpu' -> 'cuda'" in capsys.readouterr().out
    assert main([str(old), str(new), "--force"]) == 0


def as_schema_2(info: dict) -> dict:
    """Flat extra_info entries in schema 2's places (only those of the parts)."""
    nested: dict = {"schema_version": 2}
    for key, value in info.items():
        part, name = V1_PLACES[key]
        nested.setdefault(part, {})[name] = value
    return nested


def test_compare_cli_compares_a_flat_run_with_a_schema_2_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = saved_run(tmp_path / "old.json", OLD)
    new = saved_run(tmp_path / "new.json", [value * 2 for value in OLD], schema_2=True)
    assert main([str(old), str(new), "--fail-on-regression"]) == 1  # the rounds of both read: slower
    assert "slower" in capsys.readouterr().out
    assert main([str(old), str(saved_run(tmp_path / "same.json", OLD, schema_2=True)), "--fail-on-regression"]) == 0
    other = saved_run(tmp_path / "other.json", OLD, schema_2=True, frames=8)
    assert main([str(old), str(other), "--fail-on-regression"]) == 2
    assert "timed different work: frames: 4 -> 8" in capsys.readouterr().out


def test_compare_cli_needs_per_round_times(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = saved_run(tmp_path / "old.json", [])
    assert main([str(old), str(old)]) == 2
    assert "has no per-round times" in capsys.readouterr().err


def test_workload_differences_name_each_key() -> None:
    old = {"frames": 4, "batch": 1, "model_set_hash": "a", "provider": "cpu"}
    assert workload_differences(old, {**old, "batch": 2, "model_set_hash": "b"}) == [
        "batch: 1 -> 2", "model_set_hash: 'a' -> 'b'"]
    saved = {"run.json": {"x": {"extra_info": old}, "y": {"extra_info": old}}}
    assert compared_workload_differences({"x": {**old, "frames": 5}, "y": old, "z": {}}, saved) == [
        "x vs run.json: frames: 4 -> 5"]
    # A run made now (schema 2: the workload under "settings") against one saved flat: the same names, the same lines.
    assert compared_workload_differences({"x": as_schema_2({**old, "frames": 5}), "y": as_schema_2(old)}, saved) == [
        "x vs run.json: frames: 4 -> 5"]
    assert workload_differences(as_schema_2(old), {**old, "batch": 2}) == ["batch: 1 -> 2"]


def test_machine_differences_name_what_both_runs_recorded() -> None:
    old = {"node": "a", "cpu": {"hz_actual": [1, 0]}, "fanbench": {"onnxruntime": "1.31.0", "gpu": None,
                                                                   "workload": {"frames": 8}}}
    new = {"node": "a", "cpu": {"hz_actual": [2, 0], "brand_raw": "x"},
           "fanbench": {"onnxruntime": "1.32.0", "gpus": [], "gpu": {"name": "H100"}, "workload": {"frames": 40}}}
    # The clock reading and the requested workload are no machine difference; a key one run lacks is none either.
    assert machine_differences(old, new) == ["fanbench.onnxruntime: '1.31.0' -> '1.32.0'",
                                             "fanbench.gpu.name: None -> 'H100'"]


def test_a_run_with_ray_and_one_without_differ_in_no_machine_entry_but_a_ray_upgrade_is_named() -> None:
    without = {"node": "a", "fanbench": {"onnxruntime": "1.32.0", "ray": None}}
    with_ray = {"node": "a", "fanbench": {"onnxruntime": "1.32.0", "ray": {"version": "2.60.0", "nodes": []}}}
    upgraded = {"node": "a", "fanbench": {"onnxruntime": "1.32.0", "ray": {"version": "2.61.0", "nodes": []}}}
    saved_before_the_key = {"node": "a", "fanbench": {"onnxruntime": "1.32.0"}}
    assert machine_differences(without, with_ray) == []
    assert machine_differences(with_ray, without) == []
    assert machine_differences(saved_before_the_key, with_ray) == []
    assert machine_differences(with_ray, upgraded) == ["fanbench.ray.version: '2.60.0' -> '2.61.0'"]


# --- end to end: the flows a CI job follows -------------------------------------------------

DELAY_PLUGIN = '''
"""Test-only strategy: serial plus FANBENCH_TEST_DELAY_S of sleep before every session.run."""
import os
import time

from strategies.registry import STRATEGIES
from strategies.serial import Serial


class DelayedSerial(Serial):
    name = "serial_delayed"

    def run_one(self, log, model, frame, lane):
        time.sleep(float(os.environ["FANBENCH_TEST_DELAY_S"]))
        return super().run_one(log, model, frame, lane)


STRATEGIES[DelayedSerial.name] = DelayedSerial
'''


@pytest.fixture
def bench(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    """Run `pytest bench` (small workload, the delayed strategy available) with a given delay."""
    pytester.makepyfile(delay_plugin=DELAY_PLUGIN)

    def run(delay: float, *args: str, strategies: tuple[str, ...] = ("serial_delayed",)) -> pytest.RunResult:
        monkeypatch.setenv("FANBENCH_TEST_DELAY_S", str(delay))
        selected = [arg for name in strategies for arg in ("--strategy", name)]
        return bench_pytester_subprocess(
            pytester, "-p", "delay_plugin",
            f"--benchmark-storage=file://{pytester.path / 'history'}", "--model-size", "tiny", "--models", "2",
            "--frames", "4", "--frame-size", "32x32", "--batch", "1", "--rounds", "7", "--warmup", "1",
            "--scenario", "offline", "--no-report", *selected, *args)

    return run


@pytest.mark.slow
def test_compare_fail_catches_a_real_slowdown_and_passes_an_unchanged_run(bench, pytester: pytest.Pytester) -> None:
    # Every call sleeps 10 ms in the baseline (80 ms a run) and 30 ms in the slow run: 3x slower.
    base = bench(0.01, "--benchmark-save=base")
    base.assert_outcomes(passed=1)

    slow = bench(0.03, "--benchmark-save=slow", "--benchmark-compare=0001", "--benchmark-compare-fail=mean:50%")
    # One block saying what regressed, by how much, against which run and how significantly; then pytest's own
    # summary, and status 1 (not pytest-benchmark's PerformanceRegression traceback in place of the summary).
    assert slow.ret == pytest.ExitCode.TESTS_FAILED
    slow.assert_outcomes(passed=1)
    slow.stdout.fnmatch_lines([
        "*= fanbench =*",  # our table is still printed
        "*= fanbench: slower than the saved run (--benchmark-compare-fail=mean:50%) =*",
        "serial_delayed-*-offline against 0001_base: mean * s -> * s, +*% (limit +50%); significant: Mann-Whitney U "
        "p = 0.00058, 95% CI of new/old median * .. *",
        "A check fails when its threshold is exceeded and the rounds differ significantly*",
        "*= 1 passed in *"])
    assert "Traceback" not in slow.stdout.str() + slow.stderr.str()

    same = bench(0.01, "--no-history", "--benchmark-compare=0001", "--benchmark-compare-fail=mean:100%")
    assert same.ret == 0, same.stdout.str()

    # The same two saved runs, compared statistically: 7 rounds each, completely separated.
    files = sorted((pytester.path / "history").rglob("*.json"))
    assert [file.name.split("_")[0] for file in files] == ["0001", "0002"]
    compared = compare_subprocess(*map(str, files), "--fail-on-regression")
    assert compared.returncode == 1, compared.stdout + compared.stderr
    pytest.LineMatcher(compared.stdout.splitlines()).fnmatch_lines([
        "*test_strategy*serial_delayed*slower", "Slower (p < 0.05, more than 5% slower)*"])


@pytest.mark.slow
def test_compare_fail_without_a_saved_run_is_refused_before_the_run(bench, pytester: pytest.Pytester) -> None:
    result = bench(0.0, "--benchmark-compare-fail=median:10%")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --benchmark-compare-fail: no saved run of this machine in '*history' to compare "
                                 "with; run once without it to save a baseline, or name one with --benchmark-compare=NUMBER."])
    assert "test_strategy" not in result.stdout.str()  # nothing ran
    assert not list((pytester.path / "history").rglob("*.json"))


@pytest.mark.slow
def test_compare_fail_refuses_a_run_of_different_work(bench) -> None:
    bench(0.0, "--benchmark-save=base").assert_outcomes(passed=1)
    other = bench(0.0, "--no-history", "--frames", "5", "--benchmark-compare=0001", "--benchmark-compare-fail=mean:1000%")
    assert other.ret == pytest.ExitCode.TESTS_FAILED
    other.stdout.fnmatch_lines(["*fanbench: compared runs timed different work*", "*frames: 4 -> 5*",
                                "Refusing to gate on this comparison*"])


@pytest.mark.slow
def test_gates_fail_the_session_when_not_met(bench) -> None:
    result = bench(0.02, "--no-history", "--gate", "serial >= 2x serial_delayed", "--gate", "serial_delayed >= 1.1x serial",
                   strategies=("serial", "serial_delayed"))
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*fanbench gates*", "PASS  serial >= 2x serial_delayed: *",
                                 "FAIL  serial_delayed >= 1.1x serial: *below 1.1x."])


@pytest.mark.slow
def test_gate_naming_a_strategy_not_run_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = bench_pytester_subprocess(pytester,
                                           "--no-history", "--strategy", "serial", "--gate", "threads >= 2x serial")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*'threads' is not benchmarked in this run (--strategy selects serial)*"])


SCHEDULE_PLUGIN = '''
"""Test-only strategy: serial plus, in its n-th run (warm-up included), FANBENCH_TEST_SCHEDULE's n-th
number of seconds of sleep before every session.run: rounds as fast or as slow as a test needs."""
import os
import time

from strategies.registry import STRATEGIES
from strategies.serial import Serial


class ScheduledSerial(Serial):
    name = "serial_scheduled"
    runs = 0

    def run(self, *args, **kwargs):
        schedule = [float(value) for value in os.environ["FANBENCH_TEST_SCHEDULE"].split(",")]
        self.delay = schedule[self.runs % len(schedule)]
        self.runs += 1
        return super().run(*args, **kwargs)

    def run_one(self, log, model, frame, lane):
        time.sleep(self.delay)
        return super().run_one(log, model, frame, lane)


STRATEGIES[ScheduledSerial.name] = ScheduledSerial
'''


@pytest.mark.slow
def test_the_documented_gate_recipe_fails_a_real_regression_and_not_noise(pytester: pytest.Pytester,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/ci.md's recipe, command for command: save a baseline under a name, gate later runs on it."""
    pytester.makepyfile(schedule_plugin=SCHEDULE_PLUGIN)

    def run(schedule: list[float], *recipe: str) -> pytest.RunResult:
        monkeypatch.setenv("FANBENCH_TEST_SCHEDULE", ",".join(map(str, schedule)))
        return bench_pytester_subprocess(
            pytester, "-p", "schedule_plugin", f"--benchmark-storage=file://{pytester.path / 'history'}",
            "--model-size", "tiny", "--models", "2", "--frames", "4", "--frame-size", "32x32", "--batch", "1",
            "--warmup", "1", "--scenario", "offline", "--no-report", "--strategy", "serial_scheduled", *recipe)

    save = ("--rounds", "10", "--benchmark-save=baseline")
    gate = ("--rounds", "10", "--benchmark-compare=baseline", "--benchmark-compare-fail=median:10%")
    fast, slow = 0.01, 0.03  # seconds of sleep per call: a round of 8 calls takes about 80 or 240 ms
    # Warm-up, then 10 rounds: half fast, half slow.
    run([fast] + [fast, slow] * 5, *save).assert_outcomes(passed=1)
    # Noise: 4 fast rounds and 6 slow ones. The median moves by about half (far beyond 10%), but rounds
    # this mixed are what chance gives: Mann-Whitney U says not significant, so the gate passes.
    noise = run([fast] + [fast, slow] * 4 + [slow, slow], *gate, "--benchmark-json=noise.json")
    assert noise.ret == pytest.ExitCode.OK, noise.stdout.str() + noise.stderr.str()
    noise.stdout.fnmatch_lines([
        "fanbench: comparing with 0001_baseline.json (saved *), as --benchmark-compare=baseline asks",
        "*= fanbench: beyond --benchmark-compare-fail=median:10%, but within the rounds' noise: not failed =*",
        "serial_scheduled-*-offline against 0001_baseline: median * s -> * s, +*% (limit +10%); not significant: *"])
    # A real regression: every round slower than any of the baseline's.
    regression = run([0.06] * 11, *gate, "--benchmark-json=regression.json")
    assert regression.ret == pytest.ExitCode.TESTS_FAILED, regression.stdout.str() + regression.stderr.str()
    regression.stdout.fnmatch_lines([
        "fanbench: comparing with 0001_baseline.json (saved *), as --benchmark-compare=baseline asks",
        "*= fanbench: slower than the saved run (--benchmark-compare-fail=median:10%) =*",
        "serial_scheduled-*-offline against 0001_baseline: median * s -> * s, +*% (limit +10%); significant: *"])
    # The same two verdicts from the saved baseline and each run's --benchmark-json, with python -m bench.compare.
    [baseline] = (pytester.path / "history").glob("*/*_baseline.json")
    assert compare_subprocess(str(baseline), str(pytester.path / "noise.json"), "--fail-on-regression").returncode == 0
    compared = compare_subprocess(str(baseline), str(pytester.path / "regression.json"), "--fail-on-regression")
    assert compared.returncode == 1, compared.stdout + compared.stderr


@pytest.mark.slow
def test_a_gate_naming_no_saved_run_is_refused_before_the_run(bench) -> None:
    bench(0.0, "--benchmark-save=nightly").assert_outcomes(passed=1)
    result = bench(0.0, "--benchmark-compare=baseline", "--benchmark-compare-fail=median:10%")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --benchmark-compare-fail: no saved run of this machine matches "
                                 "--benchmark-compare=baseline; save one with --benchmark-save=baseline, *"])
    assert "test_strategy" not in result.stdout.str()


# --- history anywhere, machine differences in one line ----------------------------------------

def saved_files(storage: Path) -> list[Path]:
    return sorted(storage.rglob("*.json"))


@pytest.mark.slow
def test_history_outside_the_current_directory_compares_a_changed_workload(bench, tmp_path_factory) -> None:
    storage = tmp_path_factory.mktemp("history-elsewhere")  # not under the run's current directory
    first = bench(0.0, f"--benchmark-storage=file://{storage}")
    first.assert_outcomes(passed=1)
    first.stdout.fnmatch_lines(["fanbench: not compared: no saved run of this machine yet"])
    # Named, a run of other work is compared, and the difference said.
    changed = bench(0.0, f"--benchmark-storage=file://{storage}", "--frames", "5", "--benchmark-compare=0001")
    output = changed.stdout.str() + changed.stderr.str()
    assert changed.ret == pytest.ExitCode.OK, output
    assert "INTERNALERROR" not in output
    changed.stdout.fnmatch_lines(["fanbench: comparing with 0001_*.json (saved *), as --benchmark-compare=0001 asks",
                                  "*fanbench: compared runs timed different work*", "*frames: 4 -> 5*"])
    # Another workload is not another machine: the workload is compared per benchmark, above.
    assert "machine_info is different" not in output
    assert len(saved_files(storage)) == 2
    # By default a run is compared with the latest saved run of its own work, and says which (issue 21).
    again = bench(0.0, f"--benchmark-storage=file://{storage}")
    assert again.ret == pytest.ExitCode.OK, again.stdout.str() + again.stderr.str()
    again.stdout.fnmatch_lines(["fanbench: comparing with 0001_*.json (saved *), the latest saved run of this machine "
                                "that timed this work; 1 later run(s) timed other work (the latest, 0002_*.json: "
                                "frames: 5 -> 4)"])
    assert "timed different work" not in again.stdout.str()
    # ... and with nothing when no saved run timed its work.
    other = bench(0.0, f"--benchmark-storage=file://{storage}", "--frames", "3")
    assert other.ret == pytest.ExitCode.OK, other.stdout.str() + other.stderr.str()
    other.stdout.fnmatch_lines(["fanbench: not compared: none of the 3 saved run(s) of this machine timed this work "
                                "(the latest, 0003_*.json: frames: 4 -> 3)"])
    assert "Comparing against" not in other.stdout.str() + other.stderr.str()


@pytest.mark.slow
def test_a_different_machine_is_named_in_one_line(bench, pytester: pytest.Pytester, tmp_path_factory) -> None:
    storage = tmp_path_factory.mktemp("history-elsewhere")
    bench(0.0, f"--benchmark-storage=file://{storage}").assert_outcomes(passed=1)
    [saved] = saved_files(storage)
    run = json.loads(saved.read_text())
    run["machine_info"]["node"] = "other-host"
    run["machine_info"]["cpu"]["hz_actual"] = [1, 0]  # a clock reading: differs between any two runs
    # A run saved before these entries were recorded (as tests/data/history_small_1.json) lacks them: no difference.
    for entry in ("workload", "gpu", "gpu_unavailable", "gpus", "cuda_options"):
        run["machine_info"]["fanbench"].pop(entry, None)
    saved.write_text(json.dumps(run))

    result = bench(0.0, f"--benchmark-storage=file://{storage}")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str() + result.stderr.str()
    lines = [line for line in (result.stdout.lines + result.stderr.lines) if "machine_info is different" in line]
    assert len(lines) == 1, lines
    assert lines[0].endswith(f"node: 'other-host' -> {platform.node()!r}"), lines[0]
    assert len(lines[0]) < 300, lines[0]
    # The new run is saved with this machine's own machine_info.
    newest = json.loads(saved_files(storage)[-1].read_text())["machine_info"]
    assert (newest["node"], "workload" in newest["fanbench"]) == (platform.node(), True)


@pytest.mark.slow
def test_a_saved_run_with_ray_and_a_run_without_are_not_different_machines(bench, tmp_path_factory) -> None:
    storage = tmp_path_factory.mktemp("history-ray")
    bench(0.0, f"--benchmark-storage=file://{storage}").assert_outcomes(passed=1)
    [saved] = saved_files(storage)
    run = json.loads(saved.read_text())
    assert run["machine_info"]["fanbench"]["ray"] is None  # no ray benchmark ran
    run["machine_info"]["fanbench"]["ray"] = {"version": "2.60.0", "address": "10.0.0.1:6379", "joined": False}
    saved.write_text(json.dumps(run))

    result = bench(0.0, f"--benchmark-storage=file://{storage}")
    output = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.OK, output
    assert "Comparing against benchmarks from" in output  # it did compare with the saved run
    assert "machine_info is different" not in output


@pytest.mark.slow
def test_unwritable_history_is_refused_before_the_run(bench, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a storage below a file cannot be created, whoever runs the tests (root included)
    result = bench(0.0, f"--benchmark-storage=file://{blocker / 'history'}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --benchmark-storage '*history': cannot save the history in '*' (Not a directory); "
                                 "give a writable directory, or run with --no-history."])
    assert "test_strategy" not in result.stdout.str()  # nothing ran
