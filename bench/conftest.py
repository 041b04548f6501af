"""Benchmark-only setup: refuse xdist, save every run to the history, compare with the last
run of this machine, parametrise over strategies, and print the table at the end."""

from __future__ import annotations

import contextlib
import copy
import os
import signal
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pytest_benchmark.logger import Logger
from pytest_benchmark.storage.file import FileStorage
from pytest_benchmark.utils import get_machine_id, get_tag, load_storage

from bench.cases import benchmarks
from bench.compare.choice import Choice, SavedFile, Work, latest_comparable, named
from bench.compare.comparability import compared_workload_differences, machine_differences
from bench.compare.gates import capacity_drops, check_references, evaluate
from bench.compare.stats import history_regressions
from bench.compare.storage import AtomicFileStorage, HistoryWarning, expected_run_bytes, free_space_problem, readable_runs
from bench.interrupts import interruption, signals_held, sigterm_as_interrupt
from bench.measure.harness import keep_complete
from bench.measure.limits import PackingLimit, measure_packing_limit
from bench.measure.machine import machine_info as fanbench_machine_info
from bench.measure.machine import ray_machine_info
from bench.measure.measurement import Measurement
from bench.measure.rounds import warmup_frames
from bench.measure.run import RunInputs
from bench.measure.scenarios import STREAMING, minimum_duration_s
from bench.options import RunOptions
from bench.plugin import RunState, check_report_dir, options_of, state_of
from bench.report.summary import write_summary
from fixtures.options import out_of_time
from strategies import STRATEGIES, RunTimeout
from strategies.runtime import send_ray_guard_lines_to, usable_cores


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if {"case", "scenario"} <= set(metafunc.fixturenames):
        selected, _ = benchmarks(options_of(metafunc.config))
        metafunc.parametrize(("case", "scenario"), selected,
                             ids=[f"{case.id}-{scenario.id}" for case, scenario in selected])


def pytest_report_collectionfinish(config: pytest.Config, start_path, items) -> list[str]:
    """Before a long run starts: how many benchmarks, which will skip and why, what is not streamed and
    why, and the time pacing the streams that run takes (the compute comes on top)."""
    if not any(getattr(item, "originalname", None) == "test_strategy" for item in items):
        return []
    options = options_of(config)
    selected, left_out = benchmarks(options)
    skipping = {case.strategy.name: reason for case, _ in selected
                if (reason := case.strategy.unavailable(options.workload.provider))}
    running = [(case, scenario) for case, scenario in selected if case.strategy.name not in skipping]
    streams = [scenario for _, scenario in running if scenario.name == STREAMING]
    lines = [f"fanbench: {len(running)} benchmarks ({len(running) - len(streams)} offline, {len(streams)} streaming)"]
    if skipping:
        lines[0] += f" and {len(selected) - len(running)} that will skip"
    if streams:
        frames = options.workload.frames
        warm = warmup_frames(frames)  # a warm-up round streams each camera's first frames only
        least = sum(minimum_duration_s(frames, scenario, options.rounds) + minimum_duration_s(warm, scenario, options.warmup)
                    for scenario in streams)
        lines[0] += (f"; pacing the streams alone takes about {least:.0f} s ({frames} frames at {streams[0].fps:g} fps x "
                     f"{options.rounds} rounds + {warm} x {options.warmup} warm-up, x {len(streams)}), the compute comes on top")
    lines += [f"fanbench: will skip {name}: {reason}" for name, reason in skipping.items()]
    lines += [f"fanbench: not streamed: {case_id}: {reason}" for case_id, reason in left_out.items()]
    return lines


@dataclass
class SessionSignals:
    """SIGTERM as Ctrl-C for the whole session (bench/interrupts.py), and, from the end of the
    benchmarks to the summary, while pytest-benchmark saves the history, both held."""

    session: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    saving: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    noted: list[signal.Signals] = field(default_factory=list)  # held while the history was saved
    end: pytest.Session | None = None  # whose exit status a late signal sets


SIGNALS = pytest.StashKey[SessionSignals]()


def pytest_configure(config: pytest.Config) -> None:
    # Runs after bench/plugin.py built the options, before pytest-benchmark reads its own (its
    # pytest_configure is trylast). SIGTERM first: from here on it ends the run cleanly in every
    # phase (start-up, collection, the benchmarks, the report), not with status 143 and leftovers.
    signals = config.stash[SIGNALS] = SessionSignals()
    signals.session.enter_context(sigterm_as_interrupt())
    signals.session.enter_context(ray_guard_to_terminal(config))
    if getattr(config.option, "numprocesses", None) or getattr(config.option, "dist", "no") != "no":
        raise pytest.UsageError(
            "fanbench refuses to benchmark under pytest-xdist (-n/--dist): parallel benchmarks share the cores "
            "and their timings cannot be trusted. Run `pytest bench` without -n.")
    options = options_of(config)
    try:
        check_references(list(options.gates), list(STRATEGIES), list(options.strategies))
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None
    check_report_dir(options.report_dir)  # before the run, not after it
    if options.benchmark_disabled:
        return
    saving, choice = history_defaults(config, options)
    if saving:
        _check_storage_writable(options.storage)
    if options.compare_fail and (choice is None or choice.path is None):
        # pytest-benchmark says so only after the whole run.
        if not options.history and choice is None:
            raise pytest.UsageError("--benchmark-compare-fail: --no-history turns the comparison off; drop one of the two.")
        if choice is None or choice.line.startswith("no saved run of this machine yet"):
            raise pytest.UsageError(
                f"--benchmark-compare-fail: no saved run of this machine in {options.storage!r} to compare with; run "
                "once without it to save a baseline, or name one with --benchmark-compare=NUMBER.")
        raise pytest.UsageError(f"--benchmark-compare-fail: {choice.line}; save a baseline of this work first "
                                "(--benchmark-save=NAME), or name a saved run with --benchmark-compare=NAME.")


@contextlib.contextmanager
def ray_guard_to_terminal(config: pytest.Config) -> Iterator[None]:
    """A Ray guard's line goes to the terminal's stderr, not to the capture file of the test that started it."""
    capture = config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        terminal = os.dup(2)
    send_ray_guard_lines_to(terminal)
    try:
        yield
    finally:
        send_ray_guard_lines_to(None)
        os.close(terminal)


def pytest_report_header(config: pytest.Config) -> list[str]:
    line = state_of(config).compared_with
    return [line] if line else []


def expected_work(options: RunOptions) -> Work:
    """What this run will time, as its saved benchmarks will record it."""
    workload = options.workload
    selected, _ = benchmarks(options)
    schedules = {f"test_strategy[{case.id}-{scenario.id}]": scenario.schedule(workload.total_frames)
                 for case, scenario in selected}
    return Work(frames=workload.total_frames, batch=workload.batch, models=tuple(workload.model_names()),
                provider=workload.provider, names=frozenset(schedules),
                run_frames={name: len(schedule) for name, schedule in schedules.items() if schedule is not None})


def history_defaults(config: pytest.Config, options: RunOptions) -> tuple[bool, Choice | None]:
    """Unless --no-history, save the run and compare it with this machine's latest saved run of the same work
    (also what `--benchmark-compare` alone asks; `=NAME`: the latest matching NAME, bench/compare/choice.py);
    returns whether the run is saved and the chosen run (None: no comparison asked). Each candidate is checked
    and pytest-benchmark handed that one file, so a damaged or foreign file only warns. The one deliberate write
    to `config.option` after RunOptions: pytest-benchmark reads its own options in its (trylast) configure."""
    saving = bool(options.save or options.autosave)
    if options.history and not saving:
        config.option.benchmark_autosave, saving = get_tag(), True
    if not (options.compare is True or isinstance(options.compare, str) or (options.compare == [] and options.history)):
        return saving, None
    if "://" in options.storage and not options.storage.startswith("file://"):
        return saving, None  # elasticsearch: pytest-benchmark's own choice
    storage = load_storage(options.storage, logger=Logger(Logger.QUIET, config=config),
                           default_machine_id=get_machine_id(), netrc=options.netrc)
    warned: set[str] = set()

    def readable(glob: str = "[0-9][0-9][0-9][0-9]_") -> list[SavedFile]:
        """The saved runs matching `glob`, oldest first; each damaged or foreign one warned about once."""
        runs, skipped = readable_runs(storage, glob)
        for line in skipped:
            if line not in warned:
                warned.add(line)
                config.issue_config_time_warning(HistoryWarning(line), stacklevel=2)
        return runs

    if isinstance(options.compare, str):
        choice = named(options.compare, readable)
    else:
        choice = latest_comparable(readable(), expected_work(options))
    # A file path is what pytest-benchmark loads as it is; [] (its default) compares with nothing.
    config.option.benchmark_compare = str(storage.path / choice.path) if choice.path else []
    state_of(config).compared_with = choice.header
    return saving, choice


def _check_storage_writable(storage: str) -> None:
    """Refuse, before anything runs, a file storage the history cannot be saved in (pytest-benchmark finds
    out only after the whole run, losing its output with a traceback). Room is checked at pytest_sessionstart."""
    if "://" in storage and not storage.startswith("file://"):
        return  # elasticsearch: pytest-benchmark's own concern
    directory = Path(storage.removeprefix("file://")) / get_machine_id()  # where pytest-benchmark saves
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=directory).close()
    except OSError as error:
        raise pytest.UsageError(
            f"--benchmark-storage {storage!r}: cannot save the history in {str(directory)!r} "
            f"({error.strerror or error}); give a writable directory, or run with --no-history.") from None


@pytest.hookimpl(trylast=True)  # after bench/plugin.py's checks of the input and memory, the more basic refusals
def pytest_sessionstart(session: pytest.Session) -> None:
    # pytest-benchmark made its session (and read the run to compare with) in its pytest_configure:
    # from now on it saves through AtomicFileStorage, whole or not at all. A disk too full for the run
    # is refused now: pytest-benchmark saves only after every benchmark has run.
    benchmarksession = getattr(session.config, "_benchmarksession", None)
    if benchmarksession is None or type(benchmarksession.storage) is not FileStorage:
        return
    benchmarksession.storage = storage = AtomicFileStorage.replacing(benchmarksession.storage)
    if (benchmarksession.save or benchmarksession.autosave) and not benchmarksession.disabled:
        check_room(options_of(session.config), storage.get(""))


def check_room(options: RunOptions, directory: Path) -> None:
    """Refuse a run the history's disk has no room to save (estimated from its size: expected_run_bytes)."""
    workload = options.workload
    size = expected_run_bytes(len(benchmarks(options)[0]), workload.total_frames, workload.model_count, options.rounds)
    if (problem := free_space_problem(directory, size)) is not None:
        raise pytest.UsageError(f"--benchmark-storage {options.storage!r}: {problem}; free some space, give "
                                "another directory, or run with --no-history.")


def _save_failure(config: pytest.Config) -> str | None:
    """Why saving this run to the history failed (AtomicFileStorage.save), None when it did not."""
    return getattr(getattr(getattr(config, "_benchmarksession", None), "storage", None), "failure", None)


THIS_MACHINE = pytest.StashKey[dict]()  # this run's machine_info, as first given to the comparison with a saved run


@pytest.hookimpl(tryfirst=True)
def pytest_benchmark_compare_machine_info(config: pytest.Config, benchmarksession, machine_info: dict,
                                          compared_benchmark: dict) -> None:
    """One line naming what differs between this machine and the saved run's (MACHINE_KEYS)."""
    this_machine = config.stash.setdefault(THIS_MACHINE, copy.deepcopy(machine_info))
    saved = compared_benchmark.get("machine_info", {})
    if differences := machine_differences(saved, this_machine):
        commit = (compared_benchmark.get("commit_info") or {}).get("id") or "?"
        benchmarksession.logger.warning(f"Benchmark machine_info is different from the saved run of "
                                        f"{compared_benchmark.get('datetime', '?')} (commit {commit[:12]}): "
                                        + "; ".join(differences))
    # pytest-benchmark's own check runs next: it prints both machine_infos whole (5,000+ characters, even for
    # a CPU clock reading) and crashes with a storage outside the current directory. Its `machine_info` is a
    # copy for these comparisons only (the saved run gets a fresh one): made equal to the saved one, that
    # check has nothing left to report.
    machine_info.clear()
    machine_info.update(saved)


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    # The effective workload and CUDA options: what makes a run comparable with another. Called before the run
    # (to compare with a saved one: no Ray yet) and again when saving it: "ray" is then the Ray the `ray`
    # strategy's benchmarks ran on (their strategy_info), None when none did.
    workload = options_of(config).workload
    ray = ray_machine_info([m.strategy_info for m in state_of(config).measurements if m.strategy == "ray"])
    machine_info["fanbench"] = fanbench_machine_info(workload.machine_info(), dict(workload.cuda_options), ray)


CALLED = pytest.StashKey[bool]()  # the test function passed (its teardown has yet to)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.when == "call" and report.passed:
        item.stash[CALLED] = True
    elif report.when == "teardown" and report.passed and item.stash.get(CALLED, False):
        state_of(item.config).complete.add(item.nodeid)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session):
    try:
        return (yield)
    finally:
        # Before pytest-benchmark saves the run (in its sessionfinish), also after an interrupt.
        benchmarksession = getattr(session.config, "_benchmarksession", None)
        if benchmarksession is not None:
            results = state_of(session.config)
            results.left_out = keep_complete(benchmarksession.benchmarks, results.complete)
        # From here to the summary pytest-benchmark saves the history: a signal waits for it.
        signals = session.config.stash[SIGNALS]
        signals.end = session
        signals.noted = signals.saving.enter_context(signals_held())


def pytest_unconfigure(config: pytest.Config) -> None:
    if (signals := config.stash.get(SIGNALS, None)) is not None:
        signals.saving.close()
        signals.session.close()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Evaluate the --gate options and refuse gating against a run that timed other work: after
    pytest-benchmark compared this run with the saved one (its sessionfinish wraps this), before the summary."""
    config = session.config
    options, results = options_of(config), state_of(config)
    failed = False
    if options.gates and exitstatus != pytest.ExitCode.INTERRUPTED:
        models = options.workload.model_count
        labels = {name: cls.default_settings(models, usable_cores()).label for name, cls in STRATEGIES.items()}
        results.gate_results = evaluate(list(options.gates), results.measurements, labels)
        failed |= not all(result.passed for result in results.gate_results)
    benchmarksession = getattr(config, "_benchmarksession", None)  # pytest-benchmark's, set in its configure
    compared = getattr(benchmarksession, "compared_mapping", None)
    if compared:
        current = {bench.fullname: bench.extra_info for bench in benchmarksession.benchmarks if bench}
        results.workload_differences = compared_workload_differences(
            current, {str(path): saved for path, saved in compared.items()})
        # A capacity drop is a regression, always reported.
        regressions = [drop for saved in compared.values()
                       for drop in capacity_drops(current, {name: bench.get("extra_info", {}) for name, bench in saved.items()})]
        checks = list(options.compare_fail)
        if checks:
            # Reported in the summary as one block (or refused above), not as pytest-benchmark's
            # PerformanceRegression, a traceback raised in place of the summary.
            benchmarksession.performance_regressions.clear()
            if not results.workload_differences:
                current = {bench.fullname: bench.as_dict() for bench in benchmarksession.benchmarks if bench}
                verdict = history_regressions(checks, current, compared)
                regressions += verdict.failed
                results.within_noise = verdict.within_noise
            failed |= bool(regressions or results.workload_differences)
        results.regressions = regressions
    failed |= _save_failure(config) is not None  # the run was asked to be saved and is not
    if failed and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(wrapper=True)
def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config):
    # A wrapper, so this prints last and also when pytest-benchmark raises PerformanceRegression.
    signals = config.stash[SIGNALS]
    signals.saving.close()  # the history is saved: Ctrl-C and SIGTERM act again (the report is interruptible)
    stopped = interruption(signals.noted[0]) if signals.noted else None
    try:
        return (yield)
    finally:
        options, results = options_of(config), state_of(config)
        benchmarksession = getattr(config, "_benchmarksession", None)
        saving = benchmarksession is not None and (benchmarksession.save or benchmarksession.autosave) \
            and not benchmarksession.disabled
        interrupted = write_summary(
            terminalreporter, results.measurements, overhead_lines=results.overhead_lines, gpu_absent=results.gpu_absent,
            report_dir=options.report_dir, saved=len(benchmarksession.benchmarks) if saving else None,
            left_out=results.left_out, workload_differences=results.workload_differences, regressions=results.regressions,
            within_noise=results.within_noise, compare_fail=options.compare_fail, gate_results=results.gate_results,
            save_failure=_save_failure(config), stopped=stopped) or stopped
        if interrupted is not None and signals.end is not None:
            signals.end.exitstatus = pytest.ExitCode.INTERRUPTED  # a signal at the end still ends the run as one


@pytest.fixture(scope="session")
def packing_limit(workload, phase_time_limit: float) -> PackingLimit:
    """This machine's packing limit for the workload (bench/measure/limits.py), measured once per run,
    within the run's time limit."""
    try:
        return measure_packing_limit(workload, time_limit_s=phase_time_limit)
    except RunTimeout as error:
        out_of_time(error)


@pytest.fixture(scope="session")
def run_inputs(workload, reference, calibration, model_facts, run_options: RunOptions, run_state: RunState,
               packing_limit: PackingLimit, gpu_probe) -> RunInputs:
    """What every benchmark of this run is given (bench/measure/run.py); the measurements recorded so far
    give the capacity search its ceiling."""
    return RunInputs(run_options, workload, reference, calibration, model_facts, packing_limit, gpu_probe.reason,
                     run_state.measurements)


@pytest.fixture
def record(run_state: RunState) -> Callable[[Measurement, str | None], None]:
    """Add a benchmark's measurement to the end-of-run table, and its harness overhead line (serial offline)."""
    def add(measurement: Measurement, overhead_line: str | None) -> None:
        run_state.measurements.append(measurement)
        if overhead_line is not None:
            run_state.overhead_lines.append(overhead_line)
    return add
