"""Benchmark-only setup: refuse xdist, save every run to the history, compare with the last
run of this machine, parametrise over strategies, and print the table at the end."""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench.compare.comparability import compared_workload_differences, machine_differences
from bench.compare.gates import GateResult, check_references, evaluate
from bench.compare.stats import history_regressions
from bench.measure.harness import OVERHEAD_LINES, keep_complete, sigterm_as_interrupt
from bench.measure.limits import PackingLimit, measure_packing_limit
from bench.measure.machine import WORKLOAD_KEYS
from bench.measure.machine import machine_info as fanbench_machine_info
from bench.measure.measurement import Measurement
from bench.measure.scenarios import STREAMING, Scenario, minimum_duration_s, not_streamed
from bench.plugin import (  # noqa: F401 (fixtures)
    GPU_ABSENT,
    check_report_dir,
    gpu_probe,
    parametrize_scenarios,
    report_dir,
    round_hooks,
    sampler_process,
    scenarios,
)
from bench.report.summary import write_summary
from strategies import CLASSIC, STRATEGIES, Strategy, ThreadSettings, resolve, usable_cores

# Strategy constructor arguments taken from command-line options: strategy -> {argument: option}.
STRATEGY_OPTIONS: dict[str, dict[str, str]] = {"batched": {"k": "batch_k"}}

MEASUREMENTS = pytest.StashKey[list[Measurement]]()
GATE_RESULTS = pytest.StashKey[list[GateResult]]()
WORKLOAD_DIFFERENCES = pytest.StashKey[list[str]]()
REGRESSIONS = pytest.StashKey[list[str]]()  # --benchmark-compare-fail checks failed against the saved run
COMPLETE = pytest.StashKey[set[str]]()  # node ids of the tests that passed, teardown included
LEFT_OUT = pytest.StashKey[list[str]]()  # benchmarks left out of the saved history: they did not complete
CALL_PASSED = pytest.StashKey[bool]()  # on an item: its test function passed
MACHINE_INFO = pytest.StashKey[dict]()  # this run's machine_info, as first given to the comparison with a saved run


@dataclass(frozen=True)
class Case:
    """One benchmark: a strategy and the thread settings it runs with."""

    strategy: type[Strategy]
    settings: ThreadSettings
    options: tuple[tuple[str, Any], ...] = ()  # extra constructor arguments, e.g. (("k", 4),)

    @property
    def id(self) -> str:
        options = "".join(f"-{key}{value}" for key, value in self.options)
        return f"{self.strategy.name}{options}-{self.settings.label}"


def model_count(config: pytest.Config) -> int:
    return len(config.getoption("model")) or config.getoption("models")  # --model replaces --models


def cases(config: pytest.Config) -> list[Case]:
    names = config.getoption("strategy") or list(STRATEGIES)
    models = model_count(config)
    choices = config.getoption("threads")
    selected: list[Case] = []
    for name in names:
        cls = STRATEGIES[name]
        options = tuple((argument, config.getoption(option)) for argument, option in STRATEGY_OPTIONS.get(name, {}).items())
        if choices:
            # A sweep: exactly the settings asked for, for every selected strategy.
            settings = [resolve(choice, cls, models, usable_cores()) for choice in choices]
        else:
            settings = [cls.default_settings(models, usable_cores())]
            if name in CLASSIC:
                # The write-up ran its four with onnxruntime's defaults; so do we, side by side.
                settings.append(ThreadSettings())
        for each in dict.fromkeys(settings):  # a setting given twice runs once
            selected.append(Case(cls, each, options))
    return selected


def benchmarks(config: pytest.Config) -> tuple[list[tuple[Case, Scenario]], dict[str, str]]:
    """Every (case, scenario) to time, and the cases left out of streaming with the reason."""
    swept = bool(config.getoption("threads"))
    selected, left_out = [], {}
    for case in cases(config):
        for scenario in scenarios(config):
            reason = None if scenario.name != STREAMING else not_streamed(
                case.strategy.per_frame, case.settings.ort_defaults, dict(case.options), swept)
            if reason is None:
                selected.append((case, scenario))
            else:
                left_out[case.id] = reason
    return selected, left_out


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if {"case", "scenario"} <= set(metafunc.fixturenames):
        selected, _ = benchmarks(metafunc.config)
        metafunc.parametrize(("case", "scenario"), selected,
                             ids=[f"{case.id}-{scenario.id}" for case, scenario in selected])
        return
    if "case" in metafunc.fixturenames:
        selected = cases(metafunc.config)
        metafunc.parametrize("case", selected, ids=[case.id for case in selected])
    parametrize_scenarios(metafunc)  # offline and/or streaming


def pytest_report_collectionfinish(config: pytest.Config, start_path, items) -> list[str]:
    """Before a long run starts: how many benchmarks, what is not streamed and why, and the
    time pacing the streams takes (the compute comes on top)."""
    if not any(getattr(item, "originalname", None) == "test_strategy" for item in items):
        return []
    selected, left_out = benchmarks(config)
    streams = [scenario for _, scenario in selected if scenario.name == STREAMING]
    lines = [f"fanbench: {len(selected)} benchmarks ({len(selected) - len(streams)} offline, {len(streams)} streaming)"]
    if streams:
        rounds = config.getoption("rounds") + config.getoption("warmup")
        least = sum(minimum_duration_s(config.getoption("frames"), scenario, rounds) for scenario in streams)
        lines[0] += (f"; pacing the streams alone takes about {least:.0f} s ({config.getoption('frames')} frames at "
                     f"{streams[0].fps:g} fps x {rounds} rounds x {len(streams)}), the compute comes on top")
    lines += [f"fanbench: not streamed: {case_id}: {reason}" for case_id, reason in left_out.items()]
    return lines


def _previous_runs_exist(config: pytest.Config) -> bool:
    from pytest_benchmark.logger import Logger
    from pytest_benchmark.utils import get_machine_id, load_storage

    storage = load_storage(config.getoption("benchmark_storage"), logger=Logger(Logger.QUIET, config=config),
                           default_machine_id=get_machine_id(), netrc=config.getoption("benchmark_netrc"))
    return any(True for _ in storage.load())


def pytest_configure(config: pytest.Config) -> None:
    # Runs before pytest-benchmark reads its options (its pytest_configure is trylast).
    if getattr(config.option, "numprocesses", None) or getattr(config.option, "dist", "no") != "no":
        raise pytest.UsageError(
            "fanbench refuses to benchmark under pytest-xdist (-n/--dist): parallel benchmarks share the cores "
            "and their timings cannot be trusted. Run `pytest bench` without -n.")
    config.stash[MEASUREMENTS] = []
    config.stash[COMPLETE] = set()
    try:
        check_references(config.getoption("gate"), list(STRATEGIES), config.getoption("strategy") or list(STRATEGIES))
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None
    scenarios(config)  # --scenario streaming with --fps 0: one usage-error line, not a collection error
    check_report_dir(config)  # before the run, not after it
    if config.getoption("benchmark_disable") or config.getoption("benchmark_skip"):
        return
    if not config.getoption("no_history") and not config.getoption("benchmark_save") \
            and not config.getoption("benchmark_autosave"):
        from pytest_benchmark.utils import get_tag

        config.option.benchmark_autosave = get_tag()
    if config.getoption("benchmark_save") or config.getoption("benchmark_autosave"):
        _check_storage_writable(config.getoption("benchmark_storage"))
    if config.getoption("benchmark_compare") == [] and not config.getoption("no_history") \
            and _previous_runs_exist(config):
        config.option.benchmark_compare = True  # the latest saved run of this machine
    if config.getoption("benchmark_compare_fail") and not config.getoption("benchmark_compare"):
        # pytest-benchmark says so only after the whole run.
        raise pytest.UsageError(
            "--benchmark-compare-fail: --no-history turns the comparison off; drop one of the two."
            if config.getoption("no_history") else
            f"--benchmark-compare-fail: no saved run of this machine in {config.getoption('benchmark_storage')!r} to "
            "compare with; run once without it to save a baseline, or name one with --benchmark-compare=NUMBER.")


def _check_storage_writable(storage: str) -> None:
    """Refuse, before anything runs, a file storage the history cannot be saved in (pytest-benchmark
    finds out only when saving, after the whole run, and loses the run's output with a traceback)."""
    from pytest_benchmark.utils import get_machine_id

    if "://" in storage and not storage.startswith("file://"):
        return  # elasticsearch: pytest-benchmark's own concern
    directory = Path(storage.removeprefix("file://")) / get_machine_id()  # where pytest-benchmark saves
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        raise pytest.UsageError(
            f"--benchmark-storage {storage!r}: cannot save the history in {str(directory)!r} "
            f"({error.strerror or error}); give a writable directory, or run with --no-history.") from None


@pytest.hookimpl(tryfirst=True)
def pytest_benchmark_compare_machine_info(config: pytest.Config, benchmarksession, machine_info: dict,
                                          compared_benchmark: dict) -> None:
    """One line naming what differs between this machine and the saved run's (MACHINE_KEYS)."""
    current = config.stash.setdefault(MACHINE_INFO, copy.deepcopy(machine_info))
    saved = compared_benchmark.get("machine_info", {})
    differences = machine_differences(saved, current)
    if differences:
        commit = (compared_benchmark.get("commit_info") or {}).get("id") or "?"
        benchmarksession.logger.warning(f"Benchmark machine_info is different from the saved run of "
                                        f"{compared_benchmark.get('datetime', '?')} (commit {commit[:12]}): "
                                        + "; ".join(differences))
    # pytest-benchmark's own check runs next: it prints both machine_infos whole (5,000+ characters, for
    # any difference, even a CPU clock reading) and crashes when the storage is outside the current
    # directory. The `machine_info` it is given is a copy made for these comparisons only (the saved run
    # gets a fresh one), so make it equal the saved one: that check then has nothing left to report.
    machine_info.clear()
    machine_info.update(saved)


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    from fixtures.gpu import configured_cuda_options

    workload = {option: config.getoption(option) for option in WORKLOAD_KEYS}
    machine_info["fanbench"] = fanbench_machine_info(workload, dict(configured_cuda_options(config)))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.when == "call" and report.passed:
        item.stash[CALL_PASSED] = True
    elif report.when == "teardown" and report.passed and item.stash.get(CALL_PASSED, False):
        item.config.stash[COMPLETE].add(item.nodeid)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session):
    # SIGTERM (CI cancel, `kill`) stops the run as cleanly as Ctrl-C: see bench/measure/harness.py.
    with sigterm_as_interrupt():
        try:
            return (yield)
        finally:
            # Before pytest-benchmark saves the run (in its sessionfinish), also after an interrupt.
            benchmarksession = getattr(session.config, "_benchmarksession", None)
            if benchmarksession is not None:
                session.config.stash[LEFT_OUT] = keep_complete(benchmarksession.benchmarks,
                                                               session.config.stash.get(COMPLETE, set()))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Evaluate the --gate options and refuse gating against a run that timed other work.

    Runs after pytest-benchmark has compared this run with the saved one (its own
    sessionfinish wraps this), before the terminal summary prints what is found here.
    """
    config = session.config
    failed = False
    measurements = config.stash.get(MEASUREMENTS, [])
    gates = config.getoption("gate")
    if gates and exitstatus != pytest.ExitCode.INTERRUPTED:
        labels = {name: cls.default_settings(model_count(config), usable_cores()).label for name, cls in STRATEGIES.items()}
        # Gates compare throughput: the offline scenario (streaming walls are set by the frame rate).
        results = evaluate(gates, [m for m in measurements if m.scenario == "offline"], labels)
        config.stash[GATE_RESULTS] = results
        failed |= not all(result.passed for result in results)
    benchmarksession = getattr(config, "_benchmarksession", None)  # pytest-benchmark's, set in its configure
    if benchmarksession is not None and getattr(benchmarksession, "compared_mapping", None):
        current = {bench.fullname: bench.extra_info for bench in benchmarksession.benchmarks if bench}
        differences = compared_workload_differences(current, {str(path): saved for path, saved in
                                                              benchmarksession.compared_mapping.items()})
        config.stash[WORKLOAD_DIFFERENCES] = differences
        checks = config.getoption("benchmark_compare_fail")
        failed |= bool(differences and checks)
        if checks:
            # Reported in the summary as one block (or refused above), not as pytest-benchmark's
            # PerformanceRegression, a traceback raised in place of the summary.
            benchmarksession.performance_regressions.clear()
            if not differences:
                current = {bench.fullname: bench.as_dict() for bench in benchmarksession.benchmarks if bench}
                config.stash[REGRESSIONS] = history_regressions(checks, current, benchmarksession.compared_mapping)
                failed |= bool(config.stash[REGRESSIONS])
    if failed and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(wrapper=True)
def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config):
    # A wrapper, so this prints last and also when pytest-benchmark raises PerformanceRegression.
    try:
        return (yield)
    finally:
        benchmarksession = getattr(config, "_benchmarksession", None)
        saving = (config.getoption("benchmark_save") or config.getoption("benchmark_autosave")) \
            and benchmarksession is not None and not benchmarksession.disabled
        write_summary(terminalreporter, config.stash.get(MEASUREMENTS, []), overhead_lines=config.stash.get(OVERHEAD_LINES, []),
                      gpu_absent=config.stash.get(GPU_ABSENT, None), report_dir=report_dir(config),
                      saved=len(benchmarksession.benchmarks) if saving else None, left_out=config.stash.get(LEFT_OUT, []),
                      workload_differences=config.stash.get(WORKLOAD_DIFFERENCES, []),
                      regressions=config.stash.get(REGRESSIONS, []),
                      compare_fail=config.getoption("benchmark_compare_fail") or (),
                      gate_results=config.stash.get(GATE_RESULTS, []))


@pytest.fixture(scope="session")
def packing_limit(workload) -> PackingLimit:
    """This machine's packing limit for the workload (bench/measure/limits.py), measured once per run."""
    return measure_packing_limit(workload)


@pytest.fixture
def record(request: pytest.FixtureRequest):
    """Append a measurement to the end-of-run table."""
    return request.config.stash[MEASUREMENTS].append
