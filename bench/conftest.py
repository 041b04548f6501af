"""Benchmark-only setup: refuse xdist, save every run to the history, compare with the last
run of this machine, parametrise over strategies, and print the table at the end."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from strategies import CLASSIC, STRATEGIES, Strategy, ThreadSettings, usable_cores
from strategies.thread_spec import resolve

from .comparability import compared_workload_differences, gpu_info
from .gates import GateResult, check_references, evaluate
from .interrupts import sigterm_as_interrupt
from .limit import PackingLimit, measure_packing_limit
from .plugin import check_report_dir, finish, gpu_probe, parametrize_scenarios, round_hooks, scenarios  # noqa: F401 (fixtures)
from .recommend import recommendation
from .results import Measurement
from .table import format_table

# Strategy constructor arguments taken from command-line options: strategy -> {argument: option}.
STRATEGY_OPTIONS: dict[str, dict[str, str]] = {"batched": {"k": "batch_k"}}

MEASUREMENTS = pytest.StashKey[list[Measurement]]()
GATE_RESULTS = pytest.StashKey[list[GateResult]]()
WORKLOAD_DIFFERENCES = pytest.StashKey[list[str]]()


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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" in metafunc.fixturenames:
        selected = cases(metafunc.config)
        metafunc.parametrize("case", selected, ids=[case.id for case in selected])
    parametrize_scenarios(metafunc)  # offline and/or streaming


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
    if config.getoption("benchmark_compare") == [] and not config.getoption("no_history") \
            and _previous_runs_exist(config):
        config.option.benchmark_compare = True  # the latest saved run of this machine


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    import cv2
    import numpy
    import onnxruntime

    machine_info["fanbench"] = {
        "onnxruntime": onnxruntime.__version__,
        "onnxruntime_device": onnxruntime.get_device(),
        "available_providers": onnxruntime.get_available_providers(),
        "numpy": numpy.__version__,
        "opencv": cv2.__version__,
        "usable_cores": usable_cores(),
        "gpus": gpu_info(),
        # What was asked for; the work each benchmark really timed is in its extra_info.
        "workload": {option: config.getoption(option) for option in
                     ("frames", "batch", "frame_size", "models", "model_size", "provider")},
    }
    # GPU and CUDA provider options: what makes a GPU run comparable with another.
    from fixtures.gpu import configured_cuda_options
    from strategies.cuda import device_id

    from .gpu_info import gpu_machine_info

    cuda_options = dict(configured_cuda_options(config))
    machine_info["fanbench"].update(gpu_machine_info(device_id(cuda_options)), cuda_options=cuda_options)


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session):
    # SIGTERM (CI cancel, `kill`) stops the run as cleanly as Ctrl-C: see bench/interrupts.py.
    with sigterm_as_interrupt():
        return (yield)


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
        failed |= bool(differences and config.getoption("benchmark_compare_fail"))
    if failed and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(wrapper=True)
def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config):
    # A wrapper, so this prints last and also when pytest-benchmark raises PerformanceRegression.
    try:
        return (yield)
    finally:
        _write_summary(terminalreporter, config)


def _write_summary(terminalreporter, config: pytest.Config) -> None:
    measurements = config.stash.get(MEASUREMENTS, [])
    if measurements:
        terminalreporter.write_sep("=", "fanbench")
        terminalreporter.write_line(format_table(measurements))
    finish(terminalreporter, config, measurements)  # GPU note, report directory
    # The recommendation answers the offline question: which strategy gets through the video fastest.
    line = recommendation([m for m in measurements if m.scenario == "offline"])
    if line:
        terminalreporter.write_line(line)

    differences = config.stash.get(WORKLOAD_DIFFERENCES, [])
    if differences:
        refuse = bool(config.getoption("benchmark_compare_fail"))
        terminalreporter.write_sep("=", "fanbench: compared runs timed different work", red=refuse, yellow=not refuse)
        for line in differences:
            terminalreporter.write_line(line)
        terminalreporter.write_line(
            "Refusing to gate on this comparison (--benchmark-compare-fail): compare with a run of the same workload."
            if refuse else "The comparison above is not like for like.")
    results = config.stash.get(GATE_RESULTS, [])
    if results:
        passed = all(result.passed for result in results)
        terminalreporter.write_sep("=", "fanbench gates", green=passed, red=not passed)
        for result in results:
            terminalreporter.write_line(result.line(), green=result.passed, red=not result.passed)


@pytest.fixture(scope="session")
def packing_limit(workload) -> PackingLimit:
    """This machine's packing limit for the workload (bench/limit.py), measured once per run."""
    return measure_packing_limit(workload)


@pytest.fixture
def record(request: pytest.FixtureRequest):
    """Append a measurement to the end-of-run table."""
    return request.config.stash[MEASUREMENTS].append
